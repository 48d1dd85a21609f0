"""SlotGate: per-model parallel slots, FIFO pending, shedding for the rebalancer and drain."""

from __future__ import annotations

import asyncio

import pytest

from herd.errors import NodeUnavailable, Rebalanced
from herd.node.slots import SlotGate


async def _until(cond, limit: int = 1000) -> None:
    for _ in range(limit):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_runs_up_to_per_model_then_queues_fifo() -> None:
    gate = SlotGate(2)
    order: list[int] = []
    release = asyncio.Event()

    async def job(i: int) -> None:
        async with gate.slot("m"):
            order.append(i)
            await release.wait()

    tasks = [asyncio.create_task(job(i)) for i in range(5)]
    await _until(lambda: gate.pending() == {"m:latest": 3})
    assert gate.running() == {"m:latest": 2}
    assert order == [0, 1]
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert gate.running() == {} and gate.pending() == {}


async def test_models_have_separate_slots() -> None:
    gate = SlotGate(1)
    hold = asyncio.Event()

    async def job(model: str) -> None:
        async with gate.slot(model):
            await hold.wait()

    tasks = [asyncio.create_task(job("a")), asyncio.create_task(job("b"))]
    await _until(lambda: gate.running() == {"a:latest": 1, "b:latest": 1})
    assert gate.pending() == {}
    hold.set()
    await asyncio.gather(*tasks)


async def test_shed_wakes_newest_pending_with_rebalanced() -> None:
    gate = SlotGate(1)
    hold = asyncio.Event()
    served: list[int] = []

    async def job(i: int) -> None:
        async with gate.slot("m"):
            served.append(i)
            await hold.wait()

    tasks = [asyncio.create_task(job(i)) for i in range(4)]
    await _until(lambda: gate.pending().get("m:latest") == 3)
    assert gate.shed("m", 2) == 2
    hold.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert served == [0, 1]  # the oldest pending request kept its place
    assert [type(r) for r in results[2:]] == [Rebalanced, Rebalanced]
    assert isinstance(results[2], NodeUnavailable)  # dispatchers already re-route those
    assert gate.running() == {} and gate.pending() == {}


async def test_shed_all_models_for_drain() -> None:
    gate = SlotGate(1)
    hold = asyncio.Event()

    async def job(model: str) -> None:
        async with gate.slot(model):
            await hold.wait()

    tasks = [asyncio.create_task(job(m)) for m in ("a", "a", "b", "b", "b")]
    await _until(lambda: sum(gate.pending().values()) == 3)
    assert gate.shed(reason="draining") == 3
    hold.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, Rebalanced) for r in results) == 3
    assert sum(r is None for r in results) == 2


async def test_cancelled_waiter_leaves_queue_and_slot_is_not_lost() -> None:
    gate = SlotGate(1)
    hold = asyncio.Event()

    async def job() -> None:
        async with gate.slot("m"):
            await hold.wait()

    first = asyncio.create_task(job())
    second = asyncio.create_task(job())
    third = asyncio.create_task(job())
    await _until(lambda: gate.pending().get("m:latest") == 2)
    second.cancel()  # a client that went away while pending
    await _until(lambda: gate.pending().get("m:latest") == 1)
    hold.set()
    await first
    await third
    with pytest.raises(asyncio.CancelledError):
        await second
    assert gate.running() == {} and gate.pending() == {}


async def test_cancel_right_after_handoff_releases_the_slot() -> None:
    gate = SlotGate(1)
    held = gate.slot("m")
    await held.__aenter__()

    async def waiter() -> None:
        async with gate.slot("m"):
            raise AssertionError("must not run")

    w = asyncio.create_task(waiter())
    await _until(lambda: gate.pending().get("m:latest") == 1)
    await held.__aexit__(None, None, None)  # hands the slot over without yielding ...
    w.cancel()  # ... and the waiter is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await w
    assert gate.running() == {} and gate.pending() == {}
