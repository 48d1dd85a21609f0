"""Scoring signals (herd/scoring/signals.py): one table per signal, plus their ranges."""

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
from herd.scoring import RouteQuery, ScoringWeights
from herd.scoring.fleet_context import build_context
from herd.scoring.signals import (
    DEFAULT_SIGNALS,
    Signal,
    availability_trend,
    context_fit,
    latency_history,
    memory_fit,
    queue_depth,
    role_affinity,
    thermal,
)


def points(
    signal: Signal,
    view: NodeView,
    query: RouteQuery | str = "m:1b",
    perf: PerfStats = EMPTY_PERF,
    w: ScoringWeights = W,
    fleet: tuple[NodeView, ...] = (),
) -> float:
    """The signal for ``view`` in a fleet of ``view`` plus ``fleet``."""
    q = query if isinstance(query, RouteQuery) else RouteQuery(query)
    ctx = build_context(snap(view, *fleet, perf=perf), q, w)
    return signal(view, q, ctx, NOW, w)


# --- thermal -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "models", "loaded", "expected"),
    [
        ("tiny:1b", ("tiny:1b",), ("tiny:1b",), 50.0),
        ("tiny:1b", ("tiny:1b",), (), 5.0),  # on disk only: cold
        ("TINY:1B", (), ("tiny:1b",), 50.0),  # case-insensitive
        ("tiny:1b", (), ("Tiny:1B",), 50.0),
        ("embedder", (), ("embedder:latest",), 50.0),  # missing tag = latest
        ("embedder:latest", (), ("embedder",), 50.0),
        ("embedder:v2", (), ("embedder",), 0.0),
        ("tiny:2b", (), ("tiny:1b",), 0.0),
        ("tiny:1b", (), ("other:1b", "tiny:1b"), 50.0),
    ],
)
def test_thermal_hot_and_on_disk(
    model: str, models: tuple[str, ...], loaded: tuple[str, ...], expected: float
) -> None:
    assert points(thermal, node("n", models=models, loaded=loaded), model) == expected


@pytest.mark.parametrize(
    ("unloaded_ago", "on_disk", "expected"),
    [
        (0.0, True, 25.0),  # just unloaded: the full warm bonus
        (300.0, True, 12.5),  # half the window: half
        (540.0, True, 5.0),  # warm bonus (2.5) below the on-disk bonus: the larger counts
        (600.0, True, 5.0),  # past the window: on disk
        (5000.0, True, 5.0),
        (300.0, False, 12.5),  # warm counts without a disk entry (llama.cpp nodes)
        (-10.0, True, 25.0),  # a clock a little behind: still just unloaded
    ],
)
def test_thermal_warm_decays_over_the_window(
    unloaded_ago: float, on_disk: bool, expected: float
) -> None:
    view = node("n", models=("m:1b",) if on_disk else ())
    perf = perf_of({("n", "m:1b"): ModelPerf(unloaded_at=NOW - unloaded_ago)})
    assert points(thermal, view, perf=perf) == pytest.approx(expected)


def test_thermal_follows_the_weights() -> None:
    w = ScoringWeights(thermal_hot=7.0, thermal_disk=1.0, thermal_warm=3.0, warm_window_s=0)
    assert points(thermal, node("n", loaded=("m:1b",)), w=w) == 7.0
    assert points(thermal, node("n", models=("m:1b",)), w=w) == 1.0
    perf = perf_of({("n", "m:1b"): ModelPerf(unloaded_at=NOW)})
    assert points(thermal, node("n", models=("m:1b",)), perf=perf, w=w) == 1.0  # no window


# --- memory fit ----------------------------------------------------------------------


