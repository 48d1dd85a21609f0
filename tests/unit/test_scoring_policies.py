"""Routing policies (herd/scoring/policies.py, estimate.py) and decide()/weights_from()."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from test_scoring import GIB, NOW, W, node, perf_of, snap

from herd.domain import (
    FleetModelPerf,
    InferenceRequest,
    LoadedModel,
    ModelOnDisk,
    ModelPerf,
    NodePerf,
    NodeView,
    PerfStats,
)
from herd.errors import ConfigError
from herd.routing.decide import decide, weights_from
from herd.scoring import POLICIES, POLICY_NAMES, RouteQuery, ScoringWeights, policy_named
from herd.scoring.estimate import estimate
from herd.scoring.fleet_context import build_context
from herd.scoring.policies import expected_latency, least_busy, round_robin
from herd.settings import Settings, load_settings

M4 = (ModelOnDisk("m:4b", size=4 * GIB),)
HOT = (LoadedModel("m:4b", size=4 * GIB),)
# Learned on every node below unless a test says otherwise.
LEARNED = ModelPerf(samples=10, prompt_tps=1000.0, gen_tps=50.0, service_s=2.0, load_s=8.0)


def est(view: NodeView, query: RouteQuery, perf: PerfStats, w: ScoringWeights = W) -> Any:
    ctx = build_context(snap(view, perf=perf), query, w)
    return estimate(view, query, ctx, NOW, w)


Q = RouteQuery("m:4b", prompt_tokens=500, num_predict=100)
ONE = perf_of({("n", "m:4b"): LEARNED})


@pytest.mark.parametrize(
    ("view", "query", "perf", "parts"),
    [
        # Hot and idle: prefill 500/1000, generation 100/50.
        (node("n", loaded=HOT), Q, ONE, (0.0, 0.0, 0.5, 2.0)),
        # Cold: plus the learned load time on this node.
        (node("n", models=M4), Q, ONE, (0.0, 8.0, 0.5, 2.0)),
        # A load already under way (in flight, not loaded yet): half, on average.
        (node("n", models=M4, num_parallel=4, by_model={"m:4b": 1}), Q, ONE, (0.0, 4.0, 0.5, 2.0)),
        # All slots busy: waiting / num_parallel x the learned service time.
        (node("n", loaded=HOT, by_model={"m:4b": 1}), Q, ONE, (2.0, 0.0, 0.5, 2.0)),
        (node("n", loaded=HOT, by_model={"m:4b": 3}), Q, ONE, (6.0, 0.0, 0.5, 2.0)),
        (node("n", loaded=HOT, num_parallel=2, by_model={"m:4b": 1}), Q, ONE, (0.0, 0.0, 0.5, 2.0)),
        (node("n", loaded=HOT, num_parallel=2, by_model={"m:4b": 3}), Q, ONE, (2.0, 0.0, 0.5, 2.0)),
        # Other models do not queue us (each has its own slots).
        (node("n", loaded=HOT, by_model={"x:1b": 5}), Q, ONE, (0.0, 0.0, 0.5, 2.0)),
        # No learned service time: this request's own estimate per request ahead.
        (
            node("n", loaded=HOT, by_model={"m:4b": 1}),
            Q,
            perf_of({("n", "m:4b"): ModelPerf(prompt_tps=1000.0, gen_tps=50.0)}),
            (2.5, 0.0, 0.5, 2.0),
        ),
        # Embeddings generate nothing.
        (
            node("n", loaded=HOT),
            RouteQuery("m:4b", "embed", prompt_tokens=500),
            ONE,
            (0, 0, 0.5, 0),
        ),
        # num_predict caps the fleet's mean answer length, which is used without it.
        (
            node("n", loaded=HOT),
            RouteQuery("m:4b", prompt_tokens=0),
            perf_of({("n", "m:4b"): LEARNED}, fleet={"m:4b": FleetModelPerf(completion_tokens=40)}),
            (0.0, 0.0, 0.0, 0.8),
        ),
        (
            node("n", loaded=HOT),
            RouteQuery("m:4b", prompt_tokens=0, num_predict=400),
            perf_of({("n", "m:4b"): LEARNED}, fleet={"m:4b": FleetModelPerf(completion_tokens=40)}),
            (0.0, 0.0, 0.0, 0.8),
        ),
        (
            node("n", loaded=HOT),
            RouteQuery("m:4b", prompt_tokens=0, num_predict=10),
            perf_of({("n", "m:4b"): LEARNED}, fleet={"m:4b": FleetModelPerf(completion_tokens=40)}),
            (0.0, 0.0, 0.0, 0.2),
        ),
        # Not learned for this model: the node's rates over the model's size
        # (16 GiB x tok/s for a 4 GiB model = 4 tok/s; 2 GiB/s load).
        (
            node("n", models=M4),
            Q,
            PerfStats(nodes={"n": NodePerf(2 * GIB, 16 * 50 * GIB, 16 * 1000 * GIB)}),
            (0.0, 2.0, 0.125, 0.5),
        ),
        # Nothing learned at all: the defaults in the weights.
        (
            node("n", models=M4),
            Q,
            PerfStats(),
            (0.0, 4 * GIB / 1e9, 500 / (2.5e12 / (4 * GIB)), 100 / (1.5e11 / (4 * GIB))),
        ),
    ],
)
def test_expected_latency_components(
    view: NodeView, query: RouteQuery, perf: PerfStats, parts: tuple[float, ...]
) -> None:
    e = est(view, query, perf)
    assert (e.queue_s, e.load_s, e.prefill_s, e.generate_s) == pytest.approx(parts)
    assert e.total_s == pytest.approx(sum(parts))


def test_expected_latency_contention_stretches_service_time() -> None:
    view = node("n", loaded=HOT, by_model={"m:4b": 1, "x:1b": 2})
    e = est(view, Q, ONE, ScoringWeights(contention=0.5))  # two others in flight: x2
    assert (e.queue_s, e.prefill_s, e.generate_s) == pytest.approx((4.0, 1.0, 4.0))


def fleet_for_tradeoff(load_s: float) -> Any:
    """A hot node with three requests queued (2 s each) and an idle cold one."""
    busy_hot = node("busy-hot", loaded=HOT, by_model={"m:4b": 3})
    idle_cold = node("idle-cold", models=M4)
    perf = perf_of(
        {
            ("busy-hot", "m:4b"): LEARNED,
            ("idle-cold", "m:4b"): ModelPerf(prompt_tps=1000.0, gen_tps=50.0, load_s=load_s),
        }
    )
    return snap(busy_hot, idle_cold, perf=perf)


@pytest.mark.parametrize(
    ("load_s", "winner"),
    [
        (2.0, "idle-cold"),  # a 2 s load beats 6 s of queue
        (5.9, "idle-cold"),
        (6.1, "busy-hot"),
        (30.0, "busy-hot"),  # a 30 s load does not
    ],
)
def test_cold_load_on_an_idle_node_against_waiting_on_a_busy_hot_one(
    load_s: float, winner: str
) -> None:
    ranking = expected_latency(fleet_for_tradeoff(load_s), Q, NOW, W)
    assert ranking.best is not None and ranking.best.node_id == winner
    for c in ranking.candidates:
        assert set(c.breakdown) == {"queue_s", "load_s", "prefill_s", "generate_s"}
        assert c.total == pytest.approx(-sum(c.breakdown.values()))
    totals = [c.total for c in ranking.candidates]
    assert totals == sorted(totals, reverse=True)
    # The seed's score always prefers the hot node here (its queue penalty is capped).
    seed = policy_named("score")(fleet_for_tradeoff(load_s), Q, NOW, W, frozenset()).best
    assert seed is not None and seed.node_id == "busy-hot"


def test_expected_latency_prefers_the_faster_node_when_both_are_hot() -> None:
    perf = perf_of(
        {
            ("fast", "m:4b"): ModelPerf(prompt_tps=3000.0, gen_tps=120.0),
            ("slow", "m:4b"): ModelPerf(prompt_tps=80.0, gen_tps=12.0),
        }
    )
    s = snap(node("slow", loaded=HOT), node("fast", loaded=HOT), perf=perf)
    ranking = expected_latency(s, Q, NOW, W)
    assert [c.node_id for c in ranking.candidates] == ["fast", "slow"]


def rr_fleet() -> Any:
    return snap(
        node("c", models=M4),
        node("a", models=M4),
        node("gone", models=M4, status="offline"),
        node("b", models=M4, by_model={"m:4b": 9}),
    )


@pytest.mark.parametrize(
    ("seq", "order"),
    [
        (0, ["a", "b", "c"]),
        (1, ["b", "c", "a"]),
        (2, ["c", "a", "b"]),
        (3, ["a", "b", "c"]),
        (3001, ["b", "c", "a"]),
    ],
)
def test_round_robin_takes_turns_over_survivors(seq: int, order: list[str]) -> None:
    ranking = round_robin(rr_fleet(), RouteQuery("m:4b", seq=seq), NOW, W)
    assert [c.node_id for c in ranking.candidates] == order
    assert ranking.eliminated == {"gone": "offline"}
    assert [c.breakdown["round_robin"] for c in ranking.candidates] == [0.0, -1.0, -2.0]


def test_round_robin_without_a_counter_hashes_the_request_id() -> None:
    picks = {
        round_robin(rr_fleet(), RouteQuery("m:4b", request_id=f"r{i}"), NOW, W).best.node_id  # type: ignore[union-attr]
        for i in range(30)
    }
    assert picks == {"a", "b", "c"}  # spread over every survivor
    again = round_robin(rr_fleet(), RouteQuery("m:4b", request_id="r7"), NOW, W)
    first = round_robin(rr_fleet(), RouteQuery("m:4b", request_id="r7"), NOW, W)
    assert again.best == first.best  # and deterministic


def test_least_busy_counts_every_model() -> None:
    s = snap(
        node("a", models=M4, loaded=HOT, by_model={"m:4b": 2}),
        node("b", models=M4, by_model={"x:1b": 1}),
        node("c", models=M4),
        node("d", models=M4),
    )
    ranking = least_busy(s, RouteQuery("m:4b"), NOW, W)
    assert [c.node_id for c in ranking.candidates] == ["c", "d", "b", "a"]
    assert [c.breakdown["in_flight"] for c in ranking.candidates] == [0.0, 0.0, -1.0, -2.0]


def test_policy_names_match_the_setting() -> None:
    assert tuple(POLICIES) == POLICY_NAMES
    assert set(get_args(Settings.model_fields["routing_policy"].annotation)) == set(POLICY_NAMES)
    assert all(policy_named(n) is POLICIES[n] for n in POLICY_NAMES)
    with pytest.raises(ValueError, match="unknown routing policy 'fastest'"):
        policy_named("fastest")


# --- decide() and weights_from() ---------------------------------------------------------


def decide_fleet() -> Any:
    busy_hot = node("busy-hot", loaded=HOT, by_model={"m:4b": 3})
    idle_cold = node("idle-cold", models=(*M4, ModelOnDisk("alt:1b")))
    perf = perf_of(
        {
            ("busy-hot", "m:4b"): LEARNED,
            ("idle-cold", "m:4b"): ModelPerf(prompt_tps=1000.0, gen_tps=50.0, load_s=1.0),
        }
    )
    return snap(busy_hot, idle_cold, perf=perf)


def test_decide_uses_the_policy_in_the_weights_or_the_argument() -> None:
    s = decide_fleet()
    default = decide(s, "r1", ["m:4b"], NOW, W)
    assert default is not None and default.node_id == "busy-hot"  # seed's score
    assert "thermal" in default.breakdown and default.score == sum(default.breakdown.values())
    latency_w = ScoringWeights(policy="expected_latency")
    by_weights = decide(s, "r1", ["m:4b"], NOW, latency_w)
    by_name = decide(s, "r1", ["m:4b"], NOW, W, policy="expected_latency")
    by_callable = decide(s, "r1", ["m:4b"], NOW, W, policy=expected_latency)
    assert by_weights == by_name == by_callable
    assert by_name is not None and by_name.node_id == "idle-cold"
    assert set(by_name.breakdown) == {"queue_s", "load_s", "prefill_s", "generate_s"}
    assert by_name.score == pytest.approx(-sum(by_name.breakdown.values()))
    with pytest.raises(ValueError):
        decide(s, "r1", ["m:4b"], NOW, W, policy="nope")


def test_decide_passes_the_request_features() -> None:
    s = decide_fleet()
    # A huge prompt makes the slow queue of a busy node even longer, not the load.
    plain = decide(s, "r1", ["m:4b"], NOW, W, policy="expected_latency")
    long = decide(s, "r1", ["m:4b"], NOW, W, policy="expected_latency", estimated_tokens=50_000)
    assert plain is not None and long is not None
    assert long.breakdown["prefill_s"] == pytest.approx(50.0)
    assert plain.breakdown["prefill_s"] == pytest.approx(0.0)
    query = RouteQuery("ignored-name", prompt_tokens=2000, request_id="r9")
    with_query = decide(s, "r9", ["m:4b"], NOW, W, query=query, policy="expected_latency")
    assert with_query is not None and with_query.breakdown["prefill_s"] == pytest.approx(2.0)
    assert with_query.model == "m:4b"  # the query follows each model tried


def test_decide_falls_back_with_any_policy() -> None:
    s = decide_fleet()
    for name in POLICY_NAMES:
        d = decide(s, "r1", ["nope:1b", "alt:1b"], NOW, W, policy=name, attempt=2)
        assert d is not None, name
        assert (d.node_id, d.model, d.requested_model, d.fallback, d.attempt) == (
            "idle-cold",
            "alt:1b",
            "nope:1b",
            True,
            2,
        )
        assert decide(s, "r1", ["nope:1b"], NOW, W, policy=name) is None
        everyone = frozenset({"busy-hot", "idle-cold"})
        assert decide(s, "r1", ["m:4b"], NOW, W, everyone, policy=name) is None


def test_weights_from_settings() -> None:
    s = load_settings(
        routing_policy="expected_latency",
        score_thermal_hot=1.0,
        score_thermal_warm=2.0,
        score_thermal_disk=3.0,
        score_warm_window=4.0,
        score_memory_fit=5.0,
        score_queue_penalty=6.0,
        score_queue_step=7.0,
        score_latency_penalty=8.0,
        score_role_affinity=9.0,
        score_availability=10.0,
        score_context_fit=11.0,
    )
    w = weights_from(s)
    assert w.policy == "expected_latency"
    assert (w.thermal_hot, w.thermal_warm, w.thermal_disk, w.warm_window_s) == (1, 2, 3, 4)
    assert (w.memory_fit, w.queue_penalty, w.queue_step, w.latency_penalty) == (5, 6, 7, 8)
    assert (w.role_affinity, w.availability, w.context_fit) == (9, 10, 11)


def test_default_settings_give_the_seeds_weights() -> None:
    assert weights_from(load_settings()) == ScoringWeights()
    s = load_settings()
    assert (s.routing_policy, s.context_protection, s.vram_fallback) == (
        "expected_latency",
        "strip",
        False,
    )


def test_routing_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ROUTING_POLICY", "least_busy")
    assert weights_from(load_settings()).policy == "least_busy"
    monkeypatch.setenv("FLEET_ROUTING_POLICY", "random")
    with pytest.raises(ConfigError, match="FLEET_ROUTING_POLICY"):
        load_settings()


@pytest.mark.parametrize(
    ("body", "features"),
    [
        ({"options": {"num_predict": 64, "num_ctx": 8192}}, (64, 8192)),
        ({"options": {"num_predict": -1, "num_ctx": 0}}, (None, None)),
        ({"options": {"num_predict": True}}, (None, None)),
        ({"options": "nonsense"}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_route_query_from_request(body: dict[str, Any], features: tuple[Any, Any]) -> None:
    req = InferenceRequest("r1", "generate", "Qwen3:8B", body, estimated_tokens=321)
    q = RouteQuery.from_request(req)
    assert (q.model, q.key, q.kind, q.prompt_tokens, q.request_id) == (
        "Qwen3:8B",
        "qwen3:8b",
        "generate",
        321,
        "r1",
    )
    assert (q.num_predict, q.num_ctx) == features
    assert RouteQuery.from_request(req, "alt:1b").key == "alt:1b"
    assert q.for_model("other").key == "other:latest" and q.for_model("Qwen3:8B") is q
