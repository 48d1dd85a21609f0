"""The routing engine against real emulators: fallback chains, the holding queue, the
rebalancer and pre-warm (issue 3). Retry before the first chunk and the clean error after
it are in test_resilience.py; a drain that loses no request is in test_zy_drain.py.

Model placement (tests/conftest.py): coder:1b lives only on gamma; thinker:1b is loaded on
beta and only on disk on gamma (alpha does not have it). A node runs ``num_parallel``
requests per model at once (its profile's: 2 on beta); the rest wait on the node for a
slot ("pending"), where the rebalancer and a drain can still move them. Taking gamma's
backend down (the emulator's ``down`` fault) makes beta the only candidate for
thinker:1b, so a burst deterministically queues up there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from launch.localray import wait_until

from .routing_support import (
    MESSAGES,
    bring_backend_up,
    counters,
    events,
    in_flight,
    in_threads,
    loaded_on_emulator,
    node_view,
    ollama_chat_stream,
    set_loaded,
    take_backend_down,
)

pytestmark = pytest.mark.integration

THINKER = "thinker:1b"
CODER = "coder:1b"
# thinker:1b on a slowed beta: ~0.2 s a token, ~2.5 s a request, first token well inside
# the fleet's 3 s first-chunk timeout; requests waiting behind it stay pending for long.
SLOW = {"kind": "slow", "model": THINKER, "factor": 400.0}


@pytest.fixture
def oai(endpoint: str) -> Iterator[Any]:
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="x", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def thinker_cold_on_gamma(fleet: Any, sim: Any) -> Iterator[None]:
    """thinker:1b loaded on beta only, before and after the test."""
    set_loaded(fleet, sim, "gamma", THINKER, False)
    yield
    bring_backend_up(fleet, sim, "gamma", wait=False)
    set_loaded(fleet, sim, "gamma", THINKER, False)


# --- fallback chain -------------------------------------------------------------------


def test_fallback_after_the_only_holder_fails_openai(oai: Any, sim: Any) -> None:
    """coder:1b fails on gamma (its only node) before any output: the retry finds no
    other node for it and the fallback serves, with the response naming the fallback."""
    sim.fault("gamma", kind="fail_before", model=CODER, count=1, message="gpu fell off")
    raw = oai.chat.completions.with_raw_response.create(
        model=CODER, messages=MESSAGES, extra_body={"fallback_models": [THINKER]}
    )
    reply = raw.parse()
    assert reply.choices[0].message.content
    assert reply.model == THINKER
    assert raw.headers["x-herd-model"] == THINKER
    assert raw.headers["x-herd-fallback"] == "true"
    assert raw.headers["x-herd-retries"] == "1"
    assert raw.headers["x-herd-node"] == "beta"
    assert sim.state("gamma")["faults"] == []  # the first attempt did reach gamma


def test_fallback_after_the_only_holder_fails_ollama_streaming(endpoint: str, sim: Any) -> None:
    sim.fault("gamma", kind="fail_before", model=CODER, count=1, status=503)
    answer = ollama_chat_stream(endpoint, CODER, fallback_models=[THINKER])
    assert answer.done, answer
    assert {c["model"] for c in answer.chunks} == {THINKER}
    assert answer.headers["x-herd-model"] == THINKER
    assert answer.headers["x-herd-fallback"] == "true"
    assert answer.headers["x-herd-retries"] == "1"
    assert answer.node == "beta"


def test_fallback_serves_at_once_when_the_only_holder_is_down(
    fleet: Any, endpoint: str, sim: Any
) -> None:
    """With fallbacks, a request whose first model has no usable node is not held."""
    take_backend_down(fleet, sim, "gamma")
    held = counters(fleet)["held"]
    body = {
        "model": CODER,
        "fallback_models": ["tiny:1b"],
        "prompt": "hi",
        "stream": False,
    }
    r = httpx.post(f"{endpoint}/api/generate", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tiny:1b" and r.json()["response"]
    assert r.headers["x-herd-fallback"] == "true" and r.headers["x-herd-model"] == "tiny:1b"
    # The ingress's mirrored view can lag the router's by one refresh (~0.5 s): it may
    # still try gamma once, which fails before any output and is retried.
    assert r.headers["x-herd-retries"] in ("0", "1") and r.headers["x-herd-node"] != "gamma"
    assert counters(fleet)["held"] == held


# --- holding queue --------------------------------------------------------------------


def test_holding_queue_is_served_when_the_only_holder_comes_back(
    fleet: Any, endpoint: str, oai: Any, sim: Any
) -> None:
    """coder:1b's only node has its backend down: requests wait in the holding queue
    (not 404, not 503) and are served, in both dialects, once the backend is back within
    the fleet's holding timeout (3 s)."""
    take_backend_down(fleet, sim, "gamma")
    before = counters(fleet)

    def openai_call() -> Any:
        return oai.chat.completions.with_raw_response.create(model=CODER, messages=MESSAGES)

    with ThreadPoolExecutor(2) as pool:
        streamed = pool.submit(ollama_chat_stream, endpoint, CODER)
        whole = pool.submit(openai_call)
        wait_until(
            lambda: fleet.status()["queue"]["waiting_by_model"].get(CODER) == 2,
            fleet.settings.holding_queue_timeout,
            "both requests in the holding queue",
            step=0.02,
        )
        assert not streamed.done() and not whole.done()
        bring_backend_up(fleet, sim, "gamma", wait=False)
        answer = streamed.result(timeout=30)
        raw = whole.result(timeout=30)
    assert answer.done, answer
    assert answer.node == "gamma" and answer.headers["x-herd-retries"] == "0"
    assert raw.headers["x-herd-node"] == "gamma"
    assert raw.parse().choices[0].message.content
    after = counters(fleet)
    assert after["held"] - before["held"] == 2
    assert after["hold_timeouts"] == before["hold_timeouts"]


