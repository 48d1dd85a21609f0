"""FleetState (herd/routing/fleet.py): statuses by heartbeat age, Ray node deaths, in-flight
book-keeping, snapshot caching and known_model. ``now`` is always passed explicitly."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from herd.domain import LoadedModel, ModelOnDisk, NodeHeartbeat
from herd.routing.fleet import FleetState, InFlight

TIMEOUT = 15.0
OFFLINE = 30.0
T0 = 1_000.0


def hb(
    node_id: str,
    *,
    ray: str | None = None,
    models: tuple[str, ...] = ("tiny:1b",),
    loaded: tuple[str, ...] = (),
    draining: bool = False,
) -> NodeHeartbeat:
    return NodeHeartbeat(
        node_id=node_id,
        hostname=node_id,
        ray_node_id=ray,
        backend_ok=True,
        models=tuple(ModelOnDisk(m) for m in models),
        loaded=tuple(LoadedModel(m) for m in loaded),
        draining=draining,
    )


@pytest.fixture
def fleet() -> FleetState:
    return FleetState(heartbeat_timeout=TIMEOUT, heartbeat_offline=OFFLINE)


# --- status by heartbeat age ---------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "status"),
    [
        (0.0, "online"),
        (1.0, "online"),
        (TIMEOUT, "online"),  # inclusive
        (TIMEOUT + 0.01, "degraded"),
        (OFFLINE - 1, "degraded"),
        (OFFLINE, "degraded"),  # inclusive
        (OFFLINE + 0.01, "offline"),
        (10 * OFFLINE, "offline"),
    ],
)
def test_status_by_heartbeat_age(fleet: FleetState, age: float, status: str) -> None:
    fleet.heartbeat(hb("a"), T0)
    assert fleet.status("a", T0 + age) == status
    view = fleet.snapshot(T0 + age).nodes[0]
    assert view.status == status and view.last_seen == T0


def test_a_new_heartbeat_refreshes_the_age(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a"), T0)
    assert fleet.status("a", T0 + 100) == "offline"
    fleet.heartbeat(hb("a"), T0 + 100)
    assert fleet.status("a", T0 + 100) == "online"
    assert fleet.status("a", T0 + 100 + TIMEOUT + 1) == "degraded"


def test_unknown_node_status_raises(fleet: FleetState) -> None:
    with pytest.raises(KeyError):
        fleet.status("nope", T0)


# --- Ray node death ------------------------------------------------------------------


def test_ray_node_death_marks_its_nodes_offline_at_once(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a", ray="ray-1"), T0)
    fleet.heartbeat(hb("a2", ray="ray-1"), T0)
    fleet.heartbeat(hb("b", ray="ray-2"), T0)
    fleet.heartbeat(hb("c"), T0)

    assert sorted(fleet.mark_ray_node_dead("ray-1", T0)) == ["a", "a2"]
    assert fleet.status("a", T0) == "offline"
    assert fleet.status("a2", T0) == "offline"
    assert fleet.status("b", T0) == "online"
    assert fleet.status("c", T0) == "online"
    statuses = {v.node_id: v.status for v in fleet.snapshot(T0).nodes}
    assert statuses == {"a": "offline", "a2": "offline", "b": "online", "c": "online"}

    assert fleet.mark_ray_node_dead("ray-1", T0 + 1) == []  # already dead
    assert fleet.mark_ray_node_dead("ray-unknown", T0 + 1) == []


def test_a_heartbeat_from_a_new_ray_node_revives_the_node(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a", ray="ray-1"), T0)
    fleet.mark_ray_node_dead("ray-1", T0 + 1)
    assert fleet.status("a", T0 + 2) == "offline"
    # An orphaned actor on the dead Ray node may still beat: it must not revive the node.
    assert fleet.heartbeat(hb("a", ray="ray-1"), T0 + 2.5) is False
    assert fleet.status("a", T0 + 2.5) == "offline"
    # Redeployed on a live Ray node (Ray never reuses node ids): back online.
    assert fleet.heartbeat(hb("a", ray="ray-2"), T0 + 3) is True
    assert fleet.status("a", T0 + 3) == "online"
    assert fleet.snapshot(T0 + 3).nodes[0].status == "online"
    # and it can die again
    assert fleet.mark_ray_node_dead("ray-2", T0 + 4) == ["a"]
    assert fleet.status("a", T0 + 4) == "offline"


def test_remove_forgets_a_node(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a"), T0)
    fleet.heartbeat(hb("b"), T0)
    fleet.remove("a")
    fleet.remove("a")  # idempotent
    assert fleet.node_ids() == ["b"]
    assert fleet.heartbeat_of("a") is None
    assert [v.node_id for v in fleet.snapshot(T0).nodes] == ["b"]


# --- in-flight book-keeping ----------------------------------------------------------


def test_begin_and_end_count_per_node_and_model(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a"), T0)
    fleet.heartbeat(hb("b"), T0)
    fleet.begin("r1", "a", "tiny:1b", T0)
    fleet.begin("r2", "a", "TINY:1B", T0 + 1)  # same model, canonical key
    fleet.begin("r3", "a", "embedder", T0 + 2)
    fleet.begin("r4", "b", "tiny:1b", T0 + 3)

    views = {v.node_id: v for v in fleet.snapshot(T0 + 3).nodes}
    assert views["a"].in_flight == 3
    assert dict(views["a"].in_flight_by_model) == {"tiny:1b": 2, "embedder:latest": 1}
    assert views["b"].in_flight == 1
    assert dict(views["b"].in_flight_by_model) == {"tiny:1b": 1}
    assert {e.request_id for e in fleet.in_flight()} == {"r1", "r2", "r3", "r4"}

    assert fleet.end("r2") == InFlight("r2", "a", "tiny:1b", T0 + 1)
    assert fleet.end("r3") == InFlight("r3", "a", "embedder:latest", T0 + 2)
    views = {v.node_id: v for v in fleet.snapshot(T0 + 3).nodes}
    assert views["a"].in_flight == 1
    assert dict(views["a"].in_flight_by_model) == {"tiny:1b": 1}  # zero counts removed

    assert fleet.end("r2") is None  # twice: no-op
    assert fleet.end("never") is None
    fleet.end("r1")
    fleet.end("r4")
    views = {v.node_id: v for v in fleet.snapshot(T0 + 3).nodes}
    assert views["a"].in_flight == 0 and dict(views["a"].in_flight_by_model) == {}
    assert views["b"].in_flight == 0
    assert fleet.in_flight() == []


def test_begin_on_a_node_that_left_is_tolerated(fleet: FleetState) -> None:
    fleet.begin("r1", "ghost", "tiny:1b", T0)
    assert [e.node_id for e in fleet.in_flight()] == ["ghost"]
    assert fleet.end("r1") is not None
    fleet.heartbeat(hb("a"), T0)
    fleet.begin("r2", "a", "tiny:1b", T0)
    fleet.remove("a")
    assert fleet.end("r2") is not None  # node gone meanwhile


def test_in_flight_survives_heartbeats(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a"), T0)
    fleet.begin("r1", "a", "tiny:1b", T0)
    fleet.heartbeat(hb("a", loaded=("tiny:1b",)), T0 + 1)
    assert fleet.snapshot(T0 + 1).nodes[0].in_flight == 1


# --- snapshot caching ----------------------------------------------------------------


def test_snapshot_is_cached_while_nothing_changes(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a"), T0)
    first = fleet.snapshot(T0)
    assert fleet.snapshot(T0) is first
    assert fleet.snapshot(T0 + 0.1) is first  # same 250 ms bucket


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.heartbeat(hb("a", loaded=("tiny:1b",)), T0),
        lambda f: f.heartbeat(hb("b"), T0),
        lambda f: f.begin("r1", "a", "tiny:1b", T0),
        lambda f: f.mark_ray_node_dead("ray-1", T0),
        lambda f: f.remove("a"),
    ],
)
def test_snapshot_is_rebuilt_on_change(
    fleet: FleetState, change: Callable[[FleetState], object]
) -> None:
    fleet.heartbeat(hb("a", ray="ray-1"), T0)
    first = fleet.snapshot(T0)
    version = fleet.version
    change(fleet)
    assert fleet.version > version
    second = fleet.snapshot(T0)
    assert second is not first
    assert fleet.snapshot(T0) is second


def test_snapshot_is_rebuilt_on_end(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a"), T0)
    fleet.begin("r1", "a", "tiny:1b", T0)
    first = fleet.snapshot(T0)
    fleet.end("r1")
    assert fleet.snapshot(T0) is not first
    assert fleet.snapshot(T0).nodes[0].in_flight == 0


def test_no_op_inputs_keep_the_cached_snapshot(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a", ray="ray-1"), T0)
    first = fleet.snapshot(T0)
    fleet.mark_ray_node_dead("ray-other", T0)
    fleet.remove("nope")
    fleet.end("nope")
    assert fleet.snapshot(T0) is first


def test_snapshot_is_rebuilt_as_time_passes(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a"), T0)
    first = fleet.snapshot(T0)
    later = fleet.snapshot(T0 + TIMEOUT + 1)
    assert later is not first
    assert later.taken_at == T0 + TIMEOUT + 1
    assert later.nodes[0].status == "degraded"
    assert fleet.snapshot(T0 + OFFLINE + 1).nodes[0].status == "offline"


def test_snapshot_is_sorted_by_node_id_and_frozen(fleet: FleetState) -> None:
    for name in ("c", "a", "b"):
        fleet.heartbeat(hb(name), T0)
    s = fleet.snapshot(T0)
    assert [v.node_id for v in s.nodes] == ["a", "b", "c"]
    assert isinstance(s.nodes, tuple)
    fleet.begin("r1", "a", "tiny:1b", T0)
    assert s.nodes[0].in_flight == 0  # an old snapshot does not move under a reader


# --- known_model ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "known"),
    [
        ("tiny:1b", True),
        ("TINY:1B", True),
        ("embedder", True),  # on disk as embedder:latest
        ("embedder:latest", True),
        ("hot:1b", True),  # loaded only
        ("tiny:2b", False),
        ("nothing", False),
    ],
)
def test_known_model(fleet: FleetState, model: str, known: bool) -> None:
    fleet.heartbeat(hb("a", models=("tiny:1b", "embedder:latest")), T0)
    fleet.heartbeat(hb("b", models=(), loaded=("hot:1b",)), T0)
    assert fleet.known_model(model) is known


def test_known_model_includes_offline_nodes_but_not_removed_ones(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a", ray="ray-1", models=("rare:1b",)), T0)
    fleet.mark_ray_node_dead("ray-1", T0)
    assert fleet.known_model("rare:1b")  # offline: a 503 later, not a 404
    fleet.remove("a")
    assert not fleet.known_model("rare:1b")


def test_heartbeat_of_returns_the_latest(fleet: FleetState) -> None:
    fleet.heartbeat(hb("a"), T0)
    newer = hb("a", draining=True)
    fleet.heartbeat(newer, T0 + 1)
    assert fleet.heartbeat_of("a") is newer
    assert fleet.node_ids() == ["a"]
