"""The ingress side of the HTTP data plane (actors/http_plane.py) against aiohttp test
nodes that misbehave: connection resets before and after the first chunk, stalls, cut
and garbled lines, refused tokens, and node actors that Ray reports dead. No Ray."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from ray import exceptions as rex

from actors.http_plane import DeathWatch, HttpBody, HttpDataPlane
from herd.domain import InferenceRequest
from herd.errors import BackendError, ModelNotFound, NodeUnavailable
from herd.node.http_server import INSTANCE_HEADER, STREAM_PATH, TOKEN_HEADER, error_payload
from herd.settings import load_settings
from herd.sim.testing import wait_for

TOKEN = "unit-test-data-token-0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chunk(text: str, done: bool = False) -> dict[str, Any]:
    return {"model": "m", "message": {"role": "assistant", "content": text}, "done": done}


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


class Node:
    """A fake node data plane: ``handler`` answers POST /herd/stream."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.tokens: list[str | None] = []
        self.arrived = asyncio.Event()  # a request reached the handler
        self.gone = asyncio.Event()  # the handler saw the ingress drop the connection
        self.release = asyncio.Event()  # lets a stalling handler finish
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(STREAM_PATH, self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.tokens.append(request.headers.get(TOKEN_HEADER))
        await request.read()
        self.arrived.set()
        assert self.handler is not None
        try:
            return await self.handler(request)
        except (asyncio.CancelledError, ConnectionError):
            self.gone.set()
            raise

    async def stream(
        self, request: web.Request, lines: list[bytes], instance: str = "actor-1"
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={INSTANCE_HEADER: instance})
        await resp.prepare(request)
        for data in lines:
            await resp.write(data)
        return resp


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    fake = Node()
    await fake.start()
    yield fake
    await fake.stop()


class Tokens:
    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> str:
        self.reads += 1
        return TOKEN


@pytest.fixture
async def plane() -> AsyncIterator[tuple[HttpDataPlane, Tokens]]:
    tokens = Tokens()
    data_plane = HttpDataPlane(load_settings(), token=tokens)
    yield data_plane, tokens
    await data_plane.aclose()


REQ = InferenceRequest(request_id="r1", kind="chat", model="m", body={"messages": []})


async def drain(body: HttpBody) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        try:
            out += await body.next_batch()
        except StopAsyncIteration:
            return out


async def test_a_whole_answer_with_the_token(node: Node, plane: Any) -> None:
    data_plane, tokens = plane

    async def answer(request: web.Request) -> web.StreamResponse:
        return await node.stream(request, [line(chunk("a")), line(chunk("b", done=True))])

    node.handler = answer
    for _ in range(2):
        body = data_plane.body(node.url, "n1")
        first = await body.open(REQ, "m")
        chunks = first + await drain(body)
        assert [c["message"]["content"] for c in chunks] == ["a", "b"]
        assert body.instance == "actor-1"
    assert node.tokens == [TOKEN, TOKEN]
    assert tokens.reads == 1  # read once, then reused


async def test_finish_reads_the_end_in_the_background_and_reuses_the_connection(
    node: Node, plane: Any
) -> None:
    data_plane, _ = plane
    peers: list[Any] = []
    end = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(line(chunk("a", done=True)))
        await end.wait()  # the end of the body comes later than the final chunk
        return resp

    node.handler = answer
    body = data_plane.body(node.url, "n1")
    first = await body.open(REQ, "m")
    assert first[-1]["done"]
    body.finish()  # returns at once: the caller does not wait for the end of the body
    assert not body._ended
    end.set()
    await wait_for(lambda: body._ended, 5.0)
    end.clear()
    end.set()
    second = data_plane.body(node.url, "n1")
    assert (await second.open(REQ, "m"))[-1]["done"]
    second.finish()
    assert len(peers) == 2 and peers[0] == peers[1]  # the same keep-alive connection


async def test_reset_before_the_first_chunk_is_retryable(node: Node, plane: Any) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        await node.release.wait()
        return web.Response()

    node.handler = reset
    body = plane[0].body(node.url, "n1")
    with pytest.raises(NodeUnavailable) as info:
        await asyncio.wait_for(body.open(REQ, "m"), 5)
    assert info.value.retryable and "n1" in info.value.message


async def test_an_unreachable_node_is_retryable(plane: Any) -> None:
    from actors.http_plane import DataPlaneUnreachable
    from launch.localray import free_port

    body = plane[0].body(f"http://127.0.0.1:{free_port()}", "n1")
    # A stale address (actor just replaced): the dispatcher asks the actor over Ray.
    with pytest.raises(DataPlaneUnreachable, match="unreachable") as caught:
        await asyncio.wait_for(body.open(REQ, "m"), 5)
    assert isinstance(caught.value, NodeUnavailable)  # still a retryable node failure


async def test_reset_mid_stream_is_a_backend_error_at_once(node: Node, plane: Any) -> None:
    async def reset_after_two(request: web.Request) -> web.StreamResponse:
        resp = await node.stream(request, [line(chunk("a")), line(chunk("b"))])
        await asyncio.sleep(0)
        assert request.transport is not None
        request.transport.abort()
        await node.release.wait()
        return resp

    node.handler = reset_after_two
    body = plane[0].body(node.url, "n1")
    got = await body.open(REQ, "m")
    with pytest.raises(BackendError) as info:
        async with asyncio.timeout(5):
            while True:
                got += await body.next_batch()
    assert [c["message"]["content"] for c in got] == ["a", "b"]
    assert type(info.value) is BackendError and not info.value.retryable
    assert "connection lost" in info.value.message and "n1" in info.value.message


async def test_a_stall_hits_the_caller_timeout_and_close_drops_the_connection(
    node: Node, plane: Any
) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        resp = await node.stream(request, [line(chunk("a"))])
        await node.release.wait()
        return resp

    node.handler = stall
    body = plane[0].body(node.url, "n1")
    assert await body.open(REQ, "m")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):  # the dispatcher's chunk timeout, shortened
            await body.next_batch()
    body.close()  # what the dispatcher does on any failure
    await asyncio.wait_for(node.gone.wait(), 5)
    with pytest.raises(StopAsyncIteration):
        await body.next_batch()


