"""eliminate -> score -> rank -> select over a frozen :class:`FleetSnapshot`."""

from __future__ import annotations

from collections.abc import Mapping

from herd.models import CandidateScore, FleetSnapshot, NodeView
from herd.scoring.eliminate import DEFAULT_ELIMINATORS, Eliminator, eliminate
from herd.scoring.signals import DEFAULT_SIGNALS, ScoringWeights, Signal

__all__ = ["Ranking", "ScoringWeights", "rank"]


class Ranking:
    """Ranked candidates (best first) plus why the others were eliminated."""

    __slots__ = ("candidates", "eliminated")

    def __init__(self, candidates: tuple[CandidateScore, ...], eliminated: dict[str, str]):
        self.candidates = candidates
        self.eliminated = eliminated

    @property
    def best(self) -> CandidateScore | None:
        return self.candidates[0] if self.candidates else None


def score_node(
    node: NodeView,
    model: str,
    now: float,
    weights: ScoringWeights,
    signals: Mapping[str, Signal] = DEFAULT_SIGNALS,
) -> CandidateScore:
    breakdown = {name: fn(node, model, now, weights) for name, fn in signals.items()}
    return CandidateScore(node.node_id, sum(breakdown.values()), breakdown)


def _tie_break(node: NodeView) -> tuple[float, str]:
    # Deterministic: fewer requests in flight first, then node id.
    return (node.in_flight, node.node_id)


def rank(
    snapshot: FleetSnapshot,
    model: str,
    now: float,
    weights: ScoringWeights,
    exclude: frozenset[str] = frozenset(),
    eliminators: tuple[Eliminator, ...] = DEFAULT_ELIMINATORS,
    signals: Mapping[str, Signal] = DEFAULT_SIGNALS,
) -> Ranking:
    survivors, eliminated = eliminate(snapshot.nodes, model, now, exclude, eliminators)
    scored: list[tuple[CandidateScore, NodeView]] = [
        (score_node(n, model, now, weights, signals), n) for n in survivors
    ]
    scored.sort(key=lambda pair: (-pair[0].total, *_tie_break(pair[1])))
    return Ranking(tuple(s for s, _ in scored), eliminated)
