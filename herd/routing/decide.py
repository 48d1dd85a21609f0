"""The routing decision both the RouterActor and each ingress's mirror make.

:func:`decide` runs the configured policy over a frozen :class:`FleetSnapshot` with
``now`` passed in, for the requested model then each fallback, and returns the
:class:`Decision` with the score breakdown of every candidate. :func:`weights_from` is
everything a decision reads from the settings. Pure: no I/O, no clock, no Ray.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from herd.domain import Decision, FleetSnapshot
from herd.scoring import Policy, RouteQuery, ScoringWeights, policy_named
from herd.settings import Settings


def weights_from(settings: Settings) -> ScoringWeights:
    """Everything a decision reads from settings: the policy and the signal weights."""
    return ScoringWeights(
        policy=settings.routing_policy,
        thermal_hot=settings.score_thermal_hot,
        thermal_warm=settings.score_thermal_warm,
        thermal_disk=settings.score_thermal_disk,
        warm_window_s=settings.score_warm_window,
        memory_fit=settings.score_memory_fit,
        queue_penalty=settings.score_queue_penalty,
        queue_step=settings.score_queue_step,
        latency_penalty=settings.score_latency_penalty,
        role_affinity=settings.score_role_affinity,
        availability=settings.score_availability,
        context_fit=settings.score_context_fit,
    )


def with_turn(query: RouteQuery | None, turns: Iterator[int]) -> RouteQuery | None:
    """The query with the next round-robin turn (``seq``) when it carries none."""
    if query is None or query.seq is not None:
        return query
    return replace(query, seq=next(turns))


def decide(
    snapshot: FleetSnapshot,
    request_id: str,
    models: Sequence[str],
    now: float,
    weights: ScoringWeights,
    exclude: frozenset[str] = frozenset(),
    attempt: int = 0,
    *,
    query: RouteQuery | None = None,
    estimated_tokens: int = 0,
    policy: str | Policy | None = None,
) -> Decision | None:
    """Best node for the first model (then each fallback) that some node can serve.

    ``query`` carries the request's features (see ``RouteQuery.from_request``); without
    it only ``estimated_tokens`` is known. ``policy`` is a name or a callable; ``None``
    uses ``weights.policy`` (``FLEET_ROUTING_POLICY``). Learned performance comes from
    ``snapshot.perf``.
    """
    if policy is None:
        policy = weights.policy
    chosen = policy_named(policy) if isinstance(policy, str) else policy
    base = query or RouteQuery(models[0], prompt_tokens=estimated_tokens, request_id=request_id)
    for index, model in enumerate(models):
        ranking = chosen(snapshot, base.for_model(model), now, weights, exclude)
        best = ranking.best
        if best is None:
            continue
        return Decision(
            request_id=request_id,
            node_id=best.node_id,
            model=model,
            requested_model=models[0],
            score=best.total,
            breakdown=best.breakdown,
            candidates=ranking.candidates,
            eliminated=ranking.eliminated,
            attempt=attempt,
            fallback=index > 0,
        )
    return None
