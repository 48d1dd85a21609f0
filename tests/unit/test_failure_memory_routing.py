"""The failure memory at both decision sites, without Ray: the RouterCore (learned from
every report, shared in its view, shown in its status, a 503 at once when every holder
cools down) and an ingress's FleetMirror (its own outcomes count before the router has
applied them, and the router's copy wins once it has)."""

from __future__ import annotations

import asyncio

import pytest
from test_router_core import T0, Clock, hb, make_settings
from test_routing_mirror import make_local, send, sync

from herd.domain import Outcome
from herd.errors import NoCapacity
from herd.routing.core import RouterCore

M = "tiny:1b"
REASON = "cooling down after 3 failures: runner crashed"


def fail(request_id: str, node: str = "a", error: str = "runner crashed") -> Outcome:
    return Outcome(request_id, node, M, ok=False, error=error, node_fault=True)


def ok(request_id: str, node: str = "a") -> Outcome:
    return Outcome(request_id, node, M, ok=True, started=True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(clock: Clock) -> RouterCore:
    core = RouterCore(make_settings(failure_cooldown=10.0), clock=clock)
    core.heartbeat(hb("a", models=(M,), loaded=(M,)))  # the hot one: the seed's favourite
    core.heartbeat(hb("b", models=(M,)))
    return core


def trip(core: RouterCore, node: str = "a") -> None:
    for i in range(3):
        decision = core.try_route(f"f{node}{i}", [M], exclude=frozenset({"b"} - {node}))
        assert decision is not None and decision.node_id == node
        core.release(fail(f"f{node}{i}", node))


def test_the_router_cools_a_pair_down_and_says_so(core: RouterCore, clock: Clock) -> None:
    trip(core)
    decision = core.try_route("r1", [M])
    assert decision is not None and decision.node_id == "b"
    assert decision.eliminated == {"a": REASON}
    status = core.status()
    assert status["counters"]["cooled_down"] == 1 and status["counters"]["failed"] == 3
    (entry,) = next(n for n in status["nodes"] if n["node_id"] == "a")["failures"]
    assert (entry["state"], entry["reason"], entry["cooldown_left_s"]) == (
        "cooling_down",
        REASON,
        10,
    )
    assert status["events"][-1]["kind"] == "cooled_down"
    # After the cooldown, one probe: a is the favourite again, then nobody else goes there.
    core.release(ok("r1", "b"))
    clock.advance(10)
    probe = core.try_route("probe", [M])
    assert probe is not None and probe.node_id == "a"
    during = core.try_route("r2", [M])
    assert during is not None and during.node_id == "b" and during.eliminated == {"a": REASON}
    core.release(ok("probe"))  # the probe succeeded: readmitted
    again = core.try_route("r3", [M])
    assert again is not None and again.node_id == "a" and again.eliminated == {}
    assert core.counters["readmitted"] == 1 and core.status()["events"][-1]["kind"] == "readmitted"
    assert core.failures.models == {}


async def test_every_holder_cooling_down_is_a_503_at_once(core: RouterCore, clock: Clock) -> None:
    trip(core, "a")
    trip(core, "b")
    clock.advance(4)
    with pytest.raises(NoCapacity) as info:
        await core.acquire("r1", [M])  # no hold: the holding queue's limit is 60 s here
    assert info.value.status == 503 and info.value.retry_after == 6.0
    assert f"a: {REASON}" in info.value.message and f"b: {REASON}" in info.value.message
    assert core.counters["held"] == 0 and core.counters["hold_timeouts"] == 0
    clock.advance(6)  # half-open: the probe is routed at once
    decision = await core.acquire("r2", [M])
    assert decision.node_id == "a"


async def test_excluded_holders_alone_still_wait() -> None:
    """Only this request's failures (or a move) exclude them: the router cannot tell which,
    so it holds as before; the dispatcher, which knows, answers at once."""
    core = RouterCore(make_settings(), clock=Clock(follow_real=True))
    core.heartbeat(hb("a", models=(M,), loaded=(M,), draining=True))
    core.heartbeat(hb("b", models=(M,)))
    with pytest.raises(NoCapacity, match="right now"):
        await asyncio.wait_for(core.acquire("r1", [M], exclude=frozenset({"b"}), wait=0), 5)
    assert core.counters["hold_timeouts"] == 1


def test_forget_failures_readmits_everything_and_tells_the_mirrors(core: RouterCore) -> None:
    local = make_local(core)
    trip(core)
    sync(local, core, T0)
    assert local.failures.pair("a", M) is not None
    version = core.view_version()
    assert core.forget_failures() == 1
    assert core.view_version() > version and core.failures.models == {}
    sync(local, core, T0)
    assert local.failures.models == {}
    decision = local.try_route("r1", [M], T0)
    assert decision is not None and decision.node_id == "a"


def test_the_mirror_counts_its_own_failures_before_the_router_applies_them(
    core: RouterCore, clock: Clock
) -> None:
    local = make_local(core)
    sync(local, core, T0)
    for i in range(3):
        decision = local.try_route(f"r{i}", [M], T0)
        assert decision is not None and decision.node_id == "a"
        local.end(fail(f"r{i}"), T0)
    # Not sent yet: the mirror already routes around a, the router does not know.
    decision = local.try_route("r3", [M], T0)
    assert decision is not None and decision.node_id == "b"
    assert decision.eliminated == {"a": REASON}
    assert core.failures.models == {}
    sync(local, core, T0)  # a view without them: the mirror keeps its own on top
    assert local.failures.pair("a", M) is not None
    send(local, core)  # now the router has them ...
    assert core.failures.pair("a", M) is not None and core.counters["cooled_down"] == 1
    sync(local, core, T0)  # ... and the mirror takes the router's copy, nothing counted twice
    h = local.failures.pair("a", M)
    assert h is not None and h.failures == 3 and h == core.failures.pair("a", M)


def test_a_lost_batch_takes_its_failures_back(core: RouterCore) -> None:
    local = make_local(core)
    sync(local, core, T0)
    for i in range(3):
        assert local.try_route(f"r{i}", [M], T0) is not None
        local.end(fail(f"r{i}"), T0)
    batch = local.take_batch()
    assert batch is not None
    local.batch_lost(batch[0])  # the router never got them, so the mirror forgets them too
    assert local.failures.models == {}
    decision = local.try_route("r3", [M], T0)
    assert decision is not None and decision.node_id == "a"


def test_the_mirror_moves_router_times_onto_its_own_clock(core: RouterCore, clock: Clock) -> None:
    trip(core)  # a cools down until T0 + 10 on the router's clock
    local = make_local(core)
    data = core.view()
    assert data is not None and data.clock == T0
    local.load(data, T0 + 100.0)  # this ingress's clock runs 100 s ahead
    h = local.failures.pair("a", M)
    assert h is not None and h.until == T0 + 110.0
    local.confirm(T0 + 105.0)  # the router said: nothing changed
    decision = local.try_route("r1", [M], T0 + 105.0)
    assert decision is not None and decision.node_id == "b"  # 5 s into the cooldown
    local.end(ok("r1", "b"), T0 + 105.0)
    local.confirm(T0 + 110.0)
    probe = local.try_route("r2", [M], T0 + 110.0)
    assert probe is not None and probe.node_id == "a"


def test_forget_learning_drops_slow_answers_and_tells_the_mirrors(core: RouterCore) -> None:
    local = make_local(core)
    decision = core.try_route("slow", [M])
    assert decision is not None and decision.node_id == "a"
    core.release(Outcome("slow", "a", M, ok=True, started=True, total_s=40.0))
    sync(local, core, T0)
    assert local.perf.model("a", M).p75_s == 40.0  # type: ignore[union-attr]
    version = core.view_version()
    assert core.forget_learning() == 1
    assert core.view_version() > version
    sync(local, core, T0)
    assert local.perf.model("a", M).p75_s is None  # type: ignore[union-attr]
    assert core.forget_learning() == 0 and core.view_version() == version + 1