def disk(size_gib: float) -> tuple[ModelOnDisk, ...]:
    return (ModelOnDisk("m:1b", size=int(size_gib * GIB)),)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (node("n", models=disk(1)), 0.0),  # memory not reported
        (node("n", loaded=("m:1b",), memory_total=16 * GIB, memory_available=8 * GIB), 20.0),
        (node("n", loaded=("m:1b",), memory_total=16 * GIB, memory_available=4 * GIB), 10.0),
        (node("n", loaded=("m:1b",), memory_total=16 * GIB, memory_available=12 * GIB), 20.0),
        (node("n", models=disk(4), memory_total=16 * GIB, memory_available=8 * GIB), 10.0),
        (node("n", models=disk(8), memory_total=16 * GIB, memory_available=8 * GIB), 0.0),
        (node("n", models=disk(12), memory_total=16 * GIB, memory_available=8 * GIB), 0.0),
        # The capacity ceiling limits the headroom: 6 GiB allowed, 2 GiB used by x.
        (
            node(
                "n",
                models=disk(2),
                loaded=(LoadedModel("x:1b", size=2 * GIB),),
                memory_total=16 * GIB,
                memory_available=12 * GIB,
                memory_ceiling=6 * GIB,
            ),
            5.0,
        ),
    ],
)
def test_memory_fit(view: NodeView, expected: float) -> None:
    assert points(memory_fit, view) == pytest.approx(expected)


def test_memory_fit_uses_the_measured_size() -> None:
    view = node("n", models=disk(2), memory_total=16 * GIB, memory_available=8 * GIB)
    assert points(memory_fit, view) == pytest.approx(15.0)
    perf = perf_of({("n", "m:1b"): ModelPerf(resident_bytes=6 * GIB)})
    assert points(memory_fit, view, perf=perf) == pytest.approx(5.0)


# --- queue depth ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_parallel", "by_model", "expected"),
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
def test_queue_depth(num_parallel: int, by_model: dict[str, int], expected: float) -> None:
    view = node("n", models=("m:1b",), num_parallel=num_parallel, by_model=by_model)
    assert points(queue_depth, view) == expected


def test_queue_depth_matches_names_like_ollama_and_follows_the_weights() -> None:
    assert points(queue_depth, node("n", by_model={"embedder:latest": 1}), "EMBEDDER") == -10.0
    w = ScoringWeights(queue_penalty=100.0, queue_step=3.0)
    assert points(queue_depth, node("n", by_model={"m:1b": 5}), w=w) == -15.0


# --- latency history -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mine", "best", "expected"),
    [
        (None, None, 0.0),  # nothing learned anywhere
        (None, 1.0, 0.0),  # this node never served it: no penalty (it gets to try)
        (1.0, 1.0, 0.0),  # the best node
        (1.5, 1.0, -12.5),
        (2.0, 1.0, -25.0),  # twice the best: the full penalty
        (9.0, 1.0, -25.0),  # capped
        (0.5, 1.0, 0.0),  # faster than a stale "best": no bonus
    ],
)
def test_latency_history(mine: float | None, best: float | None, expected: float) -> None:
    models = {("n", "m:1b"): ModelPerf(samples=5, p75_s=mine)} if mine is not None else {}
    fleet = {"m:1b": FleetModelPerf(best_p75_s=best)} if best is not None else {}
    perf = perf_of(models, fleet=fleet)
    assert points(latency_history, node("n", loaded=("m:1b",)), perf=perf) == expected


# --- role affinity -------------------------------------------------------------------


def machine(node_id: str, memory_gib: int, model_gib: float) -> NodeView:
    return node(
        node_id,
        models=(ModelOnDisk("m:1b", size=int(model_gib * GIB)),),
        memory_total=memory_gib * GIB,
        memory_available=memory_gib * GIB // 2,
    )


@pytest.mark.parametrize(
    ("model_gib", "expected"),
    [
        # A fleet of 8, 32 and 128 GiB machines: log positions 0, 0.5, 1.
        (1.0, {"small": 15.0, "mid": 7.5, "big": 0.0}),  # small model: the small machine
        (2.0, {"small": 15.0, "mid": 7.5, "big": 0.0}),
        (40.0, {"small": 0.0, "mid": 7.5, "big": 15.0}),  # large model: the big machine
        (400.0, {"small": 0.0, "mid": 7.5, "big": 15.0}),
    ],
)
def test_role_affinity(model_gib: float, expected: dict[str, float]) -> None:
    fleet = (
        machine("small", 8, model_gib),
        machine("mid", 32, model_gib),
        machine("big", 128, model_gib),
    )
    got = {v.node_id: points(role_affinity, v, fleet=fleet) for v in fleet}
    assert got == pytest.approx(expected)


