"""System metrics: the pure memory-pressure rule and the psutil sampler."""

from __future__ import annotations

import dataclasses
import pickle
from types import SimpleNamespace

import psutil
import pytest

from herd.node import sysmetrics
from herd.node.sysmetrics import (
    GIB,
    SystemMetrics,
    classify_memory_pressure,
    collect_system_metrics,
)

MIB = 1024**2


@pytest.mark.parametrize(
    ("total", "available", "expected"),
    [
        # plenty free
        (64 * GIB, 32 * GIB, "normal"),
        (16 * GIB, 16 * GIB, "normal"),
        # exactly 15 % is not "below 15 %"
        (100 * GIB, 15 * GIB, "normal"),
        (100 * GIB, 15 * GIB - 1, "warn"),
        (100 * GIB, 10 * GIB, "warn"),
        # exactly 5 % is not "below 5 %"
        (100 * GIB, 5 * GIB, "warn"),
        (100 * GIB, 5 * GIB - 1, "critical"),
        (100 * GIB, 1 * GIB, "critical"),
        # the 1 GiB floor wins on small machines even at a high percentage
        (4 * GIB, GIB - 1, "critical"),
        (4 * GIB, 900 * MIB, "critical"),
        (4 * GIB, GIB, "normal"),
        (8 * GIB, GIB, "warn"),
        # the 5 % rule wins on large machines even with many GiB free
        (512 * GIB, 20 * GIB, "critical"),
        (512 * GIB, 60 * GIB, "warn"),
        (512 * GIB, 100 * GIB, "normal"),
        # nothing free
        (16 * GIB, 0, "critical"),
        # garbage in: clamped, unknown total is not a reason to eliminate a node
        (16 * GIB, -5, "critical"),
        (16 * GIB, 32 * GIB, "normal"),
        (0, 0, "normal"),
        (-1, 10, "normal"),
    ],
)
def test_classify_memory_pressure(total: int, available: int, expected: str) -> None:
    assert classify_memory_pressure(total, available) == expected


def _fake_psutil(
    monkeypatch: pytest.MonkeyPatch, *, total: int, available: int, cpus: int | None
) -> list[object]:
    intervals: list[object] = []

    def cpu_percent(interval: float | None = None) -> float:
        intervals.append(interval)
        return 42.5

    monkeypatch.setattr(
        sysmetrics.psutil,
        "virtual_memory",
        lambda: SimpleNamespace(total=total, available=available),
    )
    monkeypatch.setattr(sysmetrics.psutil, "cpu_percent", cpu_percent)
    monkeypatch.setattr(sysmetrics.psutil, "cpu_count", lambda logical=True: cpus)
    return intervals


def test_collect_maps_psutil_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    intervals = _fake_psutil(monkeypatch, total=32 * GIB, available=3 * GIB, cpus=12)

    metrics = collect_system_metrics()

    assert metrics == SystemMetrics(
        cpu_percent=42.5,
        cpu_count=12,
        memory_total=32 * GIB,
        memory_available=3 * GIB,
        memory_pressure="warn",
    )
    assert intervals == [None], "cpu_percent must be sampled without blocking"


def test_collect_unknown_cpu_count_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_psutil(monkeypatch, total=8 * GIB, available=4 * GIB, cpus=None)
    assert collect_system_metrics().cpu_count == 1


def test_collect_real_machine() -> None:
    metrics = collect_system_metrics()

    assert metrics.cpu_count >= 1
    assert 0.0 <= metrics.cpu_percent <= 100.0
    assert 0 < metrics.memory_available <= metrics.memory_total
    assert metrics.memory_total == psutil.virtual_memory().total
    assert metrics.memory_pressure == classify_memory_pressure(
        metrics.memory_total, metrics.memory_available
    )


def test_metrics_are_frozen_and_picklable() -> None:
    metrics = SystemMetrics(
        cpu_percent=1.0,
        cpu_count=2,
        memory_total=3,
        memory_available=1,
        memory_pressure="critical",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.cpu_percent = 2.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(metrics)) == metrics
