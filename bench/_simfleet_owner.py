"""The ``owner-busy`` workload of ``bench/fleet.py``: machines people use.

One device's owner uses it on a schedule (``OWNER_NODE``, the fastest GPU): two stretches
of gaming (the GPU is the owner's: the emulator runs ``BUSY_SLOWDOWN`` times slower) and
a video call between them (``MEETING_SLOWDOWN``: the call takes its share). Another
device (``FLAKY_NODE``) fails intermittently: during three windows every request fails
before its first chunk (its runner crash-loops), then it recovers.

Each run goes twice, side by side: ``off`` (no capacity learning, no failure memory:
``FLEET_FAILURE_THRESHOLD=0``) and ``on`` (every node learns its owner: the owner's
device reads its owner through :class:`ScheduledOwner`, a sensor that replays the
schedule, the others have idle owners; the failure memory at its defaults). ``owner
hits`` counts the requests that arrived while the owner was busy or in the call and
ran on the owner's device (``call hits``: in the call), how much the owner felt the
fleet; a request that arrives before the next heartbeat tells the router about the call
still goes there.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from herd.capacity.learner import CapacityLearner
from herd.capacity.sensors import HostLoad, Reading

OWNER_NODE = "gaming-pc"
FLAKY_NODE = "mac-mini"
BUSY_SLOWDOWN = 4.0
MEETING_SLOWDOWN = 2.0
# Shares of the arrival window: (start, end, what the owner does).
OWNER_PHASES = ((0.10, 0.40, "busy"), (0.50, 0.65, "meeting"), (0.75, 0.95, "busy"))
FLAKY_WINDOWS = ((0.05, 0.20), (0.35, 0.50), (0.70, 0.85))
FEATURES = ("off", "on")

IDLE = Reading(owner_cpu=0.02, owner_memory=0.15, owner_gpu=0.0)
READINGS = {
    "busy": Reading(owner_cpu=0.25, owner_memory=0.35, owner_gpu=0.9),  # a game
    "meeting": Reading(owner_cpu=0.35, owner_memory=0.3, camera=True, microphone=True),
}


@dataclass(frozen=True, slots=True)
class Phase:
    start_s: float  # simulated seconds since the first arrival
    end_s: float
    what: str  # "busy", "meeting" or "failing"


def owner_schedule(span_s: float) -> tuple[tuple[Phase, ...], tuple[Phase, ...]]:
    """The owner's phases and the flaky device's failing windows for a workload span."""
    owner = tuple(Phase(a * span_s, b * span_s, what) for a, b, what in OWNER_PHASES)
    flaky = tuple(Phase(a * span_s, b * span_s, "failing") for a, b in FLAKY_WINDOWS)
    return owner, flaky


class ScheduledOwner:
    """A capacity sensor that replays an owner's schedule (simulated time)."""

    def __init__(self, phases: tuple[Phase, ...], time_scale: float) -> None:
        self.phases = phases
        self.time_scale = time_scale
        self.t0: float | None = None  # perf_counter of the first arrival

    def now_doing(self) -> str | None:
        if self.t0 is None:
            return None
        t = (time.perf_counter() - self.t0) * self.time_scale
        return next((p.what for p in self.phases if p.start_s <= t < p.end_s), None)

    def read(self, now: float, host: HostLoad) -> Reading:
        doing = self.now_doing()
        return READINGS.get(doing or "", IDLE)


def install_learners(
    agents: dict[str, Any], owners: dict[str, ScheduledOwner], interval: float
) -> None:
    """Capacity learning on every agent (in memory: no week file), each over its owner."""
    for name, agent in agents.items():
        agent.capacity = CapacityLearner(name, owners[name], path=None, interval=interval)


async def _fault(session: aiohttp.ClientSession, url: str, spec: dict[str, Any] | None) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    if spec is None:
        async with session.delete(f"{url}/_sim/faults", timeout=timeout) as r:
            r.raise_for_status()
        return
    async with session.post(f"{url}/_sim/faults", json=spec, timeout=timeout) as r:
        r.raise_for_status()


def _spec(phase: Phase) -> dict[str, Any]:
    if phase.what == "failing":
        return {"kind": "fail_before", "status": 500}
    factor = BUSY_SLOWDOWN if phase.what == "busy" else MEETING_SLOWDOWN
    return {"kind": "slow", "factor": factor}


async def play_schedule(
    session: aiohttp.ClientSession,
    urls: dict[str, str],
    schedule: dict[str, tuple[Phase, ...]],
    time_scale: float,
    t0: float,
) -> None:
    """Set each device's faults at its phases' starts and clear them at their ends."""
    events = sorted(
        (
            (edge, node, phase if edge == phase.start_s else None)
            for node, phases in schedule.items()
            for phase in phases
            for edge in (phase.start_s, phase.end_s)
        ),
        key=lambda e: (e[0], e[1], e[2] is not None),  # a clear before a set at one instant
    )
    for at, node, phase in events:
        delay = t0 + at / time_scale - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await _fault(session, urls[node], _spec(phase) if phase is not None else None)


def owner_hits(
    results: list[Any], phases: tuple[Phase, ...], t0: float, time_scale: float
) -> dict[str, int]:
    """Requests that arrived during the owner's phases and ran on the owner's device, per
    phase kind ("busy", "meeting")."""
    hits = {"busy": 0, "meeting": 0}
    for r in results:
        t = (r.arrival - t0) * time_scale
        doing = next((p.what for p in phases if p.start_s <= t < p.end_s), None)
        if r.node == OWNER_NODE and doing in hits:
            hits[doing] += 1
    return hits