@pytest.mark.parametrize(
    ("tail", "message"),
    [(b'{"model": "m", "mess', "cut mid-line"), (b"{not json}\n", "malformed line")],
)
async def test_a_cut_or_garbled_line_is_a_backend_error(
    node: Node, plane: Any, tail: bytes, message: str
) -> None:
    async def garbled(request: web.Request) -> web.StreamResponse:
        resp = await node.stream(request, [line(chunk("a"))])
        await asyncio.sleep(0.01)
        await resp.write(tail)
        await resp.write_eof()
        return resp

    node.handler = garbled
    body = plane[0].body(node.url, "n1")
    assert await body.open(REQ, "m")
    with pytest.raises(BackendError, match=message) as info:
        await asyncio.wait_for(drain(body), 5)
    assert not info.value.retryable


async def test_a_final_error_line_keeps_its_class(node: Node, plane: Any) -> None:
    async def fails(request: web.Request) -> web.StreamResponse:
        err = BackendError("backend fell over", retryable=True)
        return await node.stream(request, [line(chunk("a")), line(error_payload(err))])

    node.handler = fails
    body = plane[0].body(node.url, "n1")
    with pytest.raises(BackendError, match="fell over") as info:
        await body.open(REQ, "m")
        await drain(body)
    assert type(info.value) is BackendError
    assert info.value.retryable is True  # the node's word (the dispatcher decides)


async def test_an_error_status_keeps_its_class(node: Node, plane: Any) -> None:
    async def missing(request: web.Request) -> web.StreamResponse:
        return web.json_response(error_payload(ModelNotFound("no m here")), status=404)

    node.handler = missing
    with pytest.raises(ModelNotFound, match="no m here"):
        await plane[0].body(node.url, "n1").open(REQ, "m")


