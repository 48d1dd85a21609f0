"""Eliminators (herd/scoring/eliminate.py): one table per rule, then eliminate()."""

from __future__ import annotations

import pytest
from test_scoring import GIB, NOW, W, node, perf_of, snap

from herd.domain import (
    EMPTY_PERF,
    FleetModelPerf,
    LoadedModel,
    ModelOnDisk,
    ModelPerf,
    NodeView,
    PerfStats,
)
from herd.scoring import RouteQuery
from herd.scoring.eliminate import (
    DEFAULT_ELIMINATORS,
    Eliminator,
    backend_down,
    critical_memory,
    draining,
    eliminate,
    missing_model,
    model_does_not_fit,
    offline,
    paused_by_capacity_learning,
)
from herd.scoring.fleet_context import build_context


def check(
    rule: Eliminator, view: NodeView, model: str = "m:1b", perf: PerfStats = EMPTY_PERF
) -> str | None:
    """Run one rule with the context a one-node fleet (with ``perf``) gives."""
    s = snap(view, perf=perf)
    query = RouteQuery(model)
    return rule(view, query, build_context(s, query, W), NOW, W)


M = ("m:1b",)


@pytest.mark.parametrize(
    ("rule", "view", "reason"),
    [
        (offline, node("n", models=M, status="offline"), "offline"),
        (offline, node("n", models=M, status="degraded"), None),
        (offline, node("n", models=M), None),
        (draining, node("n", models=M, draining=True), "draining"),
        (draining, node("n", models=M), None),
        (backend_down, node("n", models=M, backend_ok=False), "backend down"),
        (backend_down, node("n", models=M), None),
        (
            paused_by_capacity_learning,
            node("n", models=M, paused=True),
            "paused by capacity learning",
        ),
        (paused_by_capacity_learning, node("n", models=M, availability=0.0), None),
        (paused_by_capacity_learning, node("n", models=M), None),
        (missing_model, node("n", models=("other:1b",)), "model not on node"),
        (missing_model, node("n"), "model not on node"),
        (missing_model, node("n", models=M), None),
        (missing_model, node("n", loaded=M), None),  # loaded only still counts
        (missing_model, node("n", models=("M:1B",)), None),  # case-insensitive
        (missing_model, node("n", models=("m:2b",)), "model not on node"),  # other tag
        (
            critical_memory,
            node("n", models=M, memory_pressure="critical"),
            "critical memory pressure",
        ),
        (critical_memory, node("n", loaded=M, memory_pressure="critical"), None),  # hot: no load
        (critical_memory, node("n", models=M, memory_pressure="warn"), None),
        (critical_memory, node("n", models=M), None),
    ],
)
def test_each_simple_eliminator_and_its_reason(
    rule: Eliminator, view: NodeView, reason: str | None
) -> None:
    assert check(rule, view) == reason


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
    assert (check(missing_model, node("n", models=(on_disk,)), model) is None) is present


def disk(size_gib: float) -> tuple[ModelOnDisk, ...]:
    return (ModelOnDisk("m:1b", size=int(size_gib * GIB)),)


def hot(size_gib: float, name: str = "m:1b") -> LoadedModel:
    return LoadedModel(name, size=int(size_gib * GIB))


FIT = "model does not fit in memory"


