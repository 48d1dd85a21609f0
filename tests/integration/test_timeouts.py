"""No hidden deadlines, through the whole fleet (HAProxy, Serve, Ray, the data plane, the
node, the emulator): an answer that keeps coming is served however long it takes, and a
backend that goes silent is cut by the chunk timeout with the dialect's error.

The shared fleet runs with FLEET_FIRST_CHUNK_TIMEOUT=3 and FLEET_CHUNK_TIMEOUT=5; the
long answers here (coder:1b on gamma, 120 tokens, one every 0.1 s) take ~12 s, longer
than both together."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from herd.sim.profiles import load_profile

pytestmark = pytest.mark.integration

MODEL = "tiny:1b"
LONG = "coder:1b"  # only gamma has it (loaded at start), and gamma's answers are long
MESSAGES = [{"role": "user", "content": "A long story, please."}]
SLOW = 200.0  # the emulators make 2000 tokens/s: one every 0.1 s


@pytest.fixture
def oai(endpoint: str) -> Any:
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="x", max_retries=0)
    yield client
    client.close()


def next_node(endpoint: str, model: str) -> str:
    """The node the next request for ``model`` goes to (which now has it loaded)."""
    body = {"model": model, "messages": MESSAGES, "stream": False}
    r = httpx.post(f"{endpoint}/api/chat", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return str(r.headers["x-herd-node"])


def slow_down(sim: Any, node: str, fleet: Any) -> int:
    """One slow answer of LONG on ``node`` (loaded: only its tokens are slower); returns
    its length. The premise, from the fleet's settings and the node's profile: the answer
    outlasts both silence limits together, each gap stays well inside them."""
    profile = load_profile(next(s.profile for s in fleet.specs if s.name == node))
    tokens = profile.response_tokens
    interval = SLOW / profile.tokens_per_s
    settings = fleet.settings
    assert tokens * interval > settings.first_chunk_timeout + settings.chunk_timeout
    assert interval < settings.chunk_timeout / 10
    sim.fault(node, kind="slow", factor=SLOW, model=LONG, count=1)
    return tokens


def test_a_long_streamed_answer_outlives_every_limit(endpoint: str, sim: Any, fleet: Any) -> None:
    node = next_node(endpoint, LONG)
    tokens = slow_down(sim, node, fleet)
    body = {"model": LONG, "messages": MESSAGES}
    with httpx.stream("POST", f"{endpoint}/api/chat", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["x-herd-node"] == node
        chunks = [json.loads(line) for line in r.iter_lines() if line]
    assert "error" not in chunks[-1] and chunks[-1]["done"] is True
    assert chunks[-1]["eval_count"] == tokens


def test_a_long_answer_not_streamed_outlives_every_limit(
    oai: Any, endpoint: str, sim: Any, fleet: Any
) -> None:
    node = next_node(endpoint, LONG)
    tokens = slow_down(sim, node, fleet)
    raw = oai.chat.completions.with_raw_response.create(model=LONG, messages=MESSAGES, timeout=120)
    assert raw.http_response.status_code == 200 and raw.headers["x-herd-node"] == node
    reply = raw.parse()
    assert reply.choices[0].message.content and reply.usage.completion_tokens == tokens


def hang_mid_stream(sim: Any) -> None:
    for node in ("alpha", "beta", "gamma"):  # wherever tiny:1b goes, it goes silent
        sim.fault(node, kind="hang", model=MODEL, after_chunks=2, count=1)


def test_a_silent_backend_is_cut_by_the_chunk_timeout_in_ollamas_dialect(
    endpoint: str, sim: Any
) -> None:
    hang_mid_stream(sim)
    body = {"model": MODEL, "messages": MESSAGES}
    with httpx.stream("POST", f"{endpoint}/api/chat", json=body, timeout=60) as r:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert len(lines) == 3  # two chunks, then the error line
    assert "FLEET_CHUNK_TIMEOUT" in lines[-1]["error"]


def test_a_silent_backend_is_cut_by_the_chunk_timeout_in_openais_dialect(
    oai: Any, endpoint: str, sim: Any
) -> None:
    hang_mid_stream(sim)
    with pytest.raises(openai.APIError, match="FLEET_CHUNK_TIMEOUT"):
        for _ in oai.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass
    hang_mid_stream(sim)
    # not streamed: the client waits for the whole answer; it gets a 503 saying which
    # limit fired (504 is not a status herd answers), not a 500
    body = {"model": MODEL, "messages": MESSAGES}
    r = httpx.post(f"{endpoint}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert "FLEET_CHUNK_TIMEOUT" in error["message"] and error["code"] == "backend_timeout"
