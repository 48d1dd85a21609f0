"""Properties of every routing policy over random fleets (hypothesis):

* no eliminated (or excluded) node is ever ranked, and every node is either ranked
  or eliminated with a reason;
* rankings are deterministic for a given snapshot, whatever the order of its nodes;
* the fused default elimination agrees with running the rules one by one;
* the seed's signals stay within their documented ranges.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from test_scoring import GIB, NOW, W, node
from test_scoring_signals import RANGES

from herd.domain import (
    FailureStats,
    FleetModelPerf,
    FleetSnapshot,
    LoadedModel,
    ModelOnDisk,
    ModelPerf,
    NodePerf,
    NodeView,
    PairHealth,
    PerfStats,
    canonical_model,
)
from herd.scoring import POLICIES, POLICY_NAMES, Ranking, RouteQuery
from herd.scoring.eliminate import DEFAULT_ELIMINATORS, eliminate
from herd.scoring.fleet_context import build_context

MODEL_POOL = ("tiny:1b", "TINY:1B", "embedder", "embedder:latest", "coder:1b", "big:70b")
SIZES = {"tiny:1b": GIB, "embedder:latest": GIB // 4, "coder:1b": 2 * GIB, "big:70b": 40 * GIB}
IDS = st.text("abcdefgh", min_size=1, max_size=3)


def _disk(name: str) -> ModelOnDisk:
    return ModelOnDisk(name, SIZES[canonical_model(name)])


@st.composite
def node_views(draw: st.DrawFn, node_id: str) -> NodeView:
    by_model = draw(st.dictionaries(st.sampled_from(MODEL_POOL), st.integers(0, 6), max_size=3))
    total = draw(st.sampled_from((0, 8 * GIB, 16 * GIB, 64 * GIB, 192 * GIB)))
    loaded = draw(st.lists(st.sampled_from(MODEL_POOL), max_size=2))
    return node(
        node_id,
        models=tuple(_disk(m) for m in draw(st.lists(st.sampled_from(MODEL_POOL), max_size=4))),
        loaded=tuple(
            LoadedModel(
                m, SIZES[canonical_model(m)], context_length=draw(st.sampled_from((0, 2048, 8192)))
            )
            for m in loaded
        ),
        status=draw(st.sampled_from(("online", "online", "degraded", "offline"))),
        draining=draw(st.booleans()),
        backend_ok=draw(st.booleans()),
        num_parallel=draw(st.integers(1, 4)),
        by_model={k: v for k, v in by_model.items() if v},
        memory_total=total,
        memory_available=int(total * draw(st.floats(0.0, 1.0))),
        memory_pressure=draw(st.sampled_from(("normal", "warn", "critical"))),
        memory_ceiling=draw(st.sampled_from((0, 0, 4 * GIB, 48 * GIB))),
        paused=draw(st.booleans()),
        availability=draw(st.none() | st.floats(0.0, 1.0)),
        availability_next=draw(st.none() | st.floats(0.0, 1.0)),
    )


def _model_perf(draw: st.DrawFn) -> ModelPerf:
    maybe = st.none() | st.floats(0.05, 50.0)
    return ModelPerf(
        samples=draw(st.integers(0, 50)),
        p75_s=draw(maybe),
        service_s=draw(maybe),
        load_s=draw(maybe),
        prompt_tps=draw(st.none() | st.floats(10.0, 5000.0)),
        gen_tps=draw(st.none() | st.floats(1.0, 200.0)),
        resident_bytes=draw(st.sampled_from((0, GIB, 30 * GIB))),
        unloaded_at=draw(st.none() | st.floats(NOW - 2000, NOW + 5)),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> FleetSnapshot:
    ids = draw(st.lists(IDS, max_size=6, unique=True))
    nodes = tuple(draw(node_views(i)) for i in ids)
    learned: dict[str, dict[str, ModelPerf]] = {}
    for i in ids:
        for m in draw(st.lists(st.sampled_from(MODEL_POOL), max_size=2)):
            learned.setdefault(canonical_model(m), {})[i] = _model_perf(draw)
    rates = {
        i: NodePerf(draw(st.floats(1e8, 1e10)), 1e11, 1e12) for i in ids if draw(st.booleans())
    }
    fleet = {
        canonical_model(m): FleetModelPerf(
            best_p75_s=draw(st.none() | st.floats(0.05, 10.0)),
            completion_tokens=draw(st.none() | st.floats(1.0, 500.0)),
            resident_bytes=draw(st.sampled_from((0, GIB))),
        )
        for m in draw(st.lists(st.sampled_from(MODEL_POOL), max_size=3))
    }
    failures: dict[str, dict[str, PairHealth]] = {}  # the failure memory: some pairs tripped
    for i in ids:
        for m in draw(st.lists(st.sampled_from(MODEL_POOL), max_size=2)):
            until = draw(st.none() | st.floats(NOW - 30, NOW + 30))
            failures.setdefault(canonical_model(m), {})[i] = PairHealth(
                3, 3, 3.0, 3.0, NOW, 1, until, "boom"
            )
    perf = PerfStats(learned, rates, fleet)
    return FleetSnapshot(nodes, NOW, perf, FailureStats(failures))


@st.composite
def queries(draw: st.DrawFn) -> RouteQuery:
    return RouteQuery(
        model=draw(st.sampled_from(MODEL_POOL)),
        kind=draw(st.sampled_from(("chat", "generate", "embed"))),
        prompt_tokens=draw(st.integers(0, 20000)),
        num_predict=draw(st.none() | st.integers(1, 4000)),
        num_ctx=draw(st.none() | st.sampled_from((2048, 32768))),
        request_id=draw(st.text(max_size=6)),
        seq=draw(st.none() | st.integers(0, 10**6)),
    )


def key(r: Ranking) -> tuple[object, ...]:
    cands = tuple((c.node_id, c.total, tuple(sorted(c.breakdown.items()))) for c in r.candidates)
    return cands, tuple(sorted(r.eliminated.items()))


@settings(max_examples=100, deadline=None)
@given(
    s=snapshots(),
    q=queries(),
    exclude=st.frozensets(IDS, max_size=2),
    policy=st.sampled_from(POLICY_NAMES),
)
def test_property_eliminated_nodes_are_never_ranked(
    s: FleetSnapshot, q: RouteQuery, exclude: frozenset[str], policy: str
) -> None:
    ranking = POLICIES[policy](s, q, NOW, W, exclude)
    ranked = [c.node_id for c in ranking.candidates]
    assert not set(ranked) & set(ranking.eliminated)
    assert sorted(ranked + list(ranking.eliminated)) == sorted(n.node_id for n in s.nodes)
    views = {n.node_id: n for n in s.nodes}
    ctx = build_context(s, q, W)
    for node_id in ranked:
        assert node_id not in exclude
        assert all(rule(views[node_id], q, ctx, NOW, W) is None for rule in DEFAULT_ELIMINATORS)
    for node_id, reason in ranking.eliminated.items():
        assert reason == "excluded after failure" or any(
            rule(views[node_id], q, ctx, NOW, W) == reason for rule in DEFAULT_ELIMINATORS
        )
    totals = [c.total for c in ranking.candidates]
    assert totals == sorted(totals, reverse=True)
    # The fused default elimination agrees with running the rules one by one.
    fused = eliminate(s.nodes, q, ctx, NOW, W, exclude)
    assert fused == eliminate(s.nodes, q, ctx, NOW, W, exclude, (*DEFAULT_ELIMINATORS,))


@settings(max_examples=100, deadline=None)
@given(s=snapshots(), q=queries(), seed=st.integers(0, 2**16), policy=st.sampled_from(POLICY_NAMES))
def test_property_ranking_is_deterministic(
    s: FleetSnapshot, q: RouteQuery, seed: int, policy: str
) -> None:
    rank = POLICIES[policy]
    first = key(rank(s, q, NOW, W, frozenset()))
    assert key(rank(s, q, NOW, W, frozenset())) == first
    shuffled = list(s.nodes)
    random.Random(seed).shuffle(shuffled)
    again = FleetSnapshot(tuple(shuffled), NOW, s.perf, s.failures)
    assert key(rank(again, q, NOW, W, frozenset())) == first


@settings(max_examples=100, deadline=None)
@given(s=snapshots(), q=queries())
def test_property_scores_stay_in_their_ranges(s: FleetSnapshot, q: RouteQuery) -> None:
    for c in POLICIES["score"](s, q, NOW, W, frozenset()).candidates:
        for name, value in c.breakdown.items():
            low, high = RANGES[name]
            assert low <= value <= high, (name, value)
        assert c.total == sum(c.breakdown.values())
    for c in POLICIES["expected_latency"](s, q, NOW, W, frozenset()).candidates:
        assert all(0.0 <= v < float("inf") for v in c.breakdown.values())
        assert c.total <= 0.0
