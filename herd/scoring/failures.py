"""Failure memory: which (node, model) pairs keep failing, and when to try them again.

Pure functions over the frozen :class:`~herd.domain.FailureStats` (``now`` passed in),
a circuit breaker per node and model:

* a **counted** failure (:func:`counts_against_node`: a backend error, a first-chunk or
  chunk timeout, an unreachable node, a model the node claimed and did not have; never a
  client's disconnect or bad input, nor a node handing a request back) adds to the pair's
  consecutive failures and to its decaying error rate (half-life
  ``FLEET_FAILURE_HALF_LIFE``);
* ``FLEET_FAILURE_THRESHOLD`` consecutive failures, or the error rate reaching
  ``FLEET_FAILURE_RATE`` once twice the threshold of requests weigh in, **trip** the pair:
  it is cooled down for ``FLEET_FAILURE_COOLDOWN`` seconds, and the ``cooling_down``
  eliminator removes it ("cooling down after N failures: <last error>");
* after the cooldown the pair is **half-open**: one probe may go (when no request of the
  model runs on the node, so one at a time per decision site). The probe's failure trips
  the pair again for twice as long (up to ``FLEET_FAILURE_COOLDOWN_MAX``); its success
  readmits the pair and resets it;
* any success resets the consecutive count; a pair whose failures have faded is forgotten.

The router holds the truth (``RouterCore.failures``, fed by every ingress's outcomes) and
shares it in its view; each ingress's ``FleetMirror`` adds its own outcomes the router has
not applied yet, so both decision sites eliminate the same pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from herd.domain import (
    FailurePolicy,
    FailureStats,
    FleetSnapshot,
    Outcome,
    PairHealth,
    canonical_model,
)
from herd.errors import BackendError, HerdError, ModelNotFound, NoCapacity, Rebalanced
from herd.settings import Settings

COUNTED_4XX = (408, 429)  # a backend's 4xx that is its own trouble, not the client's input
FORGET_BELOW = 0.5  # a success forgets a pair whose decayed failures fell below this
ERROR_CHARS = 300  # the last error kept per pair


def policy_from(settings: Settings) -> FailurePolicy:
    """The ``FLEET_FAILURE_*`` settings as the policy the memory follows."""
    return FailurePolicy(
        threshold=settings.failure_threshold,
        cooldown_s=settings.failure_cooldown,
        cooldown_max_s=settings.failure_cooldown_max,
        error_rate=settings.failure_rate,
        half_life_s=settings.failure_half_life,
    )


def empty(policy: FailurePolicy) -> FailureStats:
    """A memory that holds nothing yet, following ``policy``."""
    return FailureStats({}, policy)


def counts_against_node(err: HerdError) -> bool:
    """Does this failure of an attempt count against its node and model?

    Backend errors (5xx, a broken stream, 408/429), timeouts and an unreachable node do,
    and so does a model the node claimed but did not have. The client's bad input (400,
    422, another 4xx from the backend) and a request handed back (a move) do not."""
    if isinstance(err, Rebalanced):
        return False
    if isinstance(err, BackendError):
        status = err.backend_status
        return status is None or status >= 500 or status in COUNTED_4XX
    return isinstance(err, ModelNotFound)


# --- one pair ---------------------------------------------------------------------------
def decayed(h: PairHealth, now: float, half_life_s: float) -> tuple[float, float]:
    """``(failed, seen)`` decayed to ``now``."""
    factor = 0.5 ** (max(0.0, now - h.at) / half_life_s)
    return h.failed * factor, h.seen * factor


def error_rate(h: PairHealth, now: float, half_life_s: float) -> float:
    """The pair's decaying error rate (0..1)."""
    failed, seen = decayed(h, now, half_life_s)
    return failed / seen if seen > 0 else 0.0


def cooldown_for(policy: FailurePolicy, trips: int) -> float:
    """The cooldown of the ``trips``-th trip in a row: doubled each time, capped."""
    return min(policy.cooldown_max_s, policy.cooldown_s * 2.0 ** max(0, trips - 1))


