"""The failure memory (herd/scoring/failures.py): what counts, thresholds, the decaying
error rate, cooldowns that grow with failed probes, the half-open probe, readmission,
and the elimination it drives under every routing policy."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_scoring import NOW, W, node

from herd.domain import (
    EMPTY_PERF,
    FailurePolicy,
    FailureStats,
    FleetSnapshot,
    NodeView,
    Outcome,
    PairHealth,
)
from herd.errors import (
    BackendError,
    BackendTimeout,
    BadRequest,
    HerdError,
    ModelNotFound,
    NoCapacity,
    NodeUnavailable,
    PayloadTooLarge,
    Rebalanced,
)
from herd.routing.decide import decide
from herd.scoring import POLICY_NAMES, ScoringWeights
from herd.scoring import failures as fm
from herd.settings import load_settings

POLICY = FailurePolicy(threshold=3, cooldown_s=10.0, cooldown_max_s=45.0, half_life_s=60.0)
M = "tiny:1b"


def fail(node_id: str = "a", error: str = "boom", model: str = M) -> Outcome:
    return Outcome("r", node_id, model, ok=False, error=error, node_fault=True)


def ok(node_id: str = "a", model: str = M) -> Outcome:
    return Outcome("r", node_id, model, ok=True, started=True)


def feed(stats: FailureStats, *steps: tuple[Outcome, float]) -> FailureStats:
    for outcome, at in steps:
        stats = fm.observe(stats, outcome, at)
    return stats


def pair(stats: FailureStats, node_id: str = "a") -> PairHealth | None:
    return stats.pair(node_id, M)


EMPTY = fm.empty(POLICY)


# --- what counts ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("err", "counts"),
    [
        (BackendError("llama runner terminated", backend_status=500), True),
        (BackendError("broken stream"), True),  # no status: the node's own failure
        (BackendError("busy", backend_status=429), True),
        (BackendError("slow", backend_status=408), True),
        (BackendTimeout("no first chunk within 3s (FLEET_FIRST_CHUNK_TIMEOUT)"), True),
        (NodeUnavailable("node failed"), True),
        (ModelNotFound("the node lost the model"), True),
        (BadRequest("invalid options"), False),  # the client's input
        (BackendError("prompt rejected", backend_status=400, retryable=False), False),
        (BackendError("too large", backend_status=413), False),
        (PayloadTooLarge("body too large"), False),
        (Rebalanced("handed back"), False),  # a move
    ],
)
def test_which_failures_count_against_the_node(err: HerdError, counts: bool) -> None:
    assert fm.counts_against_node(err) is counts


def test_failures_that_do_not_count_change_nothing() -> None:
    disconnect = Outcome("r", "a", M, ok=False, error="client disconnected")
    moved = Outcome("r", "a", M, ok=False, error="handed back", moved=True, node_fault=True)
    nowhere = Outcome("r", None, M, ok=False, error="no node", node_fault=True)
    for outcome in (disconnect, moved, nowhere, ok()):
        assert fm.observe(EMPTY, outcome, NOW) is EMPTY  # the same object: nothing to rebuild


# --- thresholds and cooldowns -----------------------------------------------------------------
def test_the_threshold_trips_the_pair_and_the_cooldown_starts_then() -> None:
    stats = feed(EMPTY, (fail(), NOW), (fail(), NOW + 1))
    h = pair(stats)
    assert h is not None and (h.consecutive, h.until) == (2, None)
    assert fm.cooling_reason(h, 0, NOW + 1) is None  # below the threshold: still admitted
    stats = fm.observe(stats, fail(error="llama runner process has terminated"), NOW + 2)
    h = pair(stats)
    assert h is not None and (h.failures, h.trips, h.until) == (3, 1, NOW + 12)
    reason = "cooling down after 3 failures: llama runner process has terminated"
    assert fm.cooling_reason(h, 0, NOW + 2) == reason
    assert fm.state_of(h, NOW + 11.9) == "cooling_down"
    assert pair(stats, "b") is None  # per node ...
    assert stats.pair("a", "other:1b") is None  # ... and per model


def test_a_success_resets_the_consecutive_count() -> None:
    stats = feed(EMPTY, (fail(), NOW), (fail(), NOW), (ok(), NOW), (fail(), NOW), (fail(), NOW))
    h = pair(stats)
    assert h is not None and (h.consecutive, h.until, h.failures) == (2, None, 4)


def test_threshold_zero_turns_the_memory_off() -> None:
    off = fm.empty(replace(POLICY, threshold=0))
    stats = feed(off, *((fail(), NOW + i) for i in range(10)))
    assert stats.models == {}


def test_the_cooldown_doubles_with_each_failed_probe_up_to_the_cap() -> None:
    assert [fm.cooldown_for(POLICY, t) for t in (1, 2, 3, 4, 5)] == [10, 20, 40, 45, 45]
    stats = feed(EMPTY, (fail(), NOW), (fail(), NOW), (fail(), NOW))
    now, lengths = NOW, []
    for _ in range(4):
        h = pair(stats)
        assert h is not None and h.until is not None
        lengths.append(h.until - now)
        now = h.until  # half-open: the probe goes, and fails
        assert fm.cooling_reason(h, 0, now) is None
        stats = fm.observe(stats, fail(), now)
    assert lengths == [10, 20, 40, 45]
    h = pair(stats)
    assert h is not None and (h.trips, h.failures) == (5, 7)


def test_a_late_failure_during_the_cooldown_does_not_extend_it() -> None:
    stats = feed(EMPTY, (fail(), NOW), (fail(), NOW), (fail(), NOW))
    stats = fm.observe(stats, fail(error="an attempt from before the trip"), NOW + 5)
    h = pair(stats)
    assert h is not None and (h.until, h.trips, h.failures) == (NOW + 10, 1, 4)


def test_half_open_lets_one_probe_through_at_a_time() -> None:
    stats = feed(EMPTY, (fail(), NOW), (fail(), NOW), (fail(), NOW))
    h = pair(stats)
    assert h is not None
    assert fm.cooling_reason(h, 0, NOW + 9.99) is not None  # still cooling
    assert fm.cooling_reason(h, 0, NOW + 10) is None  # half-open, nothing running: the probe
    probing = fm.cooling_reason(h, 1, NOW + 10)  # the probe runs: nobody else
    assert probing == "cooling down after 3 failures: boom"
    assert fm.state_of(h, NOW + 10) == "half_open"


def test_a_successful_probe_readmits_and_resets_the_pair() -> None:
    stats = feed(EMPTY, (fail(), NOW), (fail(), NOW), (fail(), NOW))
    stats, event = fm.learn(stats, fail(), NOW + 10)  # the first probe fails: 20 s now
    assert event is not None and event["kind"] == "cooled_down" and event["cooldown_s"] == 20
    stats, event = fm.learn(stats, ok(), NOW + 30)  # the second one succeeds
    assert pair(stats) is None and stats.models == {}
    assert event == {
        "time": NOW + 30,
        "node_id": "a",
        "model": M,
        "kind": "readmitted",
        "failures": 4,
        "trips": 2,
    }
    # Reset: it takes the whole threshold again, and the first cooldown is the base one.
    stats = feed(stats, (fail(), NOW + 31), (fail(), NOW + 31))
    assert fm.cooling_reason(pair(stats), 0, NOW + 31) is None
    stats, event = fm.learn(stats, fail(), NOW + 31)
    assert event is not None and (event["kind"], event["trips"], event["cooldown_s"]) == (
        "cooled_down",
        1,
        10.0,
    )


def test_learn_reports_the_trip_once() -> None:
    stats, events = EMPTY, []
    for i in range(5):
        stats, event = fm.learn(stats, fail(error=f"e{i}"), NOW + i)
        events.append(event)
    assert [e and e["kind"] for e in events] == [None, None, "cooled_down", None, None]
    assert events[2] == {
        "time": NOW + 2,
        "node_id": "a",
        "model": M,
        "kind": "cooled_down",
        "failures": 3,
        "trips": 1,
        "cooldown_s": 10.0,
        "error": "e2",
    }


# --- the decaying error rate ------------------------------------------------------------------
def test_the_error_rate_decays_with_its_half_life() -> None:
    stats = feed(EMPTY, (fail(), NOW), (ok(), NOW))
    h = pair(stats)
    assert h is not None
    assert fm.error_rate(h, NOW, 60.0) == 0.5
    assert fm.decayed(h, NOW + 60, 60.0) == (0.5, 1.0)  # one half-life: half the weight
    assert fm.error_rate(h, NOW + 600, 60.0) == pytest.approx(0.5)  # a rate, not a count


def test_faded_failures_are_forgotten_by_the_next_success() -> None:
    stats = feed(EMPTY, (fail(), NOW), (ok(), NOW + 30))
    assert pair(stats) is not None  # 0.7 of a failure still weighs
    assert pair(fm.observe(stats, ok(), NOW + 61)) is None  # below half a failure: gone


def test_an_intermittent_node_trips_on_its_error_rate() -> None:
    """Failing every other request never makes three in a row; the rate catches it once
    twice the threshold of requests weigh in."""
    stats, tripped_at = EMPTY, None
    for i in range(12):
        outcome = fail() if i % 2 == 0 else ok()
        stats = fm.observe(stats, outcome, NOW + i)
        h = pair(stats)
        if h is not None and h.until is not None:
            tripped_at = i
            break
    assert tripped_at == 6  # the 7th request (4 of 7 failed); at 6 requests it was 3 of 6
    h = pair(stats)
    assert h is not None and h.consecutive == 1 and h.failures == 4
    assert fm.cooling_reason(h, 0, NOW + 6) == "cooling down after 4 failures: boom"
    no_rate = fm.empty(replace(POLICY, error_rate=0.0))
    for i in range(12):
        no_rate = fm.observe(no_rate, fail() if i % 2 == 0 else ok(), NOW + i)
    assert fm.cooling_reason(pair(no_rate), 0, NOW + 12) is None


def test_the_memory_is_pure_in_now() -> None:
    """The same outcomes at the same times give the same memory, whenever it runs."""
    steps = [(fail(), NOW), (ok(), NOW + 3), (fail(), NOW + 4), (fail(), NOW + 9)]
    assert feed(EMPTY, *steps) == feed(EMPTY, *steps)
    later = [(o, t + 1000) for o, t in steps]
    h, g = pair(feed(EMPTY, *steps)), pair(feed(EMPTY, *later))
    assert h is not None and g is not None and replace(g, at=g.at - 1000) == h


def test_rebased_moves_every_time_and_forget_node_drops_its_pairs() -> None:
    stats = feed(EMPTY, (fail(), NOW), (fail(), NOW), (fail(), NOW), (fail("b"), NOW))
    moved = fm.rebased(stats, 2.5)
    h = pair(moved)
    assert h is not None and (h.at, h.until) == (NOW + 2.5, NOW + 12.5)
    assert fm.rebased(stats, 0.0) is stats
    gone = fm.forget_node(stats, "a")
    assert pair(gone) is None and pair(gone, "b") is not None


def test_report_is_plain_data_per_node() -> None:
    stats = feed(EMPTY, (fail(error="x"), NOW), (fail(error="x"), NOW), (fail(error="x"), NOW))
    stats = fm.observe(stats, fail("b", error="y"), NOW)
    out = fm.report(stats, NOW + 4)
    assert out["a"] == [
        {
            "model": M,
            "state": "cooling_down",
            "failures": 3,
            "consecutive": 3,
            "error_rate": 1.0,
            "trips": 1,
            "cooldown_s": 10.0,
            "cooldown_left_s": 6.0,
            "last_error": "x",
            "reason": "cooling down after 3 failures: x",
        }
    ]
    (b,) = out["b"]
    assert (b["state"], b["failures"], b["reason"], b["cooldown_left_s"]) == (
        "admitted",
        1,
        None,
        0,
    )
    assert fm.report(stats, NOW + 10)["a"][0]["state"] == "half_open"


def test_the_policy_comes_from_the_settings() -> None:
    s = load_settings(
        failure_threshold=5,
        failure_cooldown=2.0,
        failure_cooldown_max=8.0,
        failure_rate=0.25,
        failure_half_life=30.0,
    )
    assert fm.policy_from(s) == FailurePolicy(5, 2.0, 8.0, 0.25, 30.0)
    assert fm.policy_from(load_settings()) == FailurePolicy()  # the defaults agree


# --- elimination, under every policy ----------------------------------------------------------
def _fleet(failing_busy: int = 0) -> tuple[NodeView, ...]:
    """``a`` is idle with the model loaded (it fails fast, so it stays idle); ``b`` has it
    loaded and is busy. Every policy but round-robin prefers ``a`` while it is admitted."""
    return (
        node(
            "a", loaded=(M,), num_parallel=4, by_model={M: failing_busy} if failing_busy else None
        ),
        node("b", loaded=(M,), num_parallel=4, by_model={M: 3, "other:1b": 2}),
    )


def _tripped(at: float = NOW) -> FailureStats:
    return feed(EMPTY, (fail(), at), (fail(), at), (fail(error="runner crashed"), at))


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_a_cooled_pair_is_eliminated_under_every_policy(policy: str) -> None:
    weights = ScoringWeights(policy=policy)
    nodes = _fleet()
    plain = FleetSnapshot(nodes, NOW, EMPTY_PERF)
    if policy != "round_robin":
        before = decide(plain, "r", [M], NOW, weights)
        assert before is not None and before.node_id == "a"  # the premise: a attracts traffic
    snap = FleetSnapshot(nodes, NOW, EMPTY_PERF, _tripped())
    for seq in range(4):  # round-robin's every turn
        decision = decide(snap, f"r{seq}", [M], NOW + 1, weights)
        assert decision is not None and decision.node_id == "b"
        assert decision.eliminated == {"a": "cooling down after 3 failures: runner crashed"}
        assert [c.node_id for c in decision.candidates] == ["b"]


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_after_the_cooldown_one_probe_goes_under_every_policy(policy: str) -> None:
    weights = ScoringWeights(policy=policy)
    tripped = _tripped()
    idle = FleetSnapshot(_fleet(), NOW, EMPTY_PERF, tripped)
    ranked = decide(idle, "probe", [M], NOW + 10, weights)
    assert ranked is not None and "a" in {c.node_id for c in ranked.candidates}
    assert ranked.eliminated == {}
    probing = FleetSnapshot(_fleet(failing_busy=1), NOW, EMPTY_PERF, tripped)
    decision = decide(probing, "next", [M], NOW + 10, weights)
    assert decision is not None and decision.node_id == "b"
    assert decision.eliminated == {"a": "cooling down after 3 failures: runner crashed"}


def test_the_fused_elimination_agrees_with_the_rules_one_by_one() -> None:
    from herd.scoring.eliminate import DEFAULT_ELIMINATORS, eliminate
    from herd.scoring.fleet_context import build_context
    from herd.scoring.query import RouteQuery

    query = RouteQuery(M)
    snap = FleetSnapshot(_fleet(), NOW, EMPTY_PERF, _tripped())
    ctx = build_context(snap, query, W)
    for now in (NOW, NOW + 10, NOW + 20):
        fused = eliminate(snap.nodes, query, ctx, now, W)
        assert fused == eliminate(snap.nodes, query, ctx, now, W, rules=(*DEFAULT_ELIMINATORS,))


# --- giving up at once ------------------------------------------------------------------------
def test_nobody_left_when_every_holder_failed_or_cools_down() -> None:
    nodes = (*_fleet(), node("c", models=("other:1b",)), node("d", loaded=(M,), status="offline"))
    snap = FleetSnapshot(nodes, NOW, EMPTY_PERF, _tripped())
    assert fm.nobody_left(snap, [M], frozenset(), NOW) is None  # b can serve
    hopeless = fm.nobody_left(snap, [M], frozenset({"b"}), NOW + 4)
    assert hopeless is not None and hopeless.cooling and hopeless.retry_after == 6.0
    assert dict(hopeless.reasons) == {
        "a": "cooling down after 3 failures: runner crashed",
        "b": "excluded from this request after a failure",
    }  # c does not hold the model; d is offline
    err = hopeless.error()
    assert isinstance(err, NoCapacity) and err.status == 503 and err.retry_after == 6.0
    assert err.message == (
        f"no node can serve '{M}' now: a: cooling down after 3 failures: runner crashed; "
        "b: excluded from this request after a failure"
    )
    # Only this request's failures: hopeless, but not cooling (the dispatcher knows why).
    healthy = FleetSnapshot(nodes, NOW, EMPTY_PERF)
    only_failed = fm.nobody_left(healthy, [M], frozenset({"a", "b"}), NOW)
    assert only_failed is not None and not only_failed.cooling
    # A fallback model someone else holds keeps hope.
    assert fm.nobody_left(snap, [M, "other:1b"], frozenset({"b"}), NOW) is None
    # Half-open with nothing running: the probe may go, so there is hope.
    assert fm.nobody_left(snap, [M], frozenset({"b"}), NOW + 10) is None


def test_nobody_holds_it_is_not_hopeless() -> None:
    """No holder at all (a backend down reports no models): the holding queue waits."""
    snap = FleetSnapshot((node("c", models=("other:1b",)),), NOW, EMPTY_PERF, _tripped())
    assert fm.nobody_left(snap, [M], frozenset(), NOW) is None
