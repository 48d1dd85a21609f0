"""App fingerprinting: the intensity of what the owner does now, from resource shapes.

Only numbers are read (the owner's CPU, memory growth, GPU and disk I/O over the last
few samples), never which applications run: a video call, a build and a game are told
apart by how hard and how steadily they load the machine, not by name.

=========== ===================================================================
heavy       sustained load: mean owner CPU >= 60 %, or GPU >= 50 %
moderate    mean CPU >= 25 %, bursts to >= 60 % (a build, a busy browser), GPU >= 20 %,
            disk >= 50 MB/s, or memory growing >= 5 % of RAM over the window
light       mean CPU >= 5 %, bursts to >= 20 %, or disk >= 5 MB/s
idle        none of those
=========== ===================================================================

The class is the higher of the window's and the latest sample's, so a new heavy load
counts at once and the device is handed back only after the window has calmed down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Intensity = Literal["idle", "light", "moderate", "heavy"]
ORDER: tuple[Intensity, ...] = ("idle", "light", "moderate", "heavy")
MB = 1_000_000


@dataclass(frozen=True, slots=True)
class Signature:
    """One sample of the owner's resource use (shares 0..1, I/O in bytes/s)."""

    cpu: float
    memory: float
    gpu: float | None = None
    io_bytes_s: float | None = None


def _percentile(values: Sequence[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(q * len(ranked)))]


def _classify(
    cpu_mean: float, cpu_peak: float, gpu: float, io: float, memory_growth: float
) -> Intensity:
    if cpu_mean >= 0.6 or gpu >= 0.5:
        return "heavy"
    if cpu_mean >= 0.25 or cpu_peak >= 0.6 or gpu >= 0.2 or io >= 50 * MB:
        return "moderate"
    if memory_growth >= 0.05:
        return "moderate"
    if cpu_mean >= 0.05 or cpu_peak >= 0.2 or io >= 5 * MB:
        return "light"
    return "idle"


def classify(window: Sequence[Signature]) -> Intensity:
    """The owner's workload intensity over ``window`` (oldest first); idle when empty."""
    if not window:
        return "idle"
    cpus = [s.cpu for s in window]
    gpus = [s.gpu for s in window if s.gpu is not None]
    ios = [s.io_bytes_s for s in window if s.io_bytes_s is not None]
    overall = _classify(
        sum(cpus) / len(cpus),
        _percentile(cpus, 0.9),
        sum(gpus) / len(gpus) if gpus else 0.0,
        sum(ios) / len(ios) if ios else 0.0,
        window[-1].memory - window[0].memory,
    )
    last = window[-1]
    latest = _classify(last.cpu, last.cpu, last.gpu or 0.0, last.io_bytes_s or 0.0, 0.0)
    return max(overall, latest, key=ORDER.index)
