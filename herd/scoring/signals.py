"""Scoring signals: small pure functions ``(node, model, now, weights) -> points``.

Each documents what it rewards and its range. Weights come from settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from herd.models import NodeView, canonical_model


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    thermal_hot: float = 50.0
    queue_penalty: float = 30.0
    queue_step: float = 10.0


Signal = Callable[[NodeView, str, float, ScoringWeights], float]


def thermal(node: NodeView, model: str, now: float, w: ScoringWeights) -> float:
    """Model already loaded in memory ("hot"): ``+thermal_hot``; otherwise 0. Range [0, 50]."""
    return w.thermal_hot if node.heartbeat.is_loaded(model) else 0.0


def queue_depth(node: NodeView, model: str, now: float, w: ScoringWeights) -> float:
    """Busy nodes lose points: ``-queue_step`` per request beyond the free parallel slots
    for this model, capped at ``-queue_penalty`` so no node is starved. Range [-30, 0]."""
    busy = node.in_flight_by_model.get(canonical_model(model), 0)
    waiting = max(0, busy + 1 - node.heartbeat.num_parallel)
    # Other models' work on the same device also competes for compute, at half weight.
    other = max(0, node.in_flight - busy)
    return -min(w.queue_penalty, w.queue_step * (waiting + 0.5 * other))


DEFAULT_SIGNALS: dict[str, Signal] = {"thermal": thermal, "queue_depth": queue_depth}
