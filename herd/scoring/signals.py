"""Scoring signals: small pure functions ``(node, query, ctx, now, weights) -> points``.

Each documents what it rewards and its range (with the default weights). Weights come
from settings (``FLEET_SCORE_*``, see :func:`herd.routing.decide.weights_from`). The
seed's policy adds them up; the highest total wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from herd.domain import NodeView
from herd.scoring.fleet_context import ScoreContext, needed_bytes
from herd.scoring.query import RouteQuery
from herd.scoring.weights import ScoringWeights

__all__ = [
    "DEFAULT_SIGNALS",
    "ScoringWeights",
    "Signal",
    "availability_trend",
    "context_fit",
    "latency_history",
    "memory_fit",
    "queue_depth",
    "role_affinity",
    "thermal",
]

Signal = Callable[[NodeView, RouteQuery, ScoreContext, float, ScoringWeights], float]


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def thermal(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> float:
    """How ready the model is. Loaded ("hot"): ``thermal_hot`` (+50). Unloaded less than
    ``warm_window_s`` ago ("warm": its file is likely still in the page cache):
    ``thermal_warm`` (+25) decaying linearly to 0 over the window. On disk only:
    ``thermal_disk`` (+5). Warm and on disk do not add up (the larger counts).
    Range [0, 50]."""
    hb = node.heartbeat
    key = query.key
    if key in hb.loaded_by_key:
        return w.thermal_hot
    points = w.thermal_disk if key in hb.models_by_key else 0.0
    learned = ctx.learned.get(hb.node_id)
    if learned is not None and learned.unloaded_at is not None and w.warm_window_s > 0:
        age = max(0.0, now - learned.unloaded_at)
        if age < w.warm_window_s:
            points = max(points, w.thermal_warm * (1.0 - age / w.warm_window_s))
    return points


def memory_fit(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> float:
    """Headroom: free memory left after loading the model (nothing to load when it is
    hot), as a share of the node's memory; half the memory free or more earns the full
    ``memory_fit`` (+20). Within the capacity learner's ceiling when there is one.
    Unknown memory: 0. Range [0, 20]."""
    hb = node.heartbeat
    total = hb.memory_total
    if total <= 0:
        return 0.0
    free = hb.memory_available
    if hb.memory_ceiling > 0:
        resident = sum(m.size for m in hb.loaded)
        free = min(free, hb.memory_ceiling - resident)
    share = 2.0 * (free - needed_bytes(node, ctx)) / total
    return 0.0 if share <= 0.0 else w.memory_fit if share >= 1.0 else w.memory_fit * share


def queue_depth(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> float:
    """Busy nodes lose points: ``-queue_step`` (-10) per request of this model beyond the
    node's free ``OLLAMA_NUM_PARALLEL`` slots, plus half a step per request of another
    model; capped at ``-queue_penalty`` (-30) so no node is starved. Range [-30, 0]."""
    busy = node.in_flight_by_model.get(query.key, 0)
    waiting = busy + 1 - node.heartbeat.num_parallel
    # Other models' work on the same device also competes for compute, at half weight.
    other = node.in_flight - busy
    penalty = w.queue_step * ((waiting if waiting > 0 else 0) + (0.5 * other if other > 0 else 0))
    if penalty <= 0:
        return 0.0
    return -w.queue_penalty if penalty > w.queue_penalty else -penalty


def latency_history(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> float:
    """Past p75 end-to-end latency of this model on this node against the fleet's best
    node for it: 0 for the best, ``-latency_penalty`` (-25) at twice the best or worse,
    linear between. No history (here or anywhere): 0. Range [-25, 0]."""
    best = ctx.best_p75_s
    if best is None or best <= 0:
        return 0.0
    learned = ctx.learned.get(node.heartbeat.node_id)
    if learned is None or learned.p75_s is None:
        return 0.0
    return -w.latency_penalty * _clamp01(learned.p75_s / best - 1.0)


def role_affinity(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> float:
    """Large models prefer big machines, small models small ones. The model's place
    between ``small_model_bytes`` (2 GiB) and ``large_model_bytes`` (40 GiB) and the
    node's place between the fleet's smallest and largest memory (both on a log scale,
    0..1) earn ``role_affinity * (1 - distance)`` (+15 when they match). Unknown model
    size or node memory: half. Range [0, 15]."""
    total = node.heartbeat.memory_total
    model_pos = ctx.model_pos
    if total <= 0 or model_pos is None:
        return 0.5 * w.role_affinity
    span = ctx.mem_hi - ctx.mem_lo
    node_pos = (math.log2(total) - ctx.mem_lo) / span if span > 0 else 0.5
    distance = abs(node_pos - model_pos)  # both in [0, 1] for a node of ctx's snapshot
    return w.role_affinity * (1.0 - distance) if distance < 1.0 else 0.0


def availability_trend(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> float:
    """Capacity learning: the lower of the node's availability now and its forecast for
    the next hour (0..1) costs ``-availability * (1 - a)`` (-10 when unavailable), so a
    laptop whose owner is about to come back loses work first. Nodes not learning: 0.
    Range [-10, 0]."""
    hb = node.heartbeat
    now_a, next_a = hb.availability, hb.availability_next
    if now_a is None and next_a is None:
        return 0.0
    lowest = min(a for a in (now_a, next_a) if a is not None)
    return -w.availability * (1.0 - _clamp01(lowest))


def context_fit(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> float:
    """Does the request (estimated prompt tokens + ``num_predict``) fit the context
    window it will run with? That is the loaded window when the model is hot, else the
    requested ``num_ctx`` (a cold load uses it). Fits: ``context_fit`` (+15); does not:
    0; window unknown: half. Range [0, 15]."""
    loaded = node.heartbeat.loaded_by_key.get(query.key)
    if loaded is not None and loaded.context_length > 0:
        window = loaded.context_length
    elif loaded is None and query.num_ctx:
        window = query.num_ctx
    else:
        return 0.5 * w.context_fit
    return w.context_fit if query.needed_tokens <= window else 0.0


DEFAULT_SIGNALS: dict[str, Signal] = {
    "thermal": thermal,
    "memory_fit": memory_fit,
    "queue_depth": queue_depth,
    "latency_history": latency_history,
    "role_affinity": role_affinity,
    "availability_trend": availability_trend,
    "context_fit": context_fit,
}