def test_role_affinity_middle_sized_model_and_unknowns() -> None:
    # sqrt(2 * 40) GiB sits in the middle of the model scale: the mid machine fits best.
    mid_model = (2 * 40) ** 0.5
    fleet = (
        machine("small", 8, mid_model),
        machine("mid", 32, mid_model),
        machine("big", 128, mid_model),
    )
    got = {v.node_id: points(role_affinity, v, fleet=fleet) for v in fleet}
    assert got == pytest.approx({"small": 7.5, "mid": 15.0, "big": 7.5})
    # One machine, or all alike: the node sits in the middle.
    assert points(role_affinity, machine("only", 16, 1.0)) == pytest.approx(7.5)
    # Unknown memory or model size: half.
    assert points(role_affinity, node("n", models=("m:1b",))) == 7.5
    no_size = node("n", models=("m:1b",), memory_total=16 * GIB)
    assert points(role_affinity, no_size) == 7.5


# --- availability trend --------------------------------------------------------------


@pytest.mark.parametrize(
    ("now_a", "next_a", "expected"),
    [
        (None, None, 0.0),  # not learning: a dedicated machine
        (1.0, 1.0, 0.0),
        (1.0, None, 0.0),
        (0.5, None, -5.0),
        (None, 0.0, -10.0),
        (1.0, 0.2, -8.0),  # free now, owner back soon: the trend counts
        (0.3, 0.9, -7.0),  # busy now
        (1.7, -2.0, -10.0),  # out-of-range reports are clamped
        (1.7, None, 0.0),
    ],
)
def test_availability_trend(now_a: float | None, next_a: float | None, expected: float) -> None:
    view = node("n", models=("m:1b",), availability=now_a, availability_next=next_a)
    assert points(availability_trend, view) == pytest.approx(expected)


# --- context fit ---------------------------------------------------------------------


def window(tokens: int) -> tuple[LoadedModel, ...]:
    return (LoadedModel("m:1b", context_length=tokens),)


@pytest.mark.parametrize(
    ("view", "query", "expected"),
    [
        (node("n", loaded=window(4096)), RouteQuery("m:1b", prompt_tokens=1000), 15.0),
        (node("n", loaded=window(4096)), RouteQuery("m:1b", prompt_tokens=4096), 15.0),
        (node("n", loaded=window(4096)), RouteQuery("m:1b", prompt_tokens=5000), 0.0),
        # The answer takes room too.
        (
            node("n", loaded=window(4096)),
            RouteQuery("m:1b", prompt_tokens=3000, num_predict=2000),
            0.0,
        ),
        # A loaded model runs in its loaded window, whatever num_ctx says.
        (node("n", loaded=window(4096)), RouteQuery("m:1b", prompt_tokens=5000, num_ctx=8192), 0.0),
        # A cold load uses the requested num_ctx.
        (node("n", models=("m:1b",)), RouteQuery("m:1b", prompt_tokens=5000, num_ctx=8192), 15.0),
        (node("n", models=("m:1b",)), RouteQuery("m:1b", prompt_tokens=9000, num_ctx=8192), 0.0),
        # Unknown window: half.
        (node("n", models=("m:1b",)), RouteQuery("m:1b", prompt_tokens=10), 7.5),
        (node("n", loaded=window(0)), RouteQuery("m:1b", prompt_tokens=10), 7.5),
    ],
)
def test_context_fit(view: NodeView, query: RouteQuery, expected: float) -> None:
    assert points(context_fit, view, query) == expected


# --- ranges --------------------------------------------------------------------------

RANGES = {
    "thermal": (0.0, 50.0),
    "memory_fit": (0.0, 20.0),
    "queue_depth": (-30.0, 0.0),
    "latency_history": (-25.0, 0.0),
    "role_affinity": (0.0, 15.0),
    "availability_trend": (-10.0, 0.0),
    "context_fit": (0.0, 15.0),
}


def test_every_default_signal_has_a_documented_range() -> None:
    assert set(RANGES) == set(DEFAULT_SIGNALS)
    for name, fn in DEFAULT_SIGNALS.items():
        low, high = RANGES[name]
        assert f"Range [{low:g}, {high:g}]" in (fn.__doc__ or ""), name
