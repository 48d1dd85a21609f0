"""A client that hangs up releases its booking at once, through the default HAProxy
ingress: while its request waits in the holding queue, while it is pending on a node
(before the first chunk), and while it streams. The bound (3 s) is how long a hang-up
may keep a booking; the closing note reports the measured times."""

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
RELEASE_BOUND = 3.0


def _released(fleet: Any, node: str, model: str) -> float:
    """Seconds until the router shows no booking of ``model`` on ``node``."""
    t0 = time.monotonic()
    wait_until(lambda: in_flight(fleet, node, model) == 0, RELEASE_BOUND, f"{node} released")
    return time.monotonic() - t0


@pytest.mark.parametrize("stream", [True, False])
def test_a_hang_up_before_the_first_chunk_releases_the_booking(
    fleet: Any, endpoint: str, sim: Any, stream: bool
) -> None:
    sim.fault("gamma", kind="hang", model=CODER, after_chunks=0)
    body = {"model": CODER, "messages": MESSAGES, "stream": stream}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{endpoint}/api/chat", json=body, timeout=httpx.Timeout(5, read=1.5))
    # It was booked on gamma while it hung (the router saw it), then let go.
    took = _released(fleet, "gamma", CODER)
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


def test_a_hang_up_in_the_holding_queue_leaves_it(fleet: Any, endpoint: str, sim: Any) -> None:
    take_backend_down(fleet, sim, "gamma")
    try:
        body = {"model": CODER, "messages": MESSAGES, "stream": False}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{endpoint}/api/chat", json=body, timeout=httpx.Timeout(5, read=1.0))
        t0 = time.monotonic()
        wait_until(
            lambda: fleet.status()["queue"]["waiting"] == 0, RELEASE_BOUND, "the queue to empty"
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
