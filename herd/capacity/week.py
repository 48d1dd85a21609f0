"""The owner's week: 168 hourly slots (Monday 00h .. Sunday 23h, the device's local time),
each learned online from what the device does outside herd's requests.

Every sample adds its time (``dt`` seconds) to the slot it falls in. A slot's values are
exponentially weighted per hour of observation: a full hour observed this week keeps
``1 - ALPHA`` of what earlier weeks taught (so a routine that changes is relearned in a
few weeks), and a slot observed for less than ``1 / ALPHA`` hours so far is a plain mean
(its first samples are not drowned by an empty prior). A slot observed for less than
``MIN_HOURS`` is not learned yet: its forecast is ``None`` (absent, not guessed).

The week is stored as readable JSON (:func:`save_week`, atomic: a temporary file renamed
over the old one) and read back at start (:func:`load_week`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("herd.capacity")

SLOTS = 168
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ALPHA = 0.3  # weight of one newly observed hour against what the slot knew
MIN_HOURS = 0.25  # observed this long (over every week) before a slot forecasts
MAX_SAMPLE_S = 900.0  # one sample counts for at most this long (a gap is not observed)
UNKNOWN = 255  # a slot's byte in CapacityReport.week when it is not learned
FORMAT = 1


def slot_of(ts: float, utc_offset_s: float | None = None) -> int:
    """The week slot of epoch ``ts``: in local time, or at ``utc_offset_s`` from UTC."""
    t = time.localtime(ts) if utc_offset_s is None else time.gmtime(ts + utc_offset_s)
    return t.tm_wday * 24 + t.tm_hour


def slot_name(slot: int) -> str:
    return f"{DAYS[slot // 24]} {slot % 24:02d}h"


@dataclass(slots=True)
class Slot:
    """What one hour of the week looked like (shares 0..1)."""

    cpu: float = 0.0  # the owner's CPU load
    memory: float = 0.0  # the owner's memory use (share of the device's memory)
    gpu: float | None = None  # the owner's GPU load, where measurable
    meeting: float = 0.0  # share of the time in a meeting
    hours: float = 0.0  # time observed, over every week

    @property
    def learned(self) -> bool:
        return self.hours >= MIN_HOURS

    @property
    def availability(self) -> float:
        """Spare capacity: the time out of meetings times the compute the owner leaves."""
        load = max(self.cpu, self.gpu or 0.0)
        return max(0.0, min(1.0, (1.0 - self.meeting) * (1.0 - load)))


@dataclass(frozen=True, slots=True)
class Observation:
    """One sample of the owner's use, for :meth:`WeekModel.observe`."""

    cpu: float
    memory: float
    gpu: float | None = None
    meeting: bool = False


class WeekModel:
    def __init__(self, slots: list[Slot] | None = None) -> None:
        self.slots = slots if slots is not None else [Slot() for _ in range(SLOTS)]
        if len(self.slots) != SLOTS:
            raise ValueError(f"a week has {SLOTS} slots, not {len(self.slots)}")

    def observe(self, slot: int, seen: Observation, dt: float) -> None:
        """Add ``dt`` seconds of ``seen`` to ``slot``."""
        h = min(max(dt, 0.0), MAX_SAMPLE_S) / 3600.0
        if h <= 0.0:
            return
        s = self.slots[slot % SLOTS]
        weight = max(1.0 - (1.0 - ALPHA) ** h, h / (s.hours + h))
        s.cpu += weight * (_unit(seen.cpu) - s.cpu)
        s.memory += weight * (_unit(seen.memory) - s.memory)
        s.meeting += weight * (float(seen.meeting) - s.meeting)
        if seen.gpu is not None:
            s.gpu = _unit(seen.gpu) if s.gpu is None else s.gpu + weight * (_unit(seen.gpu) - s.gpu)
        s.hours += h

    def forecast(self, slot: int) -> Slot | None:
        """The learned slot, or ``None`` while it has not been observed long enough."""
        s = self.slots[slot % SLOTS]
        return s if s.learned else None

    def availability_bytes(self) -> bytes:
        """The week as :class:`herd.domain.CapacityReport` carries it: a byte per slot."""
        return bytes(round(100 * s.availability) if s.learned else UNKNOWN for s in self.slots)

    # --- JSON ------------------------------------------------------------------------------
    def to_json(self, node_id: str, now: float) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "node": node_id,
            "saved_at": round(now, 3),
            "about": "herd's capacity learner: the owner's load per hour of the week "
            "(local time), shares 0..1, outside herd's own requests",
            "slots": [
                {
                    "slot": slot_name(i),
                    "cpu": round(s.cpu, 4),
                    "memory": round(s.memory, 4),
                    "gpu": None if s.gpu is None else round(s.gpu, 4),
                    "meeting": round(s.meeting, 4),
                    "hours": round(s.hours, 4),
                }
                for i, s in enumerate(self.slots)
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> WeekModel:
        """Read :meth:`to_json`'s form; ``ValueError`` when it is not that."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a capacity week (format 1)")
        raw = data.get("slots")
        if not isinstance(raw, list) or len(raw) != SLOTS:
            raise ValueError(f"a week has {SLOTS} slots")
        slots = []
        for entry in raw:
            if not isinstance(entry, dict):
                raise ValueError("a slot is an object")
            gpu = entry.get("gpu")
            slots.append(
                Slot(
                    cpu=_unit(_number(entry, "cpu")),
                    memory=_unit(_number(entry, "memory")),
                    gpu=None if gpu is None else _unit(_number(entry, "gpu")),
                    meeting=_unit(_number(entry, "meeting")),
                    hours=max(0.0, _number(entry, "hours")),
                )
            )
        return cls(slots)


def _number(entry: dict[str, Any], key: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"slot field {key!r} is not a number: {value!r}")
    return float(value)


def _unit(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else float(x)


def save_week(path: Path, week: WeekModel, node_id: str, now: float) -> None:
    """Write the week as JSON, atomically (a reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(week.to_json(node_id, now), indent=1)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_week(path: Path) -> WeekModel:
    """The week saved at ``path``; a fresh one when there is none. A file that cannot be
    read as a week is kept aside as ``<name>.corrupt`` (logged) and learning starts over."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return WeekModel()
    try:
        return WeekModel.from_json(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        log.warning("capacity week %s unreadable (%s): kept as %s, starting over", path, exc, aside)
        return WeekModel()
