"""Routing in the ingress (herd/routing/mirror.py) against a real RouterCore, without Ray.

The FleetMirror mirrors the core's view, decides with the same pipeline, books its own
attempts on top of the mirror, and reports them in numbered batches the core applies."""

from __future__ import annotations

from typing import Any

import pytest
from test_router_core import T0, Clock, hb, make_settings

from herd.domain import Outcome
from herd.routing.core import RouterCore
from herd.routing.decide import weights_from
from herd.routing.events import Begin
from herd.routing.mirror import FleetMirror


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(clock: Clock) -> RouterCore:
    core = RouterCore(make_settings(), clock=clock)
    core.heartbeat(hb("a", models=("tiny:1b",), loaded=("tiny:1b",)))
    core.heartbeat(hb("b", models=("tiny:1b",), loaded=("tiny:1b",)))
    core.heartbeat(hb("c", models=("big:70b", "tiny:1b")))
    return core


def make_local(core: RouterCore, **kw: Any) -> FleetMirror:
    s = core.settings
    return FleetMirror("ingress-1", weights_from(s), s.heartbeat_timeout, s.heartbeat_offline, **kw)


def sync(local: FleetMirror, core: RouterCore, now: float) -> None:
    """One refresh: what the refresher task does with ``router.view``."""
    data = core.view(local.epoch, local.version)
    if data is None:
        local.confirm(now)
    else:
        local.load(data, now)


def send(local: FleetMirror, core: RouterCore) -> None:
    """One report: what the reporter task does with ``router.report``."""
    batch = local.take_batch()
    if batch is not None:
        core.report(local.source, *batch)


def ok(request_id: str, node: str, model: str = "tiny:1b") -> Outcome:
    return Outcome(request_id=request_id, node_id=node, model=model, ok=True, started=True)


def test_no_view_means_ask_the_router(core: RouterCore) -> None:
    local = make_local(core)
    assert not local.fresh(T0)
    assert local.try_route("r1", ["tiny:1b"], T0) is None
    assert local.pending == 0


def test_same_decision_as_the_router(core: RouterCore) -> None:
    local = make_local(core)
    sync(local, core, T0)
    mine = local.try_route("r1", ["tiny:1b"], T0)
    theirs = core.try_route("r2", ["tiny:1b"])
    assert mine is not None and theirs is not None
    assert (mine.node_id, mine.score, mine.candidates, mine.eliminated) == (
        theirs.node_id,
        theirs.score,
        theirs.candidates,
        theirs.eliminated,
    )


def test_a_burst_spreads_before_any_report(core: RouterCore) -> None:
    local = make_local(core)
    sync(local, core, T0)
    nodes = [local.try_route(f"r{i}", ["tiny:1b"], T0) for i in range(2)]
    assert sorted(d.node_id for d in nodes if d) == ["a", "b"]
    assert local.pending == 2


def test_reports_reach_the_router_book_and_counters(core: RouterCore) -> None:
    local = make_local(core)
    sync(local, core, T0)
    d = local.try_route("r1", ["tiny:1b"], T0)
    assert d is not None
    send(local, core)
    assert [(e.request_id, e.node_id) for e in core.fleet.in_flight()] == [("r1", d.node_id)]
    assert core.counters["requests"] == 1
    assert core.status()["queue"]["in_flight"] == 1
    local.end(ok("r1", d.node_id), T0)
    send(local, core)
    assert core.fleet.in_flight() == [] and core.counters["ok"] == 1
    assert core.recent[-1]["request_id"] == "r1"


def test_no_double_count_once_the_mirror_catches_up(core: RouterCore) -> None:
    local = make_local(core)
    sync(local, core, T0)
    d = local.try_route("r1", ["tiny:1b"], T0)
    assert d is not None
    send(local, core)
    sync(local, core, T0)  # the mirror now holds r1 and says batch 1 was applied
    view = {n.node_id: n for n in local.snapshot(T0).nodes}
    assert view[d.node_id].in_flight == 1
    local.end(ok("r1", d.node_id), T0)  # not reported yet: the slot is free locally
    assert {n.node_id: n.in_flight for n in local.snapshot(T0).nodes}[d.node_id] == 0
    send(local, core)
    sync(local, core, T0)
    assert all(n.in_flight == 0 for n in local.snapshot(T0).nodes)


def test_sent_but_not_yet_mirrored_still_counts(core: RouterCore) -> None:
    local = make_local(core)
    sync(local, core, T0)
    d = local.try_route("r1", ["tiny:1b"], T0)
    assert d is not None
    send(local, core)  # applied, but the mirror is older
    assert {n.node_id: n.in_flight for n in local.snapshot(T0).nodes}[d.node_id] == 1


def test_lost_batch_is_not_counted_forever(core: RouterCore) -> None:
    local = make_local(core)
    sync(local, core, T0)
    local.try_route("r1", ["tiny:1b"], T0)
    batch = local.take_batch()
    assert batch is not None
    local.batch_lost(batch[0])
    assert all(n.in_flight == 0 for n in local.snapshot(T0).nodes)


def test_end_of_a_router_decision_is_reported(core: RouterCore) -> None:
    local = make_local(core)
    d = core.try_route("r1", ["tiny:1b"])  # the acquire path
    assert d is not None
    sync(local, core, T0)
    local.end(ok("r1", d.node_id), T0)
    assert all(n.in_flight == 0 for n in local.snapshot(T0).nodes)
    send(local, core)
    assert core.fleet.in_flight() == []


