"""The seed's pipeline (herd/scoring/pipeline.py): rank() over a frozen snapshot.

Also the shared helpers of the other test_scoring_* modules: ``node`` builds a NodeView
the way FleetState does (canonical in-flight keys), ``snap`` a snapshot around them.
Eliminators, signals, policies, learned stats, context protection and the VRAM
fallback have their own modules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest

from herd.domain import (
    EMPTY_PERF,
    FleetModelPerf,
    FleetSnapshot,
    LoadedModel,
    MemoryPressure,
    ModelOnDisk,
    ModelPerf,
    NodeHeartbeat,
    NodeStatus,
    NodeView,
    PerfStats,
    canonical_model,
)
from herd.scoring import RouteQuery, ScoringWeights, rank
from herd.scoring.fleet_context import ScoreContext, build_context
from herd.scoring.pipeline import score_node
from herd.scoring.signals import DEFAULT_SIGNALS

W = ScoringWeights(policy="score")  # the seed's pipeline; the default policy is expected_latency
NOW = 1_000.0
GIB = 1024**3


def node(
    node_id: str,
    *,
    models: tuple[str | ModelOnDisk, ...] = (),
    loaded: tuple[str | LoadedModel, ...] = (),
    status: NodeStatus = "online",
    draining: bool = False,
    backend_ok: bool = True,
    num_parallel: int = 1,
    by_model: Mapping[str, int] | None = None,
    memory_total: int = 0,
    memory_available: int = 0,
    memory_pressure: MemoryPressure = "normal",
    memory_ceiling: int = 0,
    paused: bool = False,
    availability: float | None = None,
    availability_next: float | None = None,
) -> NodeView:
    """A NodeView; ``by_model`` keys are canonicalised like FleetState does."""
    counts = {canonical_model(k): v for k, v in (by_model or {}).items()}
    hb = NodeHeartbeat(
        node_id=node_id,
        hostname=node_id,
        backend="ollama",
        backend_ok=backend_ok,
        memory_total=memory_total,
        memory_available=memory_available,
        memory_pressure=memory_pressure,
        memory_ceiling=memory_ceiling,
        models=tuple(m if isinstance(m, ModelOnDisk) else ModelOnDisk(m) for m in models),
        loaded=tuple(m if isinstance(m, LoadedModel) else LoadedModel(m) for m in loaded),
        num_parallel=num_parallel,
        draining=draining,
        paused=paused,
        availability=availability,
        availability_next=availability_next,
    )
    return NodeView(hb, status, sum(counts.values()), counts, NOW)


def snap(*nodes: NodeView, perf: PerfStats = EMPTY_PERF) -> FleetSnapshot:
    return FleetSnapshot(tuple(nodes), NOW, perf)


def perf_of(entries: Mapping[tuple[str, str], ModelPerf], **kw: object) -> PerfStats:
    """PerfStats with per-(node, model) entries; model names canonicalised."""
    models: dict[str, dict[str, ModelPerf]] = {}
    for (node_id, model), perf in entries.items():
        models.setdefault(canonical_model(model), {})[node_id] = perf
    return PerfStats(models, **kw)  # type: ignore[arg-type]


def ctx_for(view: NodeView, model: str, **kw: object) -> ScoreContext:
    """The context a one-node fleet gives (or a hand-made one with ``kw``)."""
    if kw:
        return ScoreContext(**kw)  # type: ignore[arg-type]
    return build_context(snap(view), RouteQuery(model), W)


# --- rank ----------------------------------------------------------------------------


def test_rank_prefers_the_hot_node_and_records_breakdowns() -> None:
    s = snap(
        node("cold", models=("m:1b",)),
        node("hot", models=("m:1b",), loaded=("m:1b",)),
        node("busy-hot", models=("m:1b",), loaded=("m:1b",), by_model={"m:1b": 2}),
        node("gone", models=("m:1b",), status="offline"),
        node("no-model", models=("x:1b",)),
    )
    ranking = rank(s, "m:1b", NOW, W)
    assert [c.node_id for c in ranking.candidates] == ["hot", "busy-hot", "cold"]
    assert ranking.best is not None and ranking.best.node_id == "hot"
    by_id = {c.node_id: c for c in ranking.candidates}
    for c in ranking.candidates:
        assert set(c.breakdown) == set(DEFAULT_SIGNALS)  # every signal, every candidate
        assert c.total == sum(c.breakdown.values())
    assert (by_id["hot"].breakdown["thermal"], by_id["hot"].breakdown["queue_depth"]) == (50, 0)
    assert by_id["busy-hot"].breakdown["queue_depth"] == -20.0
    assert by_id["cold"].breakdown["thermal"] == W.thermal_disk
    assert ranking.eliminated == {"gone": "offline", "no-model": "model not on node"}


def test_rank_busy_hot_node_loses_to_idle_cold_one_only_past_the_cap() -> None:
    # The queue penalty is capped at 30 < 50 - 5, so a hot node always wins on defaults.
    s = snap(
        node("cold", models=("m:1b",)),
        node("hot", loaded=("m:1b",), by_model={"m:1b": 50}),
    )
    assert [c.node_id for c in rank(s, "m:1b", NOW, W).candidates] == ["hot", "cold"]
    w = ScoringWeights(thermal_hot=5.0)
    assert [c.node_id for c in rank(s, "m:1b", NOW, w).candidates] == ["cold", "hot"]


def test_rank_accepts_a_query_or_a_model_name() -> None:
    s = snap(node("a", models=("m:1b",)), node("b", loaded=("m:1b",)))
    by_name = rank(s, "m:1b", NOW, W)
    by_query = rank(s, RouteQuery("M:1B", prompt_tokens=10), NOW, W)
    assert [c.node_id for c in by_name.candidates] == [c.node_id for c in by_query.candidates]


@pytest.mark.parametrize(
    ("nodes", "order"),
    [
        # Equal scores: fewer requests in flight first (both have a free slot for m:1b).
        (
            (
                node("a", models=("m:1b",), num_parallel=4, by_model={"m:1b": 2}),
                node("b", models=("m:1b",), num_parallel=4, by_model={"m:1b": 1}),
                node("c", models=("m:1b",), num_parallel=4),
            ),
            ["c", "b", "a"],
        ),
        # Equal scores and in-flight: node id.
        (
            (node("zeta", models=("m:1b",)), node("alpha", models=("m:1b",))),
            ["alpha", "zeta"],
        ),
        (
            (
                node("b", loaded=("m:1b",)),
                node("a", loaded=("m:1b",)),
                node("c", loaded=("m:1b",)),
            ),
            ["a", "b", "c"],
        ),
    ],
)
def test_rank_tie_break(nodes: tuple[NodeView, ...], order: list[str]) -> None:
    for arrangement in (nodes, tuple(reversed(nodes))):
        ranking = rank(FleetSnapshot(arrangement, NOW), "m:1b", NOW, W)
        assert len({c.total for c in ranking.candidates}) == 1  # really a tie
        assert [c.node_id for c in ranking.candidates] == order


def test_rank_with_nothing_eligible() -> None:
    ranking = rank(snap(node("a", models=("m:1b",), draining=True)), "m:1b", NOW, W)
    assert ranking.candidates == () and ranking.best is None
    assert ranking.eliminated == {"a": "draining"}
    empty = rank(snap(), "m:1b", NOW, W)
    assert empty.best is None and empty.eliminated == {}


def test_rank_excludes_failed_nodes() -> None:
    s = snap(node("a", loaded=("m:1b",)), node("b", models=("m:1b",)))
    ranking = rank(s, "m:1b", NOW, W, exclude=frozenset({"a"}))
    assert [c.node_id for c in ranking.candidates] == ["b"]
    assert ranking.eliminated == {"a": "excluded after failure"}


def test_rank_with_custom_signals_and_eliminators() -> None:
    s = snap(node("a", models=("m:1b",)), node("b", models=("m:1b",)), node("c", status="offline"))
    signals = {"prefer_b": lambda n, q, c, t, w: 1.0 if n.node_id == "b" else 0.0}
    ranking = rank(s, "m:1b", NOW, W, signals=signals)
    assert [c.node_id for c in ranking.candidates] == ["b", "a"]
    assert dict(ranking.candidates[0].breakdown) == {"prefer_b": 1.0}
    keep_all = rank(s, "m:1b", NOW, W, eliminators=(lambda n, q, c, t, w: None,))
    assert [c.node_id for c in keep_all.candidates] == ["a", "b", "c"]


def test_score_node_sums_the_signals() -> None:
    view = node("n", loaded=(LoadedModel("m:1b", context_length=8192),), by_model={"m:1b": 1})
    query = RouteQuery("m:1b", prompt_tokens=100)
    score = score_node(view, query, ctx_for(view, "m:1b"), NOW, W)
    assert score.node_id == "n"
    assert score.breakdown["thermal"] == 50.0
    assert score.breakdown["queue_depth"] == -10.0
    assert score.breakdown["context_fit"] == 15.0
    assert score.total == sum(score.breakdown.values())


def test_learned_latency_moves_the_choice() -> None:
    # Two hot nodes; the one that has been twice as slow loses its latency points.
    s = snap(
        node("fast", loaded=("m:1b",)),
        node("slow", loaded=("m:1b",)),
        perf=perf_of(
            {("fast", "m:1b"): ModelPerf(p75_s=1.0), ("slow", "m:1b"): ModelPerf(p75_s=2.0)},
            fleet={"m:1b": FleetModelPerf(best_p75_s=1.0)},
        ),
    )
    ranking = rank(s, "m:1b", NOW, W)
    assert [c.node_id for c in ranking.candidates] == ["fast", "slow"]
    assert ranking.candidates[1].breakdown["latency_history"] == -25.0


def test_heartbeat_indexes_models_by_canonical_name() -> None:
    view = node("n", models=("Tiny:1B", "embedder"), loaded=("embedder:latest",))
    hb = view.heartbeat
    assert set(hb.models_by_key) == {"tiny:1b", "embedder:latest"}
    assert set(hb.loaded_by_key) == {"embedder:latest"}
    assert hb.has_model("TINY:1b") and hb.is_loaded("embedder") and not hb.is_loaded("tiny:1b")
    # The indexes are derived: not compared, rebuilt by dataclasses.replace.
    assert replace(hb, loaded=()).loaded_by_key == {}
    assert replace(hb, loaded=()) != hb and replace(hb) == hb