def _rate_trips(failed: float, seen: float, policy: FailurePolicy) -> bool:
    if policy.error_rate <= 0 or seen < 2 * policy.threshold:
        return False
    return failed / seen >= policy.error_rate


def next_health(
    h: PairHealth | None, outcome: Outcome, now: float, policy: FailurePolicy
) -> PairHealth | None:
    """The pair after one outcome of an attempt on it (``None``: nothing to remember)."""
    if policy.threshold <= 0:
        return None
    if outcome.ok:
        if h is None or h.until is not None:
            return None  # healthy, or readmitted: a probe (or an earlier attempt) succeeded
        failed, seen = decayed(h, now, policy.half_life_s)
        if failed < FORGET_BELOW:
            return None
        return replace(h, consecutive=0, failed=failed, seen=seen + 1, at=now)
    if not outcome.node_fault:
        return h  # a client's disconnect or bad input, a move: says nothing of the node
    base = h if h is not None else PairHealth(at=now)
    failed, seen = decayed(base, now, policy.half_life_s)
    failed += 1
    seen += 1
    consecutive = base.consecutive + 1
    trips, until = base.trips, base.until
    if until is not None:
        if now >= until:  # half-open: the probe failed
            trips += 1
            until = now + cooldown_for(policy, trips)
        # else an attempt that started before the trip failed late: the cooldown stands
    elif consecutive >= policy.threshold or _rate_trips(failed, seen, policy):
        trips = 1
        until = now + cooldown_for(policy, trips)
    error = (outcome.error or "failed").strip()[:ERROR_CHARS]
    return PairHealth(base.failures + 1, consecutive, failed, seen, now, trips, until, error)


def cooling_reason(h: PairHealth | None, busy: int, now: float) -> str | None:
    """Why the pair takes no request now; ``None``: it may take one. A half-open pair
    (cooldown over) takes one probe when no request of the model runs there (``busy``)."""
    if h is None or h.until is None:
        return None
    if now >= h.until and busy <= 0:
        return None
    plural = "" if h.failures == 1 else "s"
    return f"cooling down after {h.failures} failure{plural}: {h.last_error}"


def state_of(h: PairHealth, now: float) -> str:
    if h.until is None:
        return "admitted"
    return "cooling_down" if now < h.until else "half_open"


# --- the memory -------------------------------------------------------------------------
def _with_pair(stats: FailureStats, node_id: str, key: str, h: PairHealth | None) -> FailureStats:
    inner = dict(stats.models.get(key, {}))
    if h is None:
        inner.pop(node_id, None)
    else:
        inner[node_id] = h
    models = dict(stats.models)
    if inner:
        models[key] = inner
    else:
        models.pop(key, None)
    return FailureStats(models, stats.policy)


def observe(stats: FailureStats, outcome: Outcome, now: float) -> FailureStats:
    """The memory after one outcome; the same object when it changed nothing."""
    if outcome.node_id is None or outcome.moved:
        return stats
    key = canonical_model(outcome.model)
    before = stats.pair(outcome.node_id, key)
    if before is None and not outcome.node_fault:
        return stats  # the hot path: a success (or a disconnect) on a healthy pair
    after = next_health(before, outcome, now, stats.policy)
    if after is before:
        return stats
    return _with_pair(stats, outcome.node_id, key, after)


def learn(
    stats: FailureStats, outcome: Outcome, now: float
) -> tuple[FailureStats, dict[str, Any] | None]:
    """:func:`observe`, plus the router event when the pair tripped (``cooled_down``) or
    was readmitted (``readmitted``), else ``None``."""
    after = observe(stats, outcome, now)
    if after is stats or outcome.node_id is None:
        return after, None
    key = canonical_model(outcome.model)
    old, new = stats.pair(outcome.node_id, key), after.pair(outcome.node_id, key)
    event: dict[str, Any] = {"time": now, "node_id": outcome.node_id, "model": key}
    if new is not None and new.trips > (old.trips if old is not None else 0):
        cooldown = cooldown_for(stats.policy, new.trips)
        event.update(kind="cooled_down", failures=new.failures, trips=new.trips)
        event.update(cooldown_s=cooldown, error=new.last_error)
        return after, event
    if old is not None and old.until is not None and (new is None or new.until is None):
        event.update(kind="readmitted", failures=old.failures, trips=old.trips)
        return after, event
    return after, None


