"""Capacity learning on the shared fleet: beta learns its owner's week
(tests/conftest.py). Its owner "joins a meeting" through the meeting flag file, the
owner's own switch that the detector reads each heartbeat (<data dir>/capacity/beta.meeting):
beta is paused with the reason "owner in a meeting", requests already running there
finish, new ones go to gamma; when the meeting ends beta serves again.

thinker:1b is loaded on beta and on disk on gamma, so with beta paused gamma serves it
(a cold load), and with beta back and thinker unloaded from gamma beta is the hot node.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd.capacity.learner import MEETING, capacity_paths
from herd.capacity.week import SLOTS
from launch.localray import wait_until

from .routing_support import in_flight, node_view, ollama_chat_stream, set_loaded
from .trace_support import wait_trace

pytestmark = pytest.mark.integration

THINKER = "thinker:1b"
SLOW = {"kind": "slow", "model": THINKER, "factor": 400.0}  # ~2.5 s a request on beta


def capacity(fleet: Any) -> dict[str, Any]:
    return node_view(fleet, "beta").get("capacity") or {}


def ingress_caught_up(fleet: Any) -> None:
    """The ingress routes over a mirror of the router's view: wait until it has the
    router's latest."""
    seen = fleet.status()["view_version"]
    wait_until(
        lambda: fleet.status()["ingress_view_version"] >= seen,
        10,
        "the ingress's routing view to catch up",
        step=0.05,
    )


@pytest.fixture
def meeting_flag(fleet: Any, sim: Any) -> Iterator[Path]:
    """beta's meeting flag, removed after the test; thinker:1b back on beta only."""
    _, flag = capacity_paths(fleet.settings, "beta")
    flag.parent.mkdir(parents=True, exist_ok=True)
    set_loaded(fleet, sim, "gamma", THINKER, False)
    yield flag
    flag.unlink(missing_ok=True)
    wait_until(lambda: capacity(fleet).get("paused") is False, 10, "beta unpaused")
    httpx.delete(f"{sim.url('beta')}/_sim/faults", timeout=5)
    set_loaded(fleet, sim, "gamma", THINKER, False)


def test_beta_reports_its_learned_week(fleet: Any) -> None:
    cap = capacity(fleet)
    assert cap, "beta learns its owner's week"
    assert len(cap["week"]) == 7 and all(len(day) == 24 for day in cap["week"])
    assert 0 <= cap["slot"] < SLOTS and cap["paused"] is False
    assert 0.0 <= cap["availability"] <= 1.0
    assert 0 < cap["memory_ceiling"] <= node_view(fleet, "beta")["memory_total"]
    assert cap["workload"] in ("idle", "light", "moderate", "heavy")
    for other in ("alpha", "gamma"):
        assert node_view(fleet, other)["capacity"] is None  # not learning


def test_an_owner_in_a_meeting_gets_no_new_requests_and_running_ones_finish(
    fleet: Any, endpoint: str, sim: Any, meeting_flag: Path
) -> None:
    sim.fault("beta", **SLOW)
    with ThreadPoolExecutor(8) as pool:
        running = [pool.submit(ollama_chat_stream, endpoint, THINKER) for _ in range(2)]
        wait_until(lambda: in_flight(fleet, "beta", THINKER) == 2, 10, "2 requests on beta")

        meeting_flag.touch()  # the owner joins a meeting
        joined = time.monotonic()
        wait_until(lambda: capacity(fleet).get("paused") is True, 10, "beta paused")
        took = time.monotonic() - joined
        ingress_caught_up(fleet)
        assert capacity(fleet)["pause_reason"] == MEETING
        assert capacity(fleet)["availability"] == 0.0
        assert in_flight(fleet, "beta", THINKER) == 2, "the running requests still run there"

        new = [pool.submit(ollama_chat_stream, endpoint, THINKER) for _ in range(3)]
        answers = [f.result(timeout=60) for f in new]
        assert all(a.done for a in answers), [a.error or a.status for a in answers]
        assert {a.node for a in answers} == {"gamma"}
        trace = wait_trace(endpoint, answers[0].headers["x-herd-request-id"])
        assert trace["eliminated"]["beta"] == "owner in a meeting"

        finished = [f.result(timeout=60) for f in running]
        assert all(a.done and a.node == "beta" for a in finished), [
            (a.node, a.error) for a in finished
        ]
    print(f"beta paused {took:.2f} s after the owner joined (heartbeat every 0.25 s)")

    meeting_flag.unlink()  # the meeting ends
    wait_until(lambda: capacity(fleet).get("paused") is False, 10, "beta unpaused")
    httpx.delete(f"{sim.url('beta')}/_sim/faults", timeout=5).raise_for_status()
    set_loaded(fleet, sim, "gamma", THINKER, False)  # beta is the hot node for it again
    ingress_caught_up(fleet)
    again = ollama_chat_stream(endpoint, THINKER)
    assert again.done, again.error
    # Readmitted: beta is a candidate again (which node wins then depends on what the
    # router learned of beta's slow answers during the test, not on the meeting).
    trace = wait_trace(endpoint, again.headers["x-herd-request-id"])
    assert "beta" not in (trace["eliminated"] or {}), trace["eliminated"]
    assert any(c["node_id"] == "beta" for c in trace["candidates"]), trace["candidates"]