async def test_a_refused_token_is_retryable_and_read_again(node: Node, plane: Any) -> None:
    data_plane, tokens = plane

    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "wrong data-plane token"}, status=403)

    node.handler = refuse
    with pytest.raises(NodeUnavailable, match="FLEET_DATA_TOKEN") as info:
        await data_plane.body(node.url, "n1").open(REQ, "m")
    assert info.value.retryable
    with pytest.raises(NodeUnavailable):
        await data_plane.body(node.url, "n1").open(REQ, "m")
    assert tokens.reads == 2


# --- node actors that Ray reports dead ---------------------------------------------------
class FakeActorId:
    def __init__(self, value: str) -> None:
        self.value = value

    def hex(self) -> str:
        return self.value


class FakeHandle:
    """Stands in for a NodeActor handle: ``watch.remote()`` waits on a future we control."""

    def __init__(self, actor_id: str = "actor-1") -> None:
        self._actor_id = FakeActorId(actor_id)
        self.calls = 0
        self.pending: asyncio.Future[str] | None = None
        self.watch = self
        self._armed = asyncio.Event()

    def remote(self, span: float) -> asyncio.Future[str]:
        self.calls += 1
        self.pending = asyncio.get_running_loop().create_future()
        self._armed.set()
        return self.pending

    async def called(self, times: int = 1) -> None:
        """Wait until ``watch.remote`` was called ``times`` times."""
        while self.calls < times:
            self._armed.clear()
            await self._armed.wait()

    def die(self, exc: BaseException | None = None) -> None:
        assert self.pending is not None
        self.pending.set_exception(exc or rex.ActorDiedError())


async def test_a_dead_actor_ends_its_streams_at_once(node: Node, plane: Any) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = await node.stream(request, [line(chunk("a"))])
        while not node.release.is_set():  # an orphaned worker keeps streaming
            await resp.write(line(chunk("x")))
            await asyncio.sleep(0.01)
        return resp

    node.handler = endless
    handle = FakeHandle()
    body = plane[0].body(node.url, "n1", handle)
    assert await body.open(REQ, "m")
    await handle.called()
    handle.die()
    with pytest.raises(NodeUnavailable, match=r"node actor is gone \(n1\): ActorDiedError"):
        async with asyncio.timeout(5):
            while True:
                await body.next_batch()
    await asyncio.wait_for(node.gone.wait(), 5)  # and the node saw the connection drop


async def test_a_dead_actor_fails_an_answer_still_opening(node: Node, plane: Any) -> None:
    async def slow_first_chunk(request: web.Request) -> web.StreamResponse:
        await node.release.wait()  # e.g. a model still loading when the machine vanished
        return web.Response()

    node.handler = slow_first_chunk
    handle = FakeHandle()
    body = plane[0].body(node.url, "n1", handle)

    async def open_it() -> tuple[NodeUnavailable, int]:
        try:
            await body.open(REQ, "m")
        except NodeUnavailable as err:
            task = asyncio.current_task()
            assert task is not None
            return err, task.cancelling()
        raise AssertionError("the answer opened")

    opening = asyncio.create_task(open_it())
    await asyncio.wait_for(node.arrived.wait(), 5)  # sent; the node has not answered
    await handle.called()
    handle.die()
    err, cancelling = await asyncio.wait_for(opening, 5)
    assert "node actor is gone" in err.message
    assert err.retryable  # before the first chunk: tried on another node
    assert cancelling == 0  # the caller's task is not left half-cancelled