def forget_node(stats: FailureStats, node_id: str) -> FailureStats:
    """A node left the fleet: drop its pairs."""
    models = {k: {n: h for n, h in v.items() if n != node_id} for k, v in stats.models.items()}
    return FailureStats({k: v for k, v in models.items() if v}, stats.policy)


def rebased(stats: FailureStats, offset: float) -> FailureStats:
    """The memory with its times moved by ``offset`` seconds (the router's clock onto an
    ingress's, like heartbeat ages)."""
    if not stats.models or offset == 0:
        return stats

    def shift(h: PairHealth) -> PairHealth:
        until = h.until + offset if h.until is not None else None
        return replace(h, at=h.at + offset, until=until)

    models = {k: {n: shift(h) for n, h in v.items()} for k, v in stats.models.items()}
    return FailureStats(models, stats.policy)


def report(stats: FailureStats, now: float) -> dict[str, list[dict[str, Any]]]:
    """node id -> its remembered pairs as plain data (``/fleet/status``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    half_life = stats.policy.half_life_s
    for key in sorted(stats.models):
        for node_id, h in sorted(stats.models[key].items()):
            state = state_of(h, now)
            out.setdefault(node_id, []).append(
                {
                    "model": key,
                    "state": state,
                    "failures": h.failures,
                    "consecutive": h.consecutive,
                    "error_rate": round(error_rate(h, now, half_life), 4),
                    "trips": h.trips,
                    "cooldown_s": cooldown_for(stats.policy, h.trips) if h.trips else 0.0,
                    "cooldown_left_s": round(max(0.0, (h.until or now) - now), 3),
                    "last_error": h.last_error,
                    "reason": cooling_reason(h, 0, now) if state == "cooling_down" else None,
                }
            )
    return out


# --- giving up --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Hopeless:
    """Every node holding the model failed this request or is cooling down for it."""

    model: str
    reasons: Mapping[str, str]  # holder -> why it cannot serve
    cooling: bool  # some holder is cooling down (not only this request's failures)
    retry_after: float | None  # seconds until the first cooldown ends

    def error(self) -> NoCapacity:
        """The 503 a request gets at once instead of waiting in the holding queue."""
        why = "; ".join(f"{node}: {reason}" for node, reason in sorted(self.reasons.items()))
        return NoCapacity(
            f"no node can serve '{self.model}' now: {why}",
            retry_after=max(1.0, self.retry_after or 0.0),
        )


def nobody_left(
    snapshot: FleetSnapshot, models: Sequence[str], exclude: frozenset[str], now: float
) -> Hopeless | None:
    """``None`` when some node that is not offline and holds one of ``models`` could still
    serve it (or no node holds it: then the holding queue waits for one to come back);
    else why each holder cannot: excluded from this request, or cooling down."""
    keys = [canonical_model(m) for m in models]
    reasons: dict[str, str] = {}
    cooling = False
    retry: float | None = None
    failures = snapshot.failures
    for node in snapshot.nodes:
        if node.status == "offline":
            continue
        hb = node.heartbeat
        held = [k for k in keys if k in hb.models_by_key or k in hb.loaded_by_key]
        if not held:
            continue
        if hb.node_id in exclude:
            reasons[hb.node_id] = "excluded from this request after a failure"
            continue
        for key in held:
            h = failures.pair(hb.node_id, key)
            reason = cooling_reason(h, node.in_flight_by_model.get(key, 0), now)
            if reason is None:
                return None
            reasons[hb.node_id] = reason
            cooling = True
            left = (h.until or now) - now if h is not None else 0.0
            retry = left if retry is None else min(retry, left)
    if not reasons:
        return None
    return Hopeless(models[0], reasons, cooling, retry)