def test_a_caller_that_leaves_the_holding_queue_is_removed_from_it(fleet: Any, sim: Any) -> None:
    """A held request whose caller gives up leaves the queue at once (cancelled, not
    timed out) and takes no node when the backend comes back. Through the dispatcher the
    Serve ingress and the Python client share; over HTTP this also needs the ingress
    proxy to pass the hang-up on, which Serve's HAProxy does not do for a request still
    waiting for its response headers (a known gap, reported)."""
    from actors.client import connect_client

    take_backend_down(fleet, sim, "gamma")
    before = counters(fleet)
    client = connect_client(fleet.cluster.address, settings=fleet.settings)
    try:
        req = client._request("chat", CODER, {"messages": MESSAGES}, False)
        call = asyncio.run_coroutine_threadsafe(client.arun(req), client._loop)
        wait_until(lambda: fleet.status()["queue"]["waiting"] == 1, 2.5, "the request held")
        call.cancel()  # the caller goes away while its request is held
        wait_until(lambda: fleet.status()["queue"]["waiting"] == 0, 10, "the queue to empty")
    finally:
        client.close()
    after = counters(fleet)
    assert after["held"] == before["held"] + 1
    assert after["hold_timeouts"] == before["hold_timeouts"]  # it left, it did not time out
    bring_backend_up(fleet, sim, "gamma")
    assert in_flight(fleet, "gamma", CODER) == 0


# --- rebalancer and pre-warm ------------------------------------------------------------


@pytest.mark.usefixtures("thinker_cold_on_gamma")
def test_rebalancer_moves_pending_requests_to_a_node_with_free_slots(
    fleet: Any, endpoint: str, sim: Any
) -> None:
    """Slow thinker requests fill beta's slots and two more wait for one. Once gamma has
    thinker loaded and free slots, the rebalancer hands the waiting ones over; all
    succeed and a move is not counted as a retry. Two waiting stay under the pre-warm
    threshold (4), so only the rebalancer acts."""
    n = node_view(fleet, "beta")["num_parallel"] + 2
    take_backend_down(fleet, sim, "gamma")
    sim.fault("beta", **SLOW)
    before = counters(fleet)
    with ThreadPoolExecutor(n) as pool:
        futures = in_threads(pool, n, lambda: ollama_chat_stream(endpoint, THINKER))
        wait_until(lambda: in_flight(fleet, "beta", THINKER) == n, 10, "the burst on beta")
        assert counters(fleet)["moved"] == before["moved"]  # nowhere to move them yet
        bring_backend_up(fleet, sim, "gamma")
        set_loaded(fleet, sim, "gamma", THINKER, True)
        answers = [f.result(timeout=60) for f in futures]
    assert all(a.done for a in answers), answers
    assert all(a.headers["x-herd-retries"] == "0" for a in answers)
    served = [a.node for a in answers]
    assert "gamma" in served and "beta" in served, served
    assert counters(fleet)["moved"] > before["moved"]
    moves = [e for e in events(fleet, "rebalanced") if e["model"] == THINKER]
    assert any(e["node_id"] == "beta" and e["to_node"] == "gamma" for e in moves), moves


@pytest.mark.usefixtures("thinker_cold_on_gamma")
def test_prewarm_loads_the_model_on_the_runner_up(fleet: Any, endpoint: str, sim: Any) -> None:
    """Slow thinker requests queue on beta, more waiting than the pre-warm threshold.
    When gamma (thinker on disk) becomes usable, the router warms thinker there before
    any request reaches it; then the rebalancer moves waiting requests onto it."""
    threshold = fleet.settings.prewarm_threshold
    assert threshold > 0
    n = node_view(fleet, "beta")["num_parallel"] + threshold + 2
    take_backend_down(fleet, sim, "gamma")
    sim.fault("beta", **SLOW)
    before = counters(fleet)
    with ThreadPoolExecutor(n) as pool:
        futures = in_threads(pool, n, lambda: ollama_chat_stream(endpoint, THINKER))
        wait_until(lambda: in_flight(fleet, "beta", THINKER) == n, 10, "the burst on beta")
        assert THINKER not in loaded_on_emulator(sim, "gamma")
        bring_backend_up(fleet, sim, "gamma", wait=False)
        wait_until(lambda: THINKER in loaded_on_emulator(sim, "gamma"), 10, "thinker warmed")
        answers = [f.result(timeout=60) for f in futures]
    assert all(a.done for a in answers), answers
    after = counters(fleet)
    assert after["prewarmed"] > before["prewarmed"]
    warms = [e for e in events(fleet, "prewarm") if e["model"] == THINKER]
    assert warms and warms[-1]["node_id"] == "gamma", warms
    assert after["moved"] > before["moved"]
    assert "gamma" in {a.node for a in answers}