@pytest.mark.parametrize(
    ("view", "perf", "reason"),
    [
        # File size against free memory.
        (
            node("n", models=disk(4), memory_total=16 * GIB, memory_available=8 * GIB),
            EMPTY_PERF,
            None,
        ),
        (
            node("n", models=disk(10), memory_total=16 * GIB, memory_available=8 * GIB),
            EMPTY_PERF,
            FIT,
        ),
        (
            node("n", models=disk(8), memory_total=16 * GIB, memory_available=8 * GIB),
            EMPTY_PERF,
            None,
        ),
        # A loaded model always fits, whatever memory says.
        (node("n", loaded=(hot(40),), memory_total=16 * GIB, memory_available=0), EMPTY_PERF, None),
        # Unknown memory (no report) or unknown size keeps the node.
        (node("n", models=disk(100)), EMPTY_PERF, None),
        (node("n", models=disk(0), memory_total=16 * GIB, memory_available=0), EMPTY_PERF, None),
        # Idle loaded models can be evicted by Ollama: their memory counts as free ...
        (
            node(
                "n",
                models=disk(10),
                loaded=(hot(6, "x:1b"),),
                memory_total=16 * GIB,
                memory_available=5 * GIB,
            ),
            EMPTY_PERF,
            None,
        ),
        # ... but not while requests for them are in flight.
        (
            node(
                "n",
                models=disk(10),
                loaded=(hot(6, "x:1b"),),
                memory_total=16 * GIB,
                memory_available=5 * GIB,
                by_model={"x:1b": 1},
            ),
            EMPTY_PERF,
            FIT,
        ),
        # The capacity learner's ceiling caps what herd may fill.
        (
            node(
                "n",
                models=disk(6),
                memory_total=64 * GIB,
                memory_available=60 * GIB,
                memory_ceiling=4 * GIB,
            ),
            EMPTY_PERF,
            FIT,
        ),
        (
            node(
                "n",
                models=disk(6),
                loaded=(hot(2, "x:1b"),),
                memory_total=64 * GIB,
                memory_available=60 * GIB,
                memory_ceiling=8 * GIB,
                by_model={"x:1b": 1},
            ),
            EMPTY_PERF,
            None,
        ),
        # The measured resident size on this node beats the file size ...
        (
            node("n", models=disk(4), memory_total=16 * GIB, memory_available=8 * GIB),
            perf_of({("n", "m:1b"): ModelPerf(resident_bytes=9 * GIB)}),
            FIT,
        ),
        # ... and so does the fleet's smallest measured size when this node never ran it.
        (
            node("n", models=disk(10), memory_total=16 * GIB, memory_available=8 * GIB),
            perf_of({}, fleet={"m:1b": FleetModelPerf(resident_bytes=7 * GIB)}),
            None,
        ),
    ],
)
def test_model_does_not_fit(view: NodeView, perf: PerfStats, reason: str | None) -> None:
    assert check(model_does_not_fit, view, perf=perf) == reason


def test_eliminate_records_a_reason_per_node_and_keeps_survivors_in_order() -> None:
    nodes = (
        node("a", models=M),
        node("b", models=M, status="offline"),
        node("c", models=M, draining=True),
        node("d", models=M, backend_ok=False),
        node("e", models=("x:1b",)),
        node("f", models=M),
        node("g", models=M, status="degraded"),
        node("h", models=M, paused=True),
        node("i", models=disk(10), memory_total=16 * GIB, memory_available=GIB),
        node("j", models=M, memory_pressure="critical"),
    )
    query = RouteQuery("m:1b")
    ctx = build_context(snap(*nodes), query, W)
    survivors, reasons = eliminate(nodes, query, ctx, NOW, W, exclude=frozenset({"f"}))
    assert [n.node_id for n in survivors] == ["a", "g"]
    assert reasons == {
        "b": "offline",
        "c": "draining",
        "d": "backend down",
        "e": "model not on node",
        "f": "excluded after failure",
        "h": "paused by capacity learning",
        "i": FIT,
        "j": "critical memory pressure",
    }


@pytest.mark.parametrize(
    ("view", "exclude", "reason"),
    [
        # The first failing rule wins, in DEFAULT_ELIMINATORS order.
        (node("n", status="offline", draining=True, backend_ok=False), frozenset(), "offline"),
        (node("n", draining=True, backend_ok=False, paused=True), frozenset(), "draining"),
        (node("n", backend_ok=False, paused=True), frozenset(), "backend down"),
        (node("n", paused=True), frozenset(), "paused by capacity learning"),
        (node("n", memory_pressure="critical"), frozenset(), "model not on node"),
        (
            node("n", models=disk(10), memory_total=16 * GIB, memory_pressure="critical"),
            frozenset(),
            FIT,
        ),
        # Exclusion is checked before any rule.
        (node("n", status="offline"), frozenset({"n"}), "excluded after failure"),
    ],
)
def test_eliminate_reason_precedence(view: NodeView, exclude: frozenset[str], reason: str) -> None:
    query = RouteQuery("m:1b")
    ctx = build_context(snap(view), query, W)
    _, fused = eliminate((view,), query, ctx, NOW, W, exclude)
    rules = (*DEFAULT_ELIMINATORS,)  # equal but not the same tuple: no fused path
    assert rules is not DEFAULT_ELIMINATORS
    _, one_by_one = eliminate((view,), query, ctx, NOW, W, exclude, rules)
    assert fused == one_by_one == {"n": reason}


def test_eliminate_with_custom_rules() -> None:
    query = RouteQuery("m:1b")
    view = node("a", status="offline")
    ctx = build_context(snap(view), query, W)
    survivors, reasons = eliminate((view,), query, ctx, NOW, W, rules=(lambda *a: None,))
    assert [n.node_id for n in survivors] == ["a"] and reasons == {}
    survivors, reasons = eliminate((view,), query, ctx, NOW, W, rules=(lambda *a: "nope",))
    assert survivors == [] and reasons == {"a": "nope"}
