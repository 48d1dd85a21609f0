"""Fences (herd/dispatch/fences.py through the dispatcher, over dispatch_fakes.py and a
real RouterCore): an attempt open on a node the fleet view shows offline ends at once,
before its first chunk retried elsewhere and served, after it with an error promptly
(not at the chunk timeout); its booking is released and its trace and outcome say why.
A node that is only degraded (late heartbeats) is not fenced."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from dispatch_fakes import Fleet, Reply, content, drain, heartbeat, request, running

from herd.domain import NodeView
from herd.errors import BackendError, NodeUnavailable
from herd.sim.testing import wait_for

TINY = "tiny:1b"
# a wins every tie by its name; each node on its own Ray node.
A = replace(heartbeat("a", loaded=[TINY]), ray_node_id="ray-a")
B = replace(heartbeat("b", loaded=[TINY]), ray_node_id="ray-b")
SLOW: dict[str, Any] = {
    "chunk_timeout": 60.0,
    "first_chunk_timeout": 60.0,
}  # far beyond every wait here


def view_of(f: Fleet, node_id: str) -> NodeView:
    return next(v for v in f.d.mirror.snapshot(time.time()).nodes if v.heartbeat.node_id == node_id)


def in_flight(f: Fleet, node_id: str) -> int:
    return view_of(f, node_id).in_flight


def status(f: Fleet, node_id: str) -> str:
    return view_of(f, node_id).status


@contextlib.asynccontextmanager
async def beating(f: Fleet, node_id: str, every: float = 0.02) -> AsyncIterator[None]:
    """``node_id`` keeps sending heartbeats meanwhile (the others fall silent)."""

    async def beat() -> None:
        while True:
            f.nodes.add(replace(f.nodes.beats[node_id], sent_at=time.time()))
            await asyncio.sleep(every)

    task = asyncio.get_running_loop().create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_attempt_waiting_for_its_first_chunk_is_retried_when_its_node_dies() -> None:
    async with running(A, B, **SLOW) as f:
        f.nodes.script("a", Reply(hang=True))  # a's backend holds the request
        task = asyncio.get_running_loop().create_task(f.d.stream(request(rid="r1")))
        await wait_for(lambda: f.nodes.hanging == 1)
        assert f.d.link.fences.open_on("a") == 1
        t0 = time.monotonic()
        f.core.ray_node_dead("ray-a")  # Ray reports a's node dead: offline in the view
        served = await asyncio.wait_for(task, 5)
        assert time.monotonic() - t0 < 3  # one view away, not the first-chunk timeout
        assert (served.decision.node_id, served.retries) == ("b", 1)
        assert [c["message"]["content"] for c in await drain(served.rest)][-1] == ""
        assert f.nodes.opened_on() == ["a", "b"] and f.nodes.hanging == 0
        outcomes = await f.outcomes()
        first = next(o for o in outcomes if o.node_id == "a")
        assert not first.ok and first.error == "node went offline (a)"
        assert in_flight(f, "a") == 0 and f.d.link.fences.open_on("a") == 0
        [record] = await f.records()
        assert (record.status, record.node_id, record.retries) == ("ok", "b", 1)
        assert record.excluded_nodes == ("a",)


async def test_a_stream_past_its_first_chunk_ends_with_an_error_when_its_node_dies() -> None:
    async with running(A, B, **SLOW) as f:
        f.nodes.script("a", Reply(first=[content(TINY, "Hel")], hang_after=True))
        served = await f.d.stream(request(rid="r2"))
        assert served.decision.node_id == "a"
        reader = asyncio.get_running_loop().create_task(drain(served.rest))
        await wait_for(lambda: f.nodes.answers[0].waiting)
        t0 = time.monotonic()
        f.core.ray_node_dead("ray-a")
        with pytest.raises(BackendError, match=r"node went offline \(a\)") as info:
            await asyncio.wait_for(reader, 5)
        assert time.monotonic() - t0 < 3  # not the chunk timeout
        assert info.value.retryable is False  # output has gone out: never retried
        assert f.nodes.answers[0].cancelled  # the node's side is told to stop
        [outcome] = await f.outcomes()
        assert (outcome.ok, outcome.started, outcome.error) == (
            False,
            True,
            "node went offline (a)",
        )
        assert in_flight(f, "a") == 0 and f.d.link.fences.open_on("a") == 0
        [record] = await f.records()
        assert (record.status, record.http_status, record.error) == (
            "error",
            502,
            "node went offline (a)",
        )


async def test_a_node_whose_heartbeats_stop_is_fenced_once_it_is_offline() -> None:
    """The link is cut: no death report, only silence; offline by heartbeat age."""
    async with running(A, B, heartbeat_timeout=0.1, heartbeat_offline=0.4, **SLOW) as f:
        f.nodes.script("a", Reply(first=[content(TINY, "Hel")], hang_after=True))
        served = await f.d.stream(request())
        assert served.decision.node_id == "a"
        async with beating(f, "b"):
            t0 = time.monotonic()
            with pytest.raises(BackendError, match="node went offline"):
                await asyncio.wait_for(drain(served.rest), 5)
            assert 0.1 < time.monotonic() - t0 < 3


async def test_a_node_batch_held_by_the_consumer_is_fenced_at_the_next_read() -> None:
    async with running(A, B, **SLOW) as f:
        rest: list[list[dict[str, object]] | BaseException] = [[content(TINY, "lo")]]
        f.nodes.script("a", Reply(first=[content(TINY, "Hel")], rest=rest, hang_after=True))
        served = await f.d.stream(request())
        batch = await served.rest.__anext__()  # the consumer holds it while a dies
        assert batch == [content(TINY, "lo")]
        f.core.ray_node_dead("ray-a")
        await wait_for(lambda: f.d.link.fences.open_on("a") == 0)
        with pytest.raises(BackendError, match="node went offline"):
            await asyncio.wait_for(served.rest.__anext__(), 5)
        assert not f.nodes.answers[0].waiting  # never read again


async def test_a_degraded_node_is_not_fenced() -> None:
    """Late heartbeats (degraded, not offline): the attempts on it go on."""
    other = replace(heartbeat("b", loaded=["other:1b"]), ray_node_id="ray-b")
    async with running(A, other, heartbeat_timeout=0.2, heartbeat_offline=60.0, **SLOW) as f:
        f.nodes.script("a", Reply(first=[content(TINY, "Hel")], hang_after=True), Reply(hang=True))
        loop = asyncio.get_running_loop()
        async with beating(f, "a"):  # online while both requests reach it
            served = await f.d.stream(request())
            reader = loop.create_task(drain(served.rest))
            waiting = loop.create_task(f.d.stream(request()))
            await wait_for(lambda: f.nodes.hanging == 1 and f.nodes.answers[0].waiting)
        assert f.nodes.opened_on() == ["a", "a"]
        async with beating(f, "b"):  # a falls silent; the views keep coming
            await wait_for(lambda: status(f, "a") == "degraded")
            version = f.d.mirror.version
            await wait_for(lambda: f.d.mirror.version >= version + 5)
            assert status(f, "a") == "degraded"
            assert not reader.done() and not waiting.done()
            assert f.d.link.fences.open_on("a") == 2
        for task in (reader, waiting):
            task.cancel()  # the clients leave
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert f.d.link.fences.open_on("a") == 0


async def test_a_client_that_leaves_is_a_disconnect_not_a_fence() -> None:
    async with running(A, B, **SLOW) as f:
        f.nodes.script("a", Reply(hang=True))
        task = asyncio.get_running_loop().create_task(f.d.stream(request()))
        await wait_for(lambda: f.nodes.hanging == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [outcome] = await f.outcomes()
        assert outcome.error == "client disconnected"
        assert f.d.link.fences.open_on("a") == 0
        f.core.ray_node_dead("ray-a")  # nothing left to fence: no stray cancel
        await f.synced()


async def test_a_transport_that_turns_the_fence_into_its_own_error_leaves_no_cancel() -> None:
    """The node's transport ends the answer its own way when cancelled (an HTTP body whose
    actor died at the same moment): the retry goes on, and the task carries no cancel."""
    async with running(A, B, **SLOW) as f:
        plain = f.nodes.open

        async def open_(node_id: str, *args: Any) -> Any:
            if node_id != "a":
                return await plain(node_id, *args)
            f.nodes.hanging += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise NodeUnavailable("a's actor died") from None
            finally:
                f.nodes.hanging -= 1

        f.nodes.open = open_  # type: ignore[method-assign,assignment]

        async def client() -> tuple[str, int, int]:
            served = await f.d.stream(request())
            await drain(served.rest)
            task = asyncio.current_task()
            assert task is not None
            return served.decision.node_id, served.retries, task.cancelling()

        task = asyncio.get_running_loop().create_task(client())
        await wait_for(lambda: f.nodes.hanging == 1)
        f.core.ray_node_dead("ray-a")
        assert await asyncio.wait_for(task, 5) == ("b", 1, 0)
