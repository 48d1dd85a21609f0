"""This device's CPU, memory and model disk, as one NodeActor heartbeat reports them.

:func:`collect_system_metrics` reads psutil without blocking, so it can run inside an
event loop on every heartbeat. :func:`classify_memory_pressure` is the pure rule that
turns total/available memory into the ``memory_pressure`` the scoring pipeline reads
(a ``critical`` node takes no cold model loads). :func:`disk_free` is the free space
where the local Ollama keeps its models (pulls are refused when it is too small).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from herd.domain import MemoryPressure

GIB = 1024**3

CRITICAL_FRACTION = 0.05
"""Below 5 % of RAM available the OS is about to swap hard or kill a process."""

CRITICAL_BYTES = 1 * GIB
"""Below 1 GiB available even a large machine cannot load another model."""

WARN_FRACTION = 0.15
"""Below 15 % of RAM available the device is still usable but should get less work."""


@dataclass(frozen=True, slots=True)
class SystemMetrics:
    """One sample of this device's load. Memory is in bytes."""

    cpu_percent: float
    cpu_count: int
    memory_total: int
    memory_available: int
    memory_pressure: MemoryPressure


def classify_memory_pressure(
    total: int, available: int, floor: int = CRITICAL_BYTES
) -> MemoryPressure:
    """Classify memory pressure from total and available bytes.

    Thresholds (each strictly "below"):

    - ``critical``: available < 5 % of total, or available < ``floor`` (1 GiB: what the
      OS itself needs; 0 for a budget herd was given, where that room lies outside it);
    - ``warn``: available < 15 % of total;
    - ``normal``: otherwise.

    A non-positive ``total`` means "unknown" (no sample yet) and gives ``normal``, so a
    node is never eliminated for missing data. ``available`` is clamped to
    ``[0, total]``.
    """
    if total <= 0:
        return "normal"
    available = min(max(available, 0), total)
    if available < total * CRITICAL_FRACTION or available < floor:
        return "critical"
    if available < total * WARN_FRACTION:
        return "warn"
    return "normal"


def collect_system_metrics() -> SystemMetrics:
    """Sample CPU and memory now, without blocking.

    ``cpu_percent`` is the system-wide utilisation since the previous call in this
    process (psutil with ``interval=None``); the very first call returns 0.0.
    """
    memory = psutil.virtual_memory()
    total = int(memory.total)
    available = int(memory.available)
    return SystemMetrics(
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        cpu_count=psutil.cpu_count(logical=True) or 1,
        memory_total=total,
        memory_available=available,
        memory_pressure=classify_memory_pressure(total, available),
    )


def ollama_models_dir(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """Where this device's Ollama keeps its models: ``OLLAMA_MODELS``, else the first of
    ``~/.ollama/models`` (the macOS app, a user's ``ollama serve``) and
    ``/usr/share/ollama/.ollama/models`` (the Linux service) that exists, else the first."""
    env = os.environ if env is None else env
    if env.get("OLLAMA_MODELS"):
        return Path(env["OLLAMA_MODELS"]).expanduser()
    home = Path.home() if home is None else home
    candidates = [home / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]
    return next((p for p in candidates if p.is_dir()), candidates[0])


def disk_free(path: Path) -> int | None:
    """Free bytes (for an unprivileged user) on the file system holding ``path``, or of its
    nearest existing parent; ``None`` when it cannot be read. One ``statvfs``: cheap."""
    try:
        while not path.exists() and path.parent != path:
            path = path.parent
        return int(shutil.disk_usage(path).free)
    except OSError:
        return None
