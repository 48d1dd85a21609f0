"""IdleTimeout (herd/deadlines.py): one timer per stream, fired only after ``limit``
seconds without progress, never while paused; TimeoutError like ``asyncio.timeout``."""

from __future__ import annotations

import asyncio

import pytest

from herd.deadlines import IdleTimeout


async def test_progress_keeps_it_from_firing() -> None:
    ticks = 0
    async with IdleTimeout(0.2) as idle:
        for _ in range(12):  # 0.6 s in all: three times the limit, never idle for it
            await asyncio.sleep(0.05)
            ticks += 1
            idle.touch()
    assert ticks == 12


async def test_no_progress_raises_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        async with IdleTimeout(0.1):
            await asyncio.Event().wait()
    assert loop.time() - start >= 0.09  # not before the limit
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_touch_can_change_the_limit() -> None:
    with pytest.raises(TimeoutError):
        async with IdleTimeout(5.0) as idle:
            idle.touch(0.05)  # e.g. first-chunk limit -> chunk limit
            await asyncio.Event().wait()


async def test_paused_time_does_not_count() -> None:
    async with IdleTimeout(0.05) as idle:
        idle.pause()
        await asyncio.sleep(0.2)  # four limits away, paused
        idle.resume()
        await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        async with IdleTimeout(0.05) as idle:
            idle.pause()
            await asyncio.sleep(0.1)
            idle.resume()
            await asyncio.Event().wait()  # idle again after resuming: fires


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def guarded() -> None:
        async with IdleTimeout(10.0):
            await asyncio.Event().wait()

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_error_inside_passes_through() -> None:
    with pytest.raises(ValueError, match="boom"):
        async with IdleTimeout(10.0):
            raise ValueError("boom")
