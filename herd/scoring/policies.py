"""Routing policies: ``(snapshot, query, now, weights, exclude) -> Ranking``.

Every policy runs the same eliminators first, so none can pick a node that cannot
serve. Rankings are "higher total is better" for all of them, with the same
deterministic tie-break (fewer requests in flight, then node id).

* ``score`` (default): the seed's pipeline, the sum of the signals
  (:mod:`herd.scoring.signals`); the breakdown holds each signal's points.
* ``expected_latency``: the minimum expected completion time
  (:mod:`herd.scoring.estimate`); the breakdown holds the components in seconds
  (``queue_s``, ``load_s``, ``prefill_s``, ``generate_s``) and the total is minus
  their sum, so it weighs a cold load on an idle node against waiting on a busy hot one.
* ``round_robin``: survivors in node-id order, starting at ``query.counter`` (the
  explicit ``seq``, else a hash of the request id) modulo their number.
* ``least_busy``: fewest requests in flight on the node (any model).
"""

from __future__ import annotations

from collections.abc import Callable

from herd.models import CandidateScore, FleetSnapshot, NodeView
from herd.scoring.eliminate import eliminate
from herd.scoring.estimate import estimate
from herd.scoring.fleet_context import build_context
from herd.scoring.pipeline import Ranking, order, rank
from herd.scoring.query import RouteQuery
from herd.scoring.weights import ScoringWeights

Policy = Callable[[FleetSnapshot, RouteQuery, float, ScoringWeights, frozenset[str]], Ranking]

POLICY_NAMES = ("score", "expected_latency", "round_robin", "least_busy")


def score(
    snapshot: FleetSnapshot,
    query: RouteQuery,
    now: float,
    weights: ScoringWeights,
    exclude: frozenset[str] = frozenset(),
) -> Ranking:
    """The seed's policy: highest sum of signal points."""
    return rank(snapshot, query, now, weights, exclude)


def expected_latency(
    snapshot: FleetSnapshot,
    query: RouteQuery,
    now: float,
    weights: ScoringWeights,
    exclude: frozenset[str] = frozenset(),
) -> Ranking:
    """Lowest expected completion time (queue + load + prefill + generation)."""
    ctx = build_context(snapshot, query, weights)
    survivors, eliminated = eliminate(snapshot.nodes, query, ctx, now, weights, exclude)
    scored: list[tuple[CandidateScore, NodeView]] = []
    for node in survivors:
        est = estimate(node, query, ctx, now, weights)
        scored.append((CandidateScore(node.node_id, -est.total_s, est.breakdown()), node))
    return order(scored, eliminated)


def round_robin(
    snapshot: FleetSnapshot,
    query: RouteQuery,
    now: float,
    weights: ScoringWeights,
    exclude: frozenset[str] = frozenset(),
) -> Ranking:
    """Baseline: take turns over the survivors, ignoring load and model state."""
    ctx = build_context(snapshot, query, weights)
    survivors, eliminated = eliminate(snapshot.nodes, query, ctx, now, weights, exclude)
    survivors.sort(key=lambda n: n.node_id)
    count = len(survivors)
    start = query.counter % count if count else 0
    scored = []
    for index, node in enumerate(survivors):
        turn = -float((index - start) % count)
        scored.append((CandidateScore(node.node_id, turn, {"round_robin": turn}), node))
    return order(scored, eliminated)


def least_busy(
    snapshot: FleetSnapshot,
    query: RouteQuery,
    now: float,
    weights: ScoringWeights,
    exclude: frozenset[str] = frozenset(),
) -> Ranking:
    """Baseline: the node with the fewest requests in flight, ignoring model state."""
    ctx = build_context(snapshot, query, weights)
    survivors, eliminated = eliminate(snapshot.nodes, query, ctx, now, weights, exclude)
    scored = []
    for node in survivors:
        busy = -float(node.in_flight)
        scored.append((CandidateScore(node.node_id, busy, {"in_flight": busy}), node))
    return order(scored, eliminated)


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
