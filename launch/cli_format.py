"""What ``herd ps`` and ``herd ls`` print, in the words of Ollama's CLI.

Sizes in decimal units (``4.7 GB``, ``274 MB``: whole numbers from 10 up, one decimal
below), times as Ollama says them (``4 minutes from now``, ``2 weeks ago``, ``About an
hour``, ``Forever`` past 20 years, ``Stopping...`` once passed), the processor split
(``100% GPU``, ``100% CPU``, ``48%/52% CPU/GPU``). ``ps`` adds NODE, ``ls`` NODES. Pure:
``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

_UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def human_bytes(n: int) -> str:
    for unit, size in _UNITS:
        if n >= size:
            value = n / size
            if value >= 10 or value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{n} B"


def human_duration(seconds: float) -> str:
    """A rough span: ``Less than a second`` ... ``3 years``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def parse_time(value: str | None) -> datetime:
    """An RFC 3339 time (Ollama's, with nanoseconds or ``Z``); the zero time when empty or
    unreadable."""
    text = (value or "").strip()
    if not text:
        return ZERO_TIME
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    date, sep, clock = text.partition("T")
    if sep and "." in clock:  # Python reads at most 6 fraction digits
        whole, _, rest = clock.partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        zone = rest[len(digits) :]
        clock = f"{whole}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(f"{date}{sep}{clock}")
    except ValueError:
        return ZERO_TIME
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_time(when: datetime, now: datetime, zero: str = "Never") -> str:
    if when.year <= 1:
        return zero
    delta = (now - when).total_seconds()
    if delta / 3600 / 24 / 365 < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def until(expires_at: str | None, now: datetime) -> str:
    """The UNTIL column of ``ps``; a model with no expiry (llama.cpp, media engines: the
    zero time) is ``Forever``."""
    when = parse_time(expires_at)
    if when.year <= 1:
        return "Forever"
    if when < now:
        return "Stopping..."
    return human_time(when, now)


def processor(size: int, size_vram: int) -> str:
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = round((size - size_vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def short_id(digest: str | None) -> str:
    return (digest or "").removeprefix("sha256:")[:12]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned, three spaces apart, as Ollama prints them."""
    everything = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in everything) for i in range(len(header))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in everything]
    return "\n".join(line.rstrip() for line in lines)


PS_HEADER = ("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "NODE")
LS_HEADER = ("NAME", "ID", "SIZE", "MODIFIED", "NODES")


def ps_rows(body: dict[str, Any], now: datetime) -> list[list[str]]:
    """Rows of ``herd ps`` from an ``/api/ps`` body."""
    rows = []
    for m in body.get("models") or []:
        size, vram = int(m.get("size") or 0), int(m.get("size_vram") or 0)
        context = m.get("context_length")
        rows.append(
            [
                str(m.get("name") or m.get("model") or ""),
                short_id(m.get("digest")),
                human_bytes(size),
                processor(size, vram),
                str(context) if context else "",
                until(m.get("expires_at"), now),
                str(m.get("node") or ""),
            ]
        )
    return rows


def ls_rows(body: dict[str, Any], now: datetime) -> list[list[str]]:
    """Rows of ``herd ls`` from an ``/api/tags`` body."""
    rows = []
    for m in body.get("models") or []:
        rows.append(
            [
                str(m.get("name") or m.get("model") or ""),
                short_id(m.get("digest")),
                human_bytes(int(m.get("size") or 0)),
                human_time(parse_time(m.get("modified_at")), now),
                ",".join(m.get("nodes") or []),
            ]
        )
    return rows
