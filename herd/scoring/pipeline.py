"""The seed's policy: eliminate -> score -> rank -> select over a frozen snapshot."""

from __future__ import annotations

from collections.abc import Mapping

from herd.domain import CandidateScore, FleetSnapshot, NodeView
from herd.scoring.eliminate import DEFAULT_ELIMINATORS, Eliminator, eliminate
from herd.scoring.fleet_context import ScoreContext, build_context
from herd.scoring.query import RouteQuery
from herd.scoring.signals import DEFAULT_SIGNALS, Signal
from herd.scoring.weights import ScoringWeights

__all__ = ["Ranking", "ScoringWeights", "as_query", "order", "rank", "score_node"]


class Ranking:
    """Ranked candidates (best first) plus why the others were eliminated."""

    __slots__ = ("candidates", "eliminated")

    def __init__(self, candidates: tuple[CandidateScore, ...], eliminated: dict[str, str]):
        self.candidates = candidates
        self.eliminated = eliminated

    @property
    def best(self) -> CandidateScore | None:
        return self.candidates[0] if self.candidates else None


def as_query(model: str | RouteQuery) -> RouteQuery:
    return model if isinstance(model, RouteQuery) else RouteQuery(model)


def score_node(
    node: NodeView,
    query: RouteQuery,
    ctx: ScoreContext,
    now: float,
    weights: ScoringWeights,
    signals: Mapping[str, Signal] = DEFAULT_SIGNALS,
) -> CandidateScore:
    breakdown = {name: fn(node, query, ctx, now, weights) for name, fn in signals.items()}
    return CandidateScore(node.heartbeat.node_id, sum(breakdown.values()), breakdown)


def order(scored: list[tuple[CandidateScore, NodeView]], eliminated: dict[str, str]) -> Ranking:
    """Highest total first; ties: fewer requests in flight, then node id (deterministic)."""
    scored.sort(key=lambda pair: (-pair[0].total, pair[1].in_flight, pair[0].node_id))
    return Ranking(tuple(s for s, _ in scored), eliminated)


def rank(
    snapshot: FleetSnapshot,
    model: str | RouteQuery,
    now: float,
    weights: ScoringWeights,
    exclude: frozenset[str] = frozenset(),
    eliminators: tuple[Eliminator, ...] = DEFAULT_ELIMINATORS,
    signals: Mapping[str, Signal] = DEFAULT_SIGNALS,
) -> Ranking:
    """Every node that survives elimination, scored by the sum of the signals."""
    query = as_query(model)
    ctx = build_context(snapshot, query, weights)
    survivors, eliminated = eliminate(
        snapshot.nodes, query, ctx, now, weights, exclude, eliminators
    )
    items = tuple(signals.items())
    scored = []
    for node in survivors:  # score_node, inlined: this loop is the hot path
        breakdown = {}
        for name, fn in items:
            breakdown[name] = fn(node, query, ctx, now, weights)
        total = sum(breakdown.values())
        scored.append((CandidateScore(node.heartbeat.node_id, total, breakdown), node))
    return order(scored, eliminated)
