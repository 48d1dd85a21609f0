"""Elimination stage: each rule returns a reason string when the node cannot serve.

A rule is a pure function ``(node, query, ctx, now, weights) -> str | None``. ``None``
keeps the node; a string removes it and is recorded in the decision as the reason.
Every policy runs these rules first, so no policy can pick an eliminated node.
"""

from __future__ import annotations

from collections.abc import Callable

from herd.domain import NodeView
from herd.scoring.failures import cooling_reason
from herd.scoring.fleet_context import ScoreContext, needed_bytes, room_for_load
from herd.scoring.query import RouteQuery
from herd.scoring.weights import ScoringWeights

Eliminator = Callable[[NodeView, RouteQuery, ScoreContext, float, ScoringWeights], str | None]

EXCLUDED = "excluded after failure"
OFFLINE = "offline"
DRAINING = "draining"
BACKEND_DOWN = "backend down"
PAUSED = "paused by capacity learning"
MISSING = "model not on node"
NO_FIT = "model does not fit in memory"
CRITICAL = "critical memory pressure"


def offline(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> str | None:
    """Remove nodes the router has marked offline (heartbeats stopped or Ray node dead)."""
    return OFFLINE if node.status == "offline" else None


def draining(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> str | None:
    """Remove nodes that are shutting down: they finish in-flight work but take no new."""
    return DRAINING if node.heartbeat.draining else None


def backend_down(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> str | None:
    """Remove nodes whose local backend did not answer its last probe."""
    return BACKEND_DOWN if not node.heartbeat.backend_ok else None


def paused_by_capacity_learning(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> str | None:
    """Remove nodes the capacity learner paused, with its reason ("owner in a meeting")."""
    return (node.heartbeat.pause_reason or PAUSED) if node.heartbeat.paused else None


def cooling_down(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> str | None:
    """Remove a node cooling down for this model after failures (the failure memory,
    herd.scoring.failures); after the cooldown it takes one probe at a time."""
    health = ctx.failures.get(node.heartbeat.node_id)
    return cooling_reason(health, node.in_flight_by_model.get(query.key, 0), now)


def missing_model(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> str | None:
    """Remove nodes that have the model neither loaded nor on disk."""
    hb = node.heartbeat
    if query.key in hb.models_by_key or query.key in hb.loaded_by_key:
        return None
    return MISSING


def model_does_not_fit(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> str | None:
    """Remove nodes where a cold load would not fit: the model's measured resident size
    (else its file size) against free memory plus idle models Ollama could evict, within
    the capacity ceiling. A loaded model always fits; unknown sizes or memory keep the node."""
    need = needed_bytes(node, ctx)
    if need <= 0:
        return None
    room = room_for_load(node)
    if room is None or need <= room:
        return None
    return NO_FIT


def critical_memory(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> str | None:
    """Remove nodes under critical memory pressure, but only for cold loads: a model that
    is already resident needs no new memory."""
    hb = node.heartbeat
    if hb.memory_pressure == "critical" and query.key not in hb.loaded_by_key:
        return CRITICAL
    return None


DEFAULT_ELIMINATORS: tuple[Eliminator, ...] = (
    offline,
    draining,
    backend_down,
    paused_by_capacity_learning,
    cooling_down,
    missing_model,
    model_does_not_fit,
    critical_memory,
)


def _default_reason(node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float) -> str | None:
    """The :data:`DEFAULT_ELIMINATORS`, in order, fused into one call (the hot path:
    a decision at 100 nodes has a budget of ~5 us per node). A unit test checks it
    agrees with running the rules one by one."""
    hb = node.heartbeat
    if node.status == "offline":
        return OFFLINE
    if hb.draining:
        return DRAINING
    if not hb.backend_ok:
        return BACKEND_DOWN
    if hb.paused:
        return hb.pause_reason or PAUSED
    key = query.key
    health = ctx.failures.get(hb.node_id) if ctx.failures else None
    if health is not None:
        cooling = cooling_reason(health, node.in_flight_by_model.get(key, 0), now)
        if cooling is not None:
            return cooling
    if key in hb.loaded_by_key:
        return None
    if key not in hb.models_by_key:
        return MISSING
    if hb.memory_total > 0:
        need = needed_bytes(node, ctx)
        if need > 0:
            room = room_for_load(node)
            if room is not None and need > room:
                return NO_FIT
    return CRITICAL if hb.memory_pressure == "critical" else None


def eliminate(
    nodes: tuple[NodeView, ...],
    query: RouteQuery,
    ctx: ScoreContext,
    now: float,
    weights: ScoringWeights,
    exclude: frozenset[str] = frozenset(),
    rules: tuple[Eliminator, ...] = DEFAULT_ELIMINATORS,
) -> tuple[list[NodeView], dict[str, str]]:
    """Split nodes into survivors and ``{node_id: reason}`` for the eliminated."""
    survivors: list[NodeView] = []
    reasons: dict[str, str] = {}
    fused = rules is DEFAULT_ELIMINATORS
    for node in nodes:
        node_id = node.heartbeat.node_id
        if node_id in exclude:
            reasons[node_id] = EXCLUDED
            continue
        if fused:
            reason = _default_reason(node, query, ctx, now)
        else:
            reason = None
            for rule in rules:
                reason = rule(node, query, ctx, now, weights)
                if reason is not None:
                    break
        if reason is None:
            survivors.append(node)
        else:
            reasons[node_id] = reason
    return survivors, reasons
