"""Faults injected into real emulators: retries, clean mid-stream errors, moving traffic."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import openai
import pytest

from launch.localray import wait_until

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Tell me a story."}]


@pytest.fixture
def oai(endpoint: str) -> Any:
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="x", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def first_choice(oai: Any) -> str:
    """The node that serves tiny:1b right now. Which one depends on what the router has
    learned from earlier tests (every node has tiny:1b; several may have it loaded), so
    faults go to the node the next request will pick."""
    raw = oai.chat.completions.with_raw_response.create(model="tiny:1b", messages=MESSAGES)
    node: str = raw.headers["x-herd-node"]
    return node


def test_failure_before_first_chunk_is_retried_on_another_node(
    oai: Any, sim: Any, first_choice: str
) -> None:
    sim.fault(first_choice, kind="fail_before", model="tiny:1b", count=1, message="boom")
    raw = oai.chat.completions.with_raw_response.create(model="tiny:1b", messages=MESSAGES)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-herd-retries"] == "1"
    assert raw.headers["x-herd-node"] in {"alpha", "beta", "gamma"} - {first_choice}


def test_streaming_failure_before_first_chunk_is_retried(
    endpoint: str, sim: Any, first_choice: str
) -> None:
    sim.fault(first_choice, kind="fail_before", model="tiny:1b", count=1, status=503)
    with httpx.stream(
        "POST", f"{endpoint}/api/chat", json={"model": "tiny:1b", "messages": MESSAGES}
    ) as r:
        lines = list(r.iter_lines())
        assert r.status_code == 200
        assert r.headers["x-herd-node"] != first_choice
        assert r.headers["x-herd-retries"] == "1"
    assert '"done":true' in lines[-1]


def test_a_hanging_node_times_out_and_the_request_moves(
    oai: Any, sim: Any, first_choice: str
) -> None:
    sim.fault(first_choice, kind="hang", model="tiny:1b", count=1)
    raw = oai.chat.completions.with_raw_response.create(model="tiny:1b", messages=MESSAGES)
    assert raw.headers["x-herd-node"] != first_choice
    assert raw.parse().choices[0].message.content


def test_mid_stream_failure_is_a_clean_error_in_each_dialect(
    oai: Any, endpoint: str, sim: Any
) -> None:
    for node in ("alpha", "beta", "gamma"):  # wherever tiny:1b goes, it breaks mid-stream
        sim.fault(node, kind="fail_mid_stream", model="tiny:1b", count=2, after_chunks=2)
    with pytest.raises(openai.APIError, match=r"."):
        for _ in oai.chat.completions.create(model="tiny:1b", messages=MESSAGES, stream=True):
            pass
    client = ollama.Client(host=endpoint)
    try:
        with pytest.raises(ollama.ResponseError):
            for _ in client.chat(model="tiny:1b", messages=MESSAGES, stream=True):
                pass
    finally:
        client._client.close()


def test_a_stopped_backend_moves_traffic_to_the_others(fleet: Any, oai: Any, sim: Any) -> None:
    profile = next(s.profile for s in fleet.specs if s.name == "alpha")
    port = int(fleet.emulator_urls["alpha"].rsplit(":", 1)[1])
    fleet.stop_emulator("alpha")
    try:
        served_by = set()
        for _ in range(4):
            raw = oai.chat.completions.with_raw_response.create(model="tiny:1b", messages=MESSAGES)
            served_by.add(raw.headers["x-herd-node"])
        assert served_by <= {"beta", "gamma"}
        wait_until(
            lambda: not (fleet.node_status("alpha") or {}).get("backend_ok", True),
            10,
            "alpha's heartbeat to report its backend down",
        )
    finally:
        fleet.start_emulator("alpha", profile, port=port)
    wait_until(lambda: "alpha" in fleet.online(), 15, "alpha back online")
