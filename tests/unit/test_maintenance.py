"""Pure planners of the router upkeep (herd/routing/maintenance.py): rebalance, pre-warm, reap."""

from __future__ import annotations

from typing import Any

import pytest

from herd.domain import FleetSnapshot, LoadedModel, ModelOnDisk, NodeHeartbeat, NodeView
from herd.routing.fleet import InFlight
from herd.routing.maintenance import (
    Move,
    Warm,
    find_zombies,
    plan_prewarm,
    plan_rebalance,
    queued_by_model,
)

GB = 1024**3
NOW = 50_000.0


def node(
    node_id: str,
    *,
    on_disk: tuple[str, ...] = ("m:latest",),
    loaded: tuple[str, ...] = (),
    busy: dict[str, int] | None = None,
    parallel: int = 2,
    status: str = "online",
    draining: bool = False,
    backend_ok: bool = True,
    free_gb: float = 8,
    pressure: str = "normal",
    size_gb: float = 1,
) -> NodeView:
    heartbeat = NodeHeartbeat(
        node_id=node_id,
        hostname=node_id,
        backend_ok=backend_ok,
        memory_total=32 * GB,
        memory_available=int(free_gb * GB),
        memory_pressure=pressure,  # type: ignore[arg-type]
        models=tuple(ModelOnDisk(m, size=int(size_gb * GB)) for m in on_disk),
        loaded=tuple(LoadedModel(m, size=int(size_gb * GB)) for m in loaded),
        num_parallel=parallel,
        draining=draining,
    )
    busy = busy or {}
    return NodeView(
        heartbeat,
        status,  # type: ignore[arg-type]
        in_flight=sum(busy.values()),
        in_flight_by_model=busy,
    )


def snap(*nodes: NodeView) -> FleetSnapshot:
    return FleetSnapshot(tuple(nodes), NOW)


# --- rebalancer -----------------------------------------------------------------------


def test_moves_pending_to_a_hot_node_with_free_slots() -> None:
    busy = node("busy", loaded=("m:latest",), busy={"m:latest": 5})  # 3 pending
    idle = node("idle", loaded=("m:latest",), busy={"m:latest": 0})
    assert plan_rebalance(snap(busy, idle)) == [Move("busy", "idle", "m:latest", 2)]


def test_no_move_without_pending() -> None:
    full = node("full", loaded=("m:latest",), busy={"m:latest": 2})
    idle = node("idle", loaded=("m:latest",))
    assert plan_rebalance(snap(full, idle)) == []


@pytest.mark.parametrize(
    ("target_kw", "why"),
    [
        ({"loaded": ()}, "cold: a move would pay a model load"),
        ({"draining": True}, "draining"),
        ({"status": "degraded"}, "heartbeats late"),
        ({"backend_ok": False}, "backend down"),
        ({"busy": {"m:latest": 2}}, "no free slot"),
    ],
)
def test_never_moves_onto_an_unfit_target(target_kw: dict[str, Any], why: str) -> None:
    kw: dict[str, Any] = {"loaded": ("m:latest",)}
    kw.update(target_kw)
    busy = node("busy", loaded=("m:latest",), busy={"m:latest": 4})
    assert plan_rebalance(snap(busy, node("t", **kw))) == [], why


def test_largest_backlog_first_and_free_slots_not_oversold() -> None:
    a = node("a", loaded=("m:latest",), busy={"m:latest": 3})  # 1 pending
    b = node("b", loaded=("m:latest",), busy={"m:latest": 6})  # 4 pending
    t = node("t", loaded=("m:latest",), parallel=3)  # 3 free
    assert plan_rebalance(snap(a, b, t)) == [Move("b", "t", "m:latest", 3)]


def test_pending_counts_per_model() -> None:
    mixed = node(
        "mixed",
        on_disk=("m:latest", "x:latest"),
        loaded=("m:latest", "x:latest"),
        busy={"m:latest": 2, "x:latest": 3},
    )
    t = node("t", on_disk=("x:latest",), loaded=("x:latest",))
    assert plan_rebalance(snap(mixed, t)) == [Move("mixed", "t", "x:latest", 1)]


# --- pre-warm -------------------------------------------------------------------------


def test_queued_counts_node_pending_and_holding() -> None:
    s = snap(node("a", loaded=("m:latest",), busy={"m:latest": 5}))
    assert queued_by_model(s, {"M": 2, "other:1b": 0}) == {"m:latest": 5}


def test_prewarm_picks_the_runner_up_with_most_free_memory() -> None:
    hot = node("hot", loaded=("m:latest",), busy={"m:latest": 6})
    small = node("small", free_gb=4)
    big = node("big", free_gb=20)
    no_model = node("none", on_disk=(), free_gb=64)
    warms = plan_prewarm(snap(hot, small, big, no_model), {"m:latest": 4}, 4, NOW, {}, 60)
    assert warms == [Warm("big", "m:latest", 4)]


@pytest.mark.parametrize(
    ("queued", "threshold", "last", "expected"),
    [
        (3, 4, {}, []),  # below the threshold
        (9, 0, {}, []),  # threshold 0 turns pre-warm off
        (4, 4, {("cand", "m:latest"): NOW - 10}, []),  # warmed 10 s ago: cooldown 60 s
        (4, 4, {("cand", "m:latest"): NOW - 61}, [Warm("cand", "m:latest", 4)]),
    ],
)
def test_prewarm_threshold_and_cooldown(
    queued: int, threshold: int, last: dict[tuple[str, str], float], expected: list[Warm]
) -> None:
    s = snap(node("hot", loaded=("m:latest",)), node("cand"))
    assert plan_prewarm(s, {"m:latest": queued}, threshold, NOW, last, 60) == expected


@pytest.mark.parametrize(
    "kw",
    [
        {"free_gb": 0.5},  # does not fit
        {"pressure": "critical"},
        {"draining": True},
        {"status": "offline"},
        {"loaded": ("m:latest",)},  # already hot: nothing to warm
    ],
)
def test_prewarm_skips_unfit_nodes(kw: dict[str, Any]) -> None:
    assert plan_prewarm(snap(node("c", **kw)), {"m:latest": 9}, 1, NOW, {}, 0) == []


# --- zombie reaper ----------------------------------------------------------------------


def test_zombies_are_entries_older_than_the_timeout() -> None:
    old = InFlight("old", "a", "m:latest", NOW - 901)
    young = InFlight("young", "a", "m:latest", NOW - 10)
    assert find_zombies([old, young], NOW, 900) == [old]
