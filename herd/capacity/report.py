"""A node's capacity learning as plain JSON (``/fleet/status``, ``herd status``, the
dashboard's week heat map), from its heartbeat."""

from __future__ import annotations

from typing import Any

from herd.capacity.week import DAYS, SLOTS, UNKNOWN
from herd.domain import NodeHeartbeat


def week_grid(week: bytes) -> list[list[float | None]]:
    """The 168 slots as 7 rows (Monday first) of 24 availabilities 0..1 (``None``: not
    learned yet)."""
    if len(week) != SLOTS:
        return [[None] * 24 for _ in DAYS]
    return [
        [None if b == UNKNOWN else b / 100.0 for b in week[day * 24 : day * 24 + 24]]
        for day in range(len(DAYS))
    ]


def capacity_status(hb: NodeHeartbeat) -> dict[str, Any] | None:
    """What the capacity learner says about the node; ``None`` when it is not learning."""
    report = hb.capacity
    if report is None:
        return None
    return {
        "paused": hb.paused,
        "pause_reason": hb.pause_reason,
        "availability": hb.availability,
        "availability_next": hb.availability_next,
        "memory_ceiling": hb.memory_ceiling,
        "workload": report.workload,
        "owner_cpu": report.owner_cpu,
        "meeting": report.meeting,
        "on_battery": report.on_battery,
        "battery_percent": report.battery_percent,
        "throttled": report.throttled,
        "user_idle_s": report.user_idle_s,
        "slot": report.slot,
        "days": list(DAYS),
        "week": week_grid(report.week),
    }
