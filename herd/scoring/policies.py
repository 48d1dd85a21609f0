"""Routing policies: ``(snapshot, query, now, weights, exclude) -> Ranking``.

Every policy runs the same eliminators first, so none can pick a node that cannot
serve. Rankings are "higher total is better" for all of them, with the same
deterministic tie-break (fewer requests in flight, then node id).

* ``score``: the seed's pipeline, the sum of the signals
  (:mod:`herd.scoring.signals`); the breakdown holds each signal's points.
* ``expected_latency`` (the default, ``FLEET_ROUTING_POLICY``): the minimum expected
  completion time (:mod:`herd.scoring.estimate`); the breakdown holds the components in seconds
  (``queue_s``, ``load_s``, ``prefill_s``, ``generate_s``) and the total is minus
  their sum, so it weighs a cold load on an idle node against waiting on a busy hot one.
* ``round_robin``: survivors in node-id order, starting at ``query.counter`` (the
  explicit ``seq``, else a hash of the request id) modulo their number.
* ``least_busy``: fewest requests in flight on the node (any model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from herd.domain import CandidateScore, FleetSnapshot, NodeView
from herd.scoring.eliminate import eliminate
from herd.scoring.estimate import estimate
from herd.scoring.fleet_context import ScoreContext, build_context
from herd.scoring.pipeline import Ranking, order, rank
from herd.scoring.query import RouteQuery
from herd.scoring.weights import ScoringWeights

Policy = Callable[[FleetSnapshot, RouteQuery, float, ScoringWeights, frozenset[str]], Ranking]

POLICY_NAMES = ("score", "expected_latency", "round_robin", "least_busy")

Scored = list[tuple[CandidateScore, NodeView]]


@dataclass(frozen=True, slots=True)
class Survivors:
    """The nodes left after elimination, and what a policy may score them by."""

    nodes: list[NodeView]
    query: RouteQuery
    ctx: ScoreContext
    now: float
    weights: ScoringWeights


class EliminateThenScore:
    """A policy: the shared eliminators first, then its own scorer over the survivors,
    ranked by :func:`~herd.scoring.pipeline.order`. Used as a decorator on the scorer."""

    def __init__(self, scorer: Callable[[Survivors], Scored]) -> None:
        self.scorer = scorer
        self.__name__ = scorer.__name__
        self.__doc__ = scorer.__doc__

    def __call__(
        self,
        snapshot: FleetSnapshot,
        query: RouteQuery,
        now: float,
        weights: ScoringWeights,
        exclude: frozenset[str] = frozenset(),
    ) -> Ranking:
        ctx = build_context(snapshot, query, weights)
        survivors, eliminated = eliminate(snapshot.nodes, query, ctx, now, weights, exclude)
        return order(self.scorer(Survivors(survivors, query, ctx, now, weights)), eliminated)


score = rank  # the seed's policy: highest sum of signal points (herd.scoring.pipeline)


@EliminateThenScore
def expected_latency(s: Survivors) -> Scored:
    """Lowest expected completion time (queue + load + prefill + generation)."""
    scored: Scored = []
    for node in s.nodes:
        est = estimate(node, s.query, s.ctx, s.now, s.weights)
        scored.append((CandidateScore(node.node_id, -est.total_s, est.breakdown()), node))
    return scored


@EliminateThenScore
def round_robin(s: Survivors) -> Scored:
    """Baseline: take turns over the survivors, ignoring load and model state."""
    nodes = sorted(s.nodes, key=lambda n: n.node_id)
    count = len(nodes)
    start = s.query.counter % count if count else 0
    scored: Scored = []
    for index, node in enumerate(nodes):
        turn = -float((index - start) % count)
        scored.append((CandidateScore(node.node_id, turn, {"round_robin": turn}), node))
    return scored


@EliminateThenScore
def least_busy(s: Survivors) -> Scored:
    """Baseline: the node with the fewest requests in flight, ignoring model state."""
    scored: Scored = []
    for node in s.nodes:
        busy = -float(node.in_flight)
        scored.append((CandidateScore(node.node_id, busy, {"in_flight": busy}), node))
    return scored


POLICIES: dict[str, Policy] = {
    "score": score,
    "expected_latency": expected_latency,
    "round_robin": round_robin,
    "least_busy": least_busy,
}


def policy_named(name: str) -> Policy:
    """The policy for a ``FLEET_ROUTING_POLICY`` value; ``ValueError`` for an unknown one."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown routing policy {name!r}; known: {', '.join(POLICY_NAMES)}"
        ) from None
