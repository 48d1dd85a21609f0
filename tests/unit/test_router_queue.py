"""RouterCore's holding queue (FIFO per model, callers that leave) and its upkeep round."""

from __future__ import annotations

import asyncio

import pytest
from test_router_core import Clock, hb, make_settings

from herd.domain import Decision
from herd.routing.core import RouterCore
from herd.sim.testing import wait_for


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(clock: Clock) -> RouterCore:
    return RouterCore(make_settings(), clock=clock)


async def _queued(core: RouterCore, n: int) -> None:
    await wait_for(lambda: core.waiting == n, timeout=5)


async def test_holding_queue_is_fifo_per_model(core: RouterCore) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",), draining=True))
    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(core.acquire(f"r{i}", ["tiny:1b"])))
        await _queued(core, i + 1)
    assert core.waiting_by_model() == {"tiny:1b": 3}
    served: list[str] = []
    for t in tasks:
        t.add_done_callback(lambda t: served.append(t.result().request_id))
    core.heartbeat(hb("a", models=("tiny:1b",)))  # the node takes work again
    decisions = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert all(isinstance(d, Decision) for d in decisions)
    assert served == ["r0", "r1", "r2"]
    assert core.waiting == 0 and core.counters["held"] == 3


async def test_newcomer_queues_behind_waiters_of_the_same_model(core: RouterCore) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",), draining=True))
    first = asyncio.create_task(core.acquire("first", ["tiny:1b"]))
    await _queued(core, 1)
    # The node is back, but the waiter has not been served yet when the newcomer arrives.
    core.fleet.heartbeat(hb("a", models=("tiny:1b",)), core.clock())
    late = asyncio.create_task(core.acquire("late", ["tiny:1b"]))
    await wait_for(lambda: late.done() or core.waiting == 2, timeout=5)
    core.serve_waiters()
    assert (await first).request_id == "first"
    assert (await late).request_id == "late"


async def test_a_caller_that_leaves_leaves_the_queue(core: RouterCore) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",), draining=True))
    gone = asyncio.create_task(core.acquire("gone", ["tiny:1b"]))
    stays = asyncio.create_task(core.acquire("stays", ["tiny:1b"]))
    await _queued(core, 2)
    gone.cancel()  # the client disconnected: Ray cancels the acquire call
    await _queued(core, 1)
    core.heartbeat(hb("a", models=("tiny:1b",)))
    assert (await asyncio.wait_for(stays, 5)).request_id == "stays"
    with pytest.raises(asyncio.CancelledError):
        await gone
    # Only the served request holds a slot.
    assert [e.request_id for e in core.fleet.in_flight()] == ["stays"]


async def test_upkeep_reaps_zombies(core: RouterCore, clock: Clock) -> None:
    core.heartbeat(hb("a", loaded=("tiny:1b",)))
    await core.acquire("lost", ["tiny:1b"])  # its ingress never reports the end
    clock.advance(core.settings.zombie_timeout + 1)
    core.heartbeat(hb("a", loaded=("tiny:1b",)))
    fresh = await core.acquire("fresh", ["tiny:1b"])
    plan = core.upkeep()
    assert plan.reaped == ("lost",)
    assert [e.request_id for e in core.fleet.in_flight()] == [fresh.request_id]
    assert core.counters["reaped"] == 1
    assert core.status()["events"][-1]["kind"] == "zombie_reaped"


async def test_upkeep_plans_moves_and_warms(clock: Clock) -> None:
    core = RouterCore(make_settings(prewarm_threshold=2), clock=clock)
    core.heartbeat(hb("busy", loaded=("tiny:1b",), num_parallel=1))
    core.heartbeat(hb("cold", models=("tiny:1b",), num_parallel=1))
    for i in range(3):  # three on "busy" by the mirror's count: 2 pending
        core.fleet.begin(f"r{i}", "busy", "tiny:1b", clock())
    plan = core.upkeep()
    assert [(w.node_id, w.model) for w in plan.warms] == [("cold", "tiny:1b")]
    assert plan.moves == ()  # nowhere hot with a free slot
    core.heartbeat(hb("idle", loaded=("tiny:1b",), num_parallel=2))
    plan = core.upkeep()
    assert [(m.from_node, m.to_node, m.count) for m in plan.moves] == [("busy", "idle", 2)]
    assert plan.warms == ()  # cooldown
    core.moved(plan.moves[0], 2)
    assert core.counters["moved"] == 2


async def test_round_robin_takes_turns(clock: Clock) -> None:
    from herd.scoring import RouteQuery

    core = RouterCore(make_settings(routing_policy="round_robin"), clock=clock)
    for name in ("a", "b", "c"):
        core.heartbeat(hb(name, loaded=("tiny:1b",), num_parallel=8))
    picks = []
    for i in range(6):
        query = RouteQuery("tiny:1b", request_id=f"r{i}")
        picks.append((await core.acquire(f"r{i}", ["tiny:1b"], query=query)).node_id)
    assert sorted(picks[:3]) == ["a", "b", "c"] and picks[3:] == picks[:3]


async def test_a_moved_attempt_is_neither_served_nor_failed(core: RouterCore) -> None:
    from herd.domain import Outcome

    core.heartbeat(hb("a", loaded=("tiny:1b",)))
    await core.acquire("r1", ["tiny:1b"])
    core.release(Outcome("r1", "a", "tiny:1b", ok=False, error="moved off a", moved=True))
    assert core.counters["failed"] == 0 and core.counters["ok"] == 0
    assert core.fleet.in_flight() == []  # its slot is free for the next one
