"""The scoring pipeline (herd/scoring/): eliminators, signals and rank(), pure functions."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.models import (
    FleetSnapshot,
    LoadedModel,
    ModelOnDisk,
    NodeHeartbeat,
    NodeStatus,
    NodeView,
    canonical_model,
)
from herd.scoring import ScoringWeights, rank
from herd.scoring.eliminate import (
    DEFAULT_ELIMINATORS,
    Eliminator,
    backend_down,
    draining,
    eliminate,
    missing_model,
    offline,
)
from herd.scoring.signals import queue_depth, thermal

W = ScoringWeights()
NOW = 1_000.0


def node(
    node_id: str,
    *,
    models: tuple[str, ...] = (),
    loaded: tuple[str, ...] = (),
    status: NodeStatus = "online",
    draining: bool = False,
    backend_ok: bool = True,
    num_parallel: int = 1,
    by_model: Mapping[str, int] | None = None,
) -> NodeView:
    """A NodeView; ``by_model`` keys are canonicalised like FleetState does."""
    counts = {canonical_model(k): v for k, v in (by_model or {}).items()}
    hb = NodeHeartbeat(
        node_id=node_id,
        hostname=node_id,
        backend="ollama",
        backend_ok=backend_ok,
        models=tuple(ModelOnDisk(m) for m in models),
        loaded=tuple(LoadedModel(m) for m in loaded),
        num_parallel=num_parallel,
        draining=draining,
    )
    return NodeView(hb, status, sum(counts.values()), counts, NOW)


def snap(*nodes: NodeView) -> FleetSnapshot:
    return FleetSnapshot(tuple(nodes), NOW)


# --- eliminators -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "view", "reason"),
    [
        (offline, node("n", models=("m:1b",), status="offline"), "offline"),
        (offline, node("n", models=("m:1b",), status="degraded"), None),
        (offline, node("n", models=("m:1b",)), None),
        (draining, node("n", models=("m:1b",), draining=True), "draining"),
        (draining, node("n", models=("m:1b",)), None),
        (backend_down, node("n", models=("m:1b",), backend_ok=False), "backend down"),
        (backend_down, node("n", models=("m:1b",)), None),
        (missing_model, node("n", models=("other:1b",)), "model not on node"),
        (missing_model, node("n"), "model not on node"),
        (missing_model, node("n", models=("m:1b",)), None),
        (missing_model, node("n", loaded=("m:1b",)), None),  # loaded only still counts
        (missing_model, node("n", models=("M:1B",)), None),  # case-insensitive
        (missing_model, node("n", models=("m:2b",)), "model not on node"),  # other tag
    ],
)
def test_each_eliminator_and_its_reason(
    rule: Eliminator, view: NodeView, reason: str | None
) -> None:
    assert rule(view, "m:1b", NOW) == reason


@pytest.mark.parametrize(
    ("model", "on_disk", "present"),
    [
        ("llama3", "llama3:latest", True),
        ("llama3:latest", "llama3", True),
        ("LLAMA3", "llama3:latest", True),
        ("Qwen3:8B", "qwen3:8b", True),
        ("  qwen3:8b ", "qwen3:8b", True),
        ("library/llama3", "library/llama3:latest", True),
        ("llama3:8b", "llama3:latest", False),
        ("llama3", "llama3:8b", False),
    ],
)
def test_missing_model_matches_like_ollama(model: str, on_disk: str, present: bool) -> None:
    view = node("n", models=(on_disk,))
    assert (missing_model(view, model, NOW) is None) is present


def test_eliminate_records_a_reason_per_node_and_keeps_survivors_in_order() -> None:
    nodes = (
        node("a", models=("m:1b",)),
        node("b", models=("m:1b",), status="offline"),
        node("c", models=("m:1b",), draining=True),
        node("d", models=("m:1b",), backend_ok=False),
        node("e", models=("x:1b",)),
        node("f", models=("m:1b",)),
        node("g", models=("m:1b",), status="degraded"),
    )
    survivors, reasons = eliminate(nodes, "m:1b", NOW, exclude=frozenset({"f"}))
    assert [n.node_id for n in survivors] == ["a", "g"]
    assert reasons == {
        "b": "offline",
        "c": "draining",
        "d": "backend down",
        "e": "model not on node",
        "f": "excluded after failure",
    }


@pytest.mark.parametrize(
    ("view", "exclude", "reason"),
    [
        # The first failing rule wins: offline, draining, backend down, missing model.
        (node("n", status="offline", draining=True, backend_ok=False), frozenset(), "offline"),
        (node("n", draining=True, backend_ok=False), frozenset(), "draining"),
        (node("n", backend_ok=False), frozenset(), "backend down"),
        # Exclusion is checked before any rule.
        (node("n", status="offline"), frozenset({"n"}), "excluded after failure"),
    ],
)
def test_eliminate_reason_precedence(view: NodeView, exclude: frozenset[str], reason: str) -> None:
    _, reasons = eliminate((view,), "m:1b", NOW, exclude)
    assert reasons == {"n": reason}


def test_eliminate_with_custom_rules() -> None:
    survivors, reasons = eliminate(
        (node("a", status="offline"),), "m:1b", NOW, rules=(lambda n, m, t: None,)
    )
    assert [n.node_id for n in survivors] == ["a"] and reasons == {}


# --- thermal -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "models", "loaded", "points"),
    [
        ("tiny:1b", ("tiny:1b",), ("tiny:1b",), 50.0),
        ("tiny:1b", ("tiny:1b",), (), 0.0),  # on disk only: cold
        ("TINY:1B", (), ("tiny:1b",), 50.0),  # case-insensitive
        ("tiny:1b", (), ("Tiny:1B",), 50.0),
        ("embedder", (), ("embedder:latest",), 50.0),  # missing tag = latest
        ("embedder:latest", (), ("embedder",), 50.0),
        ("embedder:v2", (), ("embedder",), 0.0),
        ("tiny:2b", (), ("tiny:1b",), 0.0),
        ("tiny:1b", (), ("other:1b", "tiny:1b"), 50.0),
    ],
)
def test_thermal_only_when_loaded(
    model: str, models: tuple[str, ...], loaded: tuple[str, ...], points: float
) -> None:
    assert thermal(node("n", models=models, loaded=loaded), model, NOW, W) == points


def test_thermal_follows_the_weight() -> None:
    view = node("n", loaded=("tiny:1b",))
    assert thermal(view, "tiny:1b", NOW, ScoringWeights(thermal_hot=7.0)) == 7.0


# --- queue depth ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_parallel", "by_model", "points"),
    [
        (1, {}, 0.0),  # idle
        (2, {"m:1b": 1}, 0.0),  # a free slot costs nothing
        (4, {"m:1b": 3}, 0.0),
        (1, {"m:1b": 1}, -10.0),  # one request would wait
        (2, {"m:1b": 2}, -10.0),
        (1, {"m:1b": 2}, -20.0),
        (1, {"m:1b": 3}, -30.0),
        (1, {"m:1b": 10}, -30.0),  # capped
        (1, {"other:1b": 1}, -5.0),  # other models at half weight
        (1, {"other:1b": 2}, -10.0),
        (4, {"other:1b": 2}, -10.0),  # free slots do not hide other models' work
        (2, {"m:1b": 1, "other:1b": 1}, -5.0),
        (1, {"m:1b": 1, "other:1b": 2}, -20.0),
        (1, {"m:1b": 2, "other:1b": 4}, -30.0),  # capped
        (1, {"other:1b": 100}, -30.0),
        (1, {"M:1B": 1}, -10.0),  # keys and request name are canonicalised
    ],
)
def test_queue_depth(num_parallel: int, by_model: dict[str, int], points: float) -> None:
    view = node("n", models=("m:1b",), num_parallel=num_parallel, by_model=by_model)
    assert queue_depth(view, "m:1b", NOW, W) == points


def test_queue_depth_matches_request_name_case_insensitively() -> None:
    view = node("n", by_model={"embedder:latest": 1})
    assert queue_depth(view, "EMBEDDER", NOW, W) == -10.0


def test_queue_depth_follows_the_weights() -> None:
    view = node("n", by_model={"m:1b": 5})
    w = ScoringWeights(queue_penalty=100.0, queue_step=3.0)
    assert queue_depth(view, "m:1b", NOW, w) == -15.0


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
    assert dict(by_id["hot"].breakdown) == {"thermal": 50.0, "queue_depth": 0.0}
    assert dict(by_id["busy-hot"].breakdown) == {"thermal": 50.0, "queue_depth": -20.0}
    assert dict(by_id["cold"].breakdown) == {"thermal": 0.0, "queue_depth": 0.0}
    for c in ranking.candidates:
        assert c.total == sum(c.breakdown.values())
    assert ranking.eliminated == {"gone": "offline", "no-model": "model not on node"}


def test_rank_busy_hot_node_loses_to_idle_cold_one_only_past_the_cap() -> None:
    # The queue penalty is capped at 30 < 50, so a hot node always wins on defaults.
    s = snap(
        node("cold", models=("m:1b",)),
        node("hot", loaded=("m:1b",), by_model={"m:1b": 50}),
    )
    assert [c.node_id for c in rank(s, "m:1b", NOW, W).candidates] == ["hot", "cold"]
    w = ScoringWeights(thermal_hot=5.0)
    assert [c.node_id for c in rank(s, "m:1b", NOW, w).candidates] == ["cold", "hot"]


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


def test_rank_with_custom_signals() -> None:
    s = snap(node("a", models=("m:1b",)), node("b", models=("m:1b",)))
    signals = {"prefer_b": lambda n, m, t, w: 1.0 if n.node_id == "b" else 0.0}
    ranking = rank(s, "m:1b", NOW, W, signals=signals)
    assert [c.node_id for c in ranking.candidates] == ["b", "a"]
    assert dict(ranking.candidates[0].breakdown) == {"prefer_b": 1.0}


# --- properties ----------------------------------------------------------------------

MODEL_POOL = ("tiny:1b", "TINY:1B", "embedder", "embedder:latest", "coder:1b", "big:70b")


@st.composite
def node_views(draw: st.DrawFn, node_id: str) -> NodeView:
    by_model = draw(st.dictionaries(st.sampled_from(MODEL_POOL), st.integers(0, 6), max_size=3))
    return node(
        node_id,
        models=tuple(draw(st.lists(st.sampled_from(MODEL_POOL), max_size=4))),
        loaded=tuple(draw(st.lists(st.sampled_from(MODEL_POOL), max_size=2))),
        status=draw(st.sampled_from(("online", "degraded", "offline"))),
        draining=draw(st.booleans()),
        backend_ok=draw(st.booleans()),
        num_parallel=draw(st.integers(1, 4)),
        by_model={k: v for k, v in by_model.items() if v},
    )


@st.composite
def snapshots(draw: st.DrawFn) -> FleetSnapshot:
    ids = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), max_size=8, unique=True))
    return FleetSnapshot(tuple(draw(node_views(i)) for i in ids), NOW)


@settings(max_examples=150, deadline=None)
@given(
    s=snapshots(),
    model=st.sampled_from(MODEL_POOL),
    exclude=st.frozensets(st.text("abcdefgh", min_size=1, max_size=3), max_size=2),
)
def test_property_eliminated_nodes_are_never_ranked(
    s: FleetSnapshot, model: str, exclude: frozenset[str]
) -> None:
    ranking = rank(s, model, NOW, W, exclude)
    ranked = [c.node_id for c in ranking.candidates]
    assert not set(ranked) & set(ranking.eliminated)
    assert sorted(ranked + list(ranking.eliminated)) == sorted(n.node_id for n in s.nodes)
    views = {n.node_id: n for n in s.nodes}
    for node_id in ranked:
        assert node_id not in exclude
        assert all(rule(views[node_id], model, NOW) is None for rule in DEFAULT_ELIMINATORS)
    totals = [c.total for c in ranking.candidates]
    assert totals == sorted(totals, reverse=True)
    assert all(-30.0 <= t <= 50.0 for t in totals)


@settings(max_examples=150, deadline=None)
@given(s=snapshots(), model=st.sampled_from(MODEL_POOL), seed=st.integers(0, 2**16))
def test_property_ranking_is_deterministic(s: FleetSnapshot, model: str, seed: int) -> None:
    def key(snapshot: FleetSnapshot) -> tuple[object, ...]:
        r = rank(snapshot, model, NOW, W)
        cands = tuple(
            (c.node_id, c.total, tuple(sorted(c.breakdown.items()))) for c in r.candidates
        )
        return cands, tuple(sorted(r.eliminated.items()))

    first = key(s)
    assert key(s) == first
    shuffled = list(s.nodes)
    random.Random(seed).shuffle(shuffled)
    assert key(FleetSnapshot(tuple(shuffled), NOW)) == first


def test_critical_memory_pressure_blocks_only_cold_loads() -> None:
    from herd.models import LoadedModel, ModelOnDisk, NodeHeartbeat, NodeView
    from herd.scoring.eliminate import critical_memory

    hb = NodeHeartbeat(
        node_id="n",
        hostname="n",
        backend_ok=True,
        memory_pressure="critical",
        models=(ModelOnDisk("hot:1b"), ModelOnDisk("cold:1b")),
        loaded=(LoadedModel("hot:1b"),),
    )
    node = NodeView(heartbeat=hb, status="online")
    assert critical_memory(node, "hot:1b", 0.0) is None
    assert critical_memory(node, "cold:1b", 0.0) == "critical memory pressure"
