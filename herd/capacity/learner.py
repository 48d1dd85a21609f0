"""The capacity learner: each heartbeat, one reading of the owner's use becomes the
scoring fields of :class:`herd.domain.NodeHeartbeat` and one more sample of the week.

* **pause** (the node takes no new request; in-flight ones finish): the owner is in a
  meeting (camera or microphone in use, or the meeting flag file), reason
  :data:`MEETING`; or the device runs on battery at :data:`BATTERY_PAUSE_PERCENT` or
  less (herd would drain what the owner has left).
* **availability now** (0..1): what the owner leaves of the machine, ``1 - load`` (the
  owner's CPU or GPU, the higher of the latest sample and the recent mean), capped by
  the workload's intensity (:mod:`herd.capacity.fingerprint`: idle 1, light 0.85,
  moderate 0.5, heavy 0.15), halved on battery, x 0.6 when thermally throttled, x 0.85
  while the user is at the machine (idle under a minute, where the OS tells); 0 paused.
* **availability next**: the learned availability of the next hour's slot, ``None``
  until that slot is learned.
* **memory ceiling** (bytes herd may fill with models): the memory herd may use (the
  device's memory minus the owner's use, now or as learned for the next hour, whichever
  is larger, minus 10 % for the OS; a ``FLEET_NODE_MEMORY_BYTES`` budget as it is) times
  ``0.25 + 0.75 x`` the lower of the two availabilities.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.capacity.fingerprint import Intensity, Signature, classify
from herd.capacity.sensors import HostLoad, Reading, Sensors, SystemSensors
from herd.capacity.week import Observation, WeekModel, load_week, save_week, slot_of
from herd.domain import CapacityReport
from herd.settings import Settings

MEETING = "owner in a meeting"
BATTERY_PAUSE_PERCENT = 20.0
INTENSITY_CAP: dict[Intensity, float] = {"idle": 1.0, "light": 0.85, "moderate": 0.5, "heavy": 0.15}
ON_BATTERY = 0.5
THROTTLED = 0.6
USER_PRESENT = 0.85
PRESENT_IDLE_S = 60.0
CEILING_FLOOR = 0.25
OS_RESERVE = 0.10
WINDOW = 6  # samples the workload is classified over (30 s at the default heartbeat)
SAVE_EVERY_S = 300.0


@dataclass(frozen=True, slots=True)
class CapacityBeat:
    paused: bool
    pause_reason: str
    availability: float
    availability_next: float | None
    memory_ceiling: int
    report: CapacityReport

    def heartbeat_fields(self) -> dict[str, Any]:
        """The :class:`herd.domain.NodeHeartbeat` fields this beat fills."""
        return {
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "availability": self.availability,
            "availability_next": self.availability_next,
            "memory_ceiling": self.memory_ceiling,
            "capacity": self.report,
        }


def pause_reason(reading: Reading) -> str:
    """Why the node must take no new work now ("" when it may)."""
    if reading.meeting:
        return MEETING
    pct = reading.battery_percent
    if reading.on_battery and pct is not None and pct <= BATTERY_PAUSE_PERCENT:
        return f"on battery at {pct:.0f}%"
    return ""


def _safe(node_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", node_id) or "node"


def capacity_paths(settings: Settings, node_id: str) -> tuple[Path, Path]:
    """``(<data dir>/capacity/<node>.json, <data dir>/capacity/<node>.meeting)``."""
    base = settings.data_dir / "capacity" / _safe(node_id)
    return base.with_suffix(".json"), base.with_suffix(".meeting")


class CapacityLearner:
    def __init__(
        self,
        node_id: str,
        sensors: Sensors,
        path: Path | None = None,
        interval: float = 5.0,
        utc_offset_s: float | None = None,
    ) -> None:
        self.node_id = node_id
        self.sensors = sensors
        self.path = path
        self.interval = interval
        self.utc_offset_s = utc_offset_s  # None: the device's local time
        self.week = load_week(path) if path is not None else WeekModel()
        self.window: deque[Signature] = deque(maxlen=WINDOW)
        self._last: float | None = None
        self._saved = time.time()

    @classmethod
    def for_node(cls, settings: Settings, node_id: str) -> CapacityLearner:
        path, flag = capacity_paths(settings, node_id)
        return cls(node_id, SystemSensors(flag), path, settings.heartbeat_interval)

    # --- each heartbeat ---------------------------------------------------------------------
    async def heartbeat_fields(
        self, host: HostLoad, budget: int | None = None, now: float | None = None
    ) -> dict[str, Any]:
        """Read the sensors (in a thread: they block) and learn; the heartbeat's fields.
        ``budget``: FLEET_NODE_MEMORY_BYTES, the memory herd may use instead of the OS's."""
        at = time.time() if now is None else now
        reading = await asyncio.to_thread(self.sensors.read, at, host)
        total = host.memory_total if budget is None else budget
        beat = self.step(reading, at, total, budget is not None)
        if self.path is not None and at - self._saved >= SAVE_EVERY_S:
            await asyncio.to_thread(self.save, at)
        return beat.heartbeat_fields()

    def step(self, reading: Reading, now: float, memory_total: int, budget: bool) -> CapacityBeat:
        """Learn one reading taken at ``now``; what the heartbeat reports. ``budget``: the
        memory is a FLEET_NODE_MEMORY_BYTES budget (it leaves room for the owner already)."""
        slot = slot_of(now, self.utc_offset_s)
        dt = self.interval if self._last is None else now - self._last
        self._last = now
        cpu, memory, gpu = reading.owner_cpu, reading.owner_memory, reading.owner_gpu
        self.week.observe(slot, Observation(cpu, memory, gpu, reading.meeting), dt)
        self.window.append(Signature(cpu, memory, gpu, reading.io_bytes_s))
        workload = classify(self.window)
        reason = pause_reason(reading)
        now_a = 0.0 if reason else self._available(reading, workload)
        learned = self.week.forecast(slot + 1)
        next_a = round(learned.availability, 3) if learned is not None else None
        report = CapacityReport(
            week=self.week.availability_bytes(),
            slot=slot,
            workload=workload,
            owner_cpu=round(reading.owner_cpu, 3),
            meeting=reading.meeting,
            on_battery=reading.on_battery,
            battery_percent=reading.battery_percent,
            throttled=reading.throttled,
            user_idle_s=reading.user_idle_s,
        )
        owner_memory = reading.owner_memory
        if learned is not None:
            owner_memory = max(owner_memory, learned.memory)
        lowest = now_a if next_a is None else min(now_a, next_a)
        ceiling = memory_ceiling(memory_total, owner_memory, lowest, budget)
        return CapacityBeat(bool(reason), reason, round(now_a, 3), next_a, ceiling, report)

    def _available(self, reading: Reading, workload: Intensity) -> float:
        cpus = [s.cpu for s in self.window]
        load = max(reading.owner_cpu, sum(cpus) / len(cpus), reading.owner_gpu or 0.0)
        a = min(INTENSITY_CAP[workload], 1.0 - load)
        if reading.on_battery:
            a *= ON_BATTERY
        if reading.throttled:
            a *= THROTTLED
        if reading.user_idle_s is not None and reading.user_idle_s < PRESENT_IDLE_S:
            a *= USER_PRESENT
        return max(0.0, min(1.0, a))

    def save(self, now: float | None = None) -> None:
        """Write the week to its JSON file (atomic); nothing without a path."""
        if self.path is None:
            return
        at = time.time() if now is None else now
        save_week(self.path, self.week, self.node_id, at)
        self._saved = at


def memory_ceiling(total: int, owner_share: float, availability: float, budget: bool) -> int:
    """Bytes herd may fill with models (at least 1: 0 would mean "no ceiling")."""
    if total <= 0:
        return 0
    usable = float(total) if budget else total * (1.0 - OS_RESERVE - owner_share)
    share = CEILING_FLOOR + (1.0 - CEILING_FLOOR) * max(0.0, min(1.0, availability))
    return max(1, int(usable * share))