async def test_an_unreachable_actor_is_not_dead_and_is_watched_again(
    node: Node, plane: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actors.http_plane._UNREACHABLE_PAUSE", 0.01)

    async def short(request: web.Request) -> web.StreamResponse:
        resp = await node.stream(request, [line(chunk("a"))])
        await node.release.wait()
        await resp.write(line(chunk("b", done=True)))
        return resp

    node.handler = short
    handle = FakeHandle()
    body = plane[0].body(node.url, "n1", handle)
    assert await body.open(REQ, "m")
    await handle.called()
    handle.die(rex.ActorUnavailableError("network hiccup", None))
    await asyncio.wait_for(handle.called(2), 5)  # renewed, body untouched
    node.release.set()
    assert (await asyncio.wait_for(drain(body), 5))[-1]["done"] is True


async def test_answers_from_another_actor_survive_a_stale_handle(node: Node, plane: Any) -> None:
    async def from_new_actor(request: web.Request) -> web.StreamResponse:
        resp = await node.stream(request, [line(chunk("a"))], instance="actor-2")
        await node.release.wait()
        await resp.write(line(chunk("b", done=True)))
        return resp

    node.handler = from_new_actor
    stale = FakeHandle("actor-1")  # the node was redeployed; this handle is the old actor
    body = plane[0].body(node.url, "n1", stale)
    assert await body.open(REQ, "m")
    await stale.called()
    stale.die()
    for _ in range(500):
        if plane[0].watching(stale) == 0:
            break
        await asyncio.sleep(0.01)
    assert plane[0].watching(stale) == 0
    node.release.set()
    assert (await asyncio.wait_for(drain(body), 5))[-1]["done"] is True


async def test_watches_only_while_answers_are_read() -> None:
    watch = DeathWatch(span=60)
    handle = FakeHandle()
    plane = HttpDataPlane(load_settings(), token=lambda: TOKEN)
    body = HttpBody(plane, "http://127.0.0.1:1", "n1")
    watch.follow(handle, "n1", body)
    watch.follow(handle, "n1", HttpBody(plane, "http://127.0.0.1:1", "n1"))
    await handle.called()
    assert watch.watching(handle) == 2 and handle.calls == 1  # one call per actor
    body.close()
    assert watch.watching(handle) == 1
    watch.close()
    assert watch.watching(handle) == 0


async def test_an_actor_without_watch_is_left_to_the_timeouts() -> None:
    class OldHandle:
        @property
        def watch(self) -> Any:
            raise AttributeError("'ActorHandle' object has no attribute 'watch'")

    watch = DeathWatch()
    old = OldHandle()
    plane = HttpDataPlane(load_settings(), token=lambda: TOKEN)
    watch.follow(old, "n1", HttpBody(plane, "http://127.0.0.1:1", "n1"))
    for _ in range(100):
        if watch.watching(old) == 0:
            break
        await asyncio.sleep(0.01)
    assert watch.watching(old) == 0
    watch.follow(old, "n1", HttpBody(plane, "http://127.0.0.1:1", "n1"))
    assert watch.watching(old) == 0  # not tried again


async def test_a_complete_answer_is_not_watched_any_longer(node: Node, plane: Any) -> None:
    async def one_batch(request: web.Request) -> web.StreamResponse:
        resp = await node.stream(request, [line(chunk("a")) + line(chunk("b", done=True))])
        await node.release.wait()  # the end of the body has not arrived yet
        return resp

    node.handler = one_batch
    handle = FakeHandle()
    body = plane[0].body(node.url, "n1", handle)
    first = await body.open(REQ, "m")
    assert first[-1]["done"] is True
    assert plane[0].watching(handle) == 0  # settled by the final chunk, not by EOF
    await handle.called()
    handle.die()  # the node dying now cannot turn a complete answer into an error
    node.release.set()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(body.next_batch(), 5)


async def test_a_caller_cancelling_while_opening_drops_the_answer(node: Node, plane: Any) -> None:
    async def never(request: web.Request) -> web.StreamResponse:
        await node.release.wait()
        return web.Response()

    node.handler = never
    handle = FakeHandle()
    body = plane[0].body(node.url, "n1", handle)
    opening = asyncio.create_task(body.open(REQ, "m"))
    await asyncio.wait_for(node.arrived.wait(), 5)
    assert plane[0].watching(handle) == 1
    opening.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert plane[0].watching(handle) == 0
    await asyncio.wait_for(node.gone.wait(), 5)
