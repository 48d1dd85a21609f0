"""A client that hangs up releases its booking, through the default HAProxy ingress.

Once the answer has started, at once (the next write fails). Before its first byte,
Serve's HAProxy (2.8) keeps the request running: it takes a client's FIN as a possible
half-close and tells the replica nothing (its ``abortonclose`` only drops requests still
queued in HAProxy), so the booking is released by the first write or by the time limits
(first chunk, holding queue), never left for the zombie reaper. herd's own hang-up
watch (``serve_app/hangup.py``) releases it at once wherever the HTTP server reports the
disconnect (``tests/unit/test_hangup_middleware.py``, uvicorn; ``FLEET_SERVE_PROXY=default``)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from launch.localray import wait_until

from .routing_support import (
    MESSAGES,
    bring_backend_up,
    in_flight,
    take_backend_down,
)

CODER = "coder:1b"  # only gamma has it
TINY = "tiny:1b"
RELEASE_BOUND = 3.0  # after the answer started
# Before the first byte: the first-chunk / holding-queue limits of the test fleet (3 s).
LIMIT_BOUND = 3.0 + RELEASE_BOUND


def _released(fleet: Any, node: str, model: str, bound: float = RELEASE_BOUND) -> float:
    """Seconds until the router shows no booking of ``model`` on ``node``."""
    t0 = time.monotonic()
    wait_until(lambda: in_flight(fleet, node, model) == 0, bound, f"{node} released")
    return time.monotonic() - t0


@pytest.mark.parametrize("stream", [True, False])
def test_a_hang_up_before_the_first_chunk_is_released_by_the_time_limit(
    fleet: Any, endpoint: str, sim: Any, stream: bool
) -> None:
    sim.fault("gamma", kind="hang", model=CODER, after_chunks=0)
    body = {"model": CODER, "messages": MESSAGES, "stream": stream}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{endpoint}/api/chat", json=body, timeout=httpx.Timeout(5, read=1.5))
    took = _released(fleet, "gamma", CODER, LIMIT_BOUND)
    print(f"released {took:.2f}s after the hang-up (pending, stream={stream})")


def test_a_hang_up_mid_stream_releases_the_booking(fleet: Any, endpoint: str, sim: Any) -> None:
    sim.fault("gamma", kind="slow", model=CODER, factor=200.0)
    body = {"model": CODER, "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{endpoint}/api/chat", json=body, timeout=30) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = json.loads(next(line for line in lines if line.strip()))
        assert first["done"] is False
        wait_until(lambda: in_flight(fleet, "gamma", CODER) == 1, 5, "the stream booked")
    took = _released(fleet, "gamma", CODER)  # the with-block closed the connection
    print(f"released {took:.2f}s after the hang-up (mid-stream)")


def test_a_hang_up_in_the_holding_queue_leaves_it_by_the_time_limit(
    fleet: Any, endpoint: str, sim: Any
) -> None:
    take_backend_down(fleet, sim, "gamma")
    try:
        body = {"model": CODER, "messages": MESSAGES, "stream": False}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{endpoint}/api/chat", json=body, timeout=httpx.Timeout(5, read=1.0))
        t0 = time.monotonic()
        wait_until(
            lambda: fleet.status()["queue"]["waiting"] == 0, LIMIT_BOUND, "the queue to empty"
        )
        print(f"left the holding queue {time.monotonic() - t0:.2f}s after the hang-up")
    finally:
        bring_backend_up(fleet, sim, "gamma")
    assert in_flight(fleet, "gamma", CODER) == 0


def test_many_quick_hang_ups_leave_nothing_booked(fleet: Any, endpoint: str, sim: Any) -> None:
    """The issue's case: three clients that disconnect within 0.1 s."""
    sim.fault("alpha", kind="slow", model=TINY, factor=200.0)
    body = {"model": TINY, "messages": MESSAGES, "stream": True}
    for _ in range(3):
        with (
            pytest.raises(httpx.ReadTimeout),
            httpx.stream(
                "POST", f"{endpoint}/api/chat", json=body, timeout=httpx.Timeout(5, read=0.1)
            ) as r,
        ):
            for _line in r.iter_lines():
                pass
    took = _released(fleet, "alpha", TINY)
    print(f"released {took:.2f}s after three quick hang-ups")