def test_retry_excludes_and_fallbacks_match_the_router(core: RouterCore) -> None:
    local = make_local(core)
    sync(local, core, T0)
    d = local.try_route("r1", ["tiny:1b"], T0, frozenset({"a", "b"}), attempt=1)
    assert d is not None and (d.node_id, d.attempt, d.fallback) == ("c", 1, False)
    assert d.eliminated == {"a": "excluded after failure", "b": "excluded after failure"}
    f = local.try_route("r2", ["nope:1b", "big:70b"], T0)
    assert f is not None and (f.node_id, f.model, f.requested_model, f.fallback) == (
        "c",
        "big:70b",
        "nope:1b",
        True,
    )
    assert local.try_route("r3", ["nope:1b"], T0) is None
    send(local, core)
    assert {k: core.counters[k] for k in ("requests", "ok", "failed", "retries")} == {
        "requests": 1,
        "ok": 0,
        "failed": 0,
        "retries": 1,
    }


def test_statuses_age_locally_and_a_stale_view_is_not_used(core: RouterCore, clock: Clock) -> None:
    local = make_local(core, stale_after=1.5)
    sync(local, core, T0)
    late = T0 + core.settings.heartbeat_offline + 1
    local.confirm(late)  # router reachable, no change: heartbeats stopped
    assert {n.status for n in local.snapshot(late).nodes} == {"offline"}
    assert local.try_route("r1", ["tiny:1b"], late) is None
    sync(local, core, T0)
    assert local.try_route("r2", ["tiny:1b"], T0 + 2.0) is None  # not confirmed: stale
    local.invalidate()
    assert not local.fresh(T0)


def test_ray_node_death_reaches_the_view(core: RouterCore) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",), loaded=("tiny:1b",), ray="ray-a"))
    local = make_local(core)
    sync(local, core, T0)
    core.ray_node_dead("ray-a")
    sync(local, core, T0)
    d = local.try_route("r1", ["tiny:1b"], T0)
    assert d is not None and d.node_id == "b" and d.eliminated["a"] == "offline"
    assert {n.node_id: n.status for n in local.snapshot(T0).nodes}["a"] == "offline"


def test_view_is_none_while_current_and_new_after_a_router_restart(
    core: RouterCore, clock: Clock
) -> None:
    local = make_local(core)
    sync(local, core, T0)
    assert core.view(local.epoch, local.version) is None
    local.try_route("r1", ["tiny:1b"], T0)
    batch = local.take_batch()
    assert batch is not None
    core.report(local.source, *batch)
    assert core.view(local.epoch, local.version) is not None
    restarted = RouterCore(make_settings(), clock=clock)
    restarted.heartbeat(hb("a", models=("tiny:1b",), loaded=("tiny:1b",)))
    restarted.heartbeat(hb("b", models=("tiny:1b",), loaded=("tiny:1b",)))
    r2 = local.try_route("r2", ["tiny:1b"], T0)  # pending, never sent
    assert r2 is not None and r2.node_id == "b"  # r1 (sent) is on a
    local.load(restarted.view(local.epoch, local.version) or pytest.fail("no view"), T0)
    assert local.epoch == restarted.epoch
    # r1 went to the old router; only the unsent r2 is still counted.
    assert {n.node_id: n.in_flight for n in local.snapshot(T0).nodes} == {"a": 0, "b": 1}


def test_batches_are_due_by_size_or_age(core: RouterCore) -> None:
    local = make_local(core, report_every=0.05, report_batch=3)
    assert not local.due(T0) and local.take_batch() is None
    sync(local, core, T0)
    local.try_route("r1", ["tiny:1b"], T0)
    assert not local.due(T0 + 0.01)
    assert local.next_due_in(T0 + 0.01) == pytest.approx(0.04)
    assert local.due(T0 + 0.06)
    local.end(ok("r1", "a"), T0)
    local.try_route("r2", ["tiny:1b"], T0)
    assert local.due(T0)
    seq, events = local.take_batch() or pytest.fail("no batch")
    assert seq == 1 and [type(e) for e in events] == [Begin, Outcome, Begin]
    assert local.pending == 0 and not local.due(T0 + 1)


async def test_wait_view_returns_on_a_change(core: RouterCore) -> None:
    import asyncio

    local = make_local(core)
    sync(local, core, T0)
    waiter = asyncio.create_task(core.wait_view(local.epoch, local.version, wait=30.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    core.heartbeat(hb("d", models=("tiny:1b",)))
    data = await asyncio.wait_for(waiter, timeout=5)
    assert data is not None and "d" in {n.heartbeat.node_id for n in data.nodes}
    assert await core.wait_view(data.epoch, data.version, wait=0.01) is None


def test_bookings_update_the_cached_snapshot_as_a_rebuild_would(core: RouterCore) -> None:
    # Each booking patches the cached snapshot's one node; a rebuild from the mirror and
    # the pending overlay (a new time bucket) gives the very same in-flight counts, also
    # when an end arrives for an attempt whose begin the router already applied.
    local = make_local(core)
    sync(local, core, T0)
    decisions = [local.try_route(f"r{i}", ["tiny:1b"], T0) for i in range(5)]
    assert all(d is not None for d in decisions)
    send(local, core)
    sync(local, core, T0)  # the router has applied the begins: the overlay drops them
    for i, d in enumerate(decisions[:3]):
        assert d is not None
        local.end(ok(f"r{i}", d.node_id), T0)
    local.end(ok("r-unknown", "a"), T0)  # an end the mirror never saw begin
    patched = {
        n.node_id: (n.in_flight, dict(n.in_flight_by_model)) for n in local.snapshot(T0).nodes
    }
    rebuilt = local.snapshot(T0 + 0.3)  # another bucket: built from scratch
    assert patched == {n.node_id: (n.in_flight, dict(n.in_flight_by_model)) for n in rebuilt.nodes}
    assert sum(n.in_flight for n in rebuilt.nodes) == 1  # five begun, four ended
