"""The ingress side of the nodes' HTTP data plane: an NDJSON answer from a node
(``herd.node.http_server``), read as batches of Ollama chunks (an
:class:`~herd.dispatch.ports.Answer`, like the Ray generator in ``actors.ports``).

On the HTTP path a node can fail in ways Ray would otherwise report for us, so each
failure maps to the error the Ray path gives:

* connection refused or reset before the first chunk: ``NodeUnavailable`` (retried on
  another node); reset, cut or garbled after it: ``BackendError`` (the dialect's error
  event, no retry);
* silence: the dispatcher's first-chunk and chunk timeouts;
* the NodeActor declared dead by Ray while its process still holds the connection (a
  worker orphaned by its killed raylet keeps streaming for a while, or a machine that
  vanished from the network): :class:`DeathWatch` keeps one pending ``NodeActor.watch``
  call per actor being read from; Ray fails it when the actor dies, and the streams of
  that actor end with ``NodeUnavailable`` at that moment, as a Ray generator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from ray import exceptions as rex

from actors.data_plane import data_token
from herd.domain import InferenceRequest
from herd.errors import BackendError, HerdError, NodeUnavailable
from herd.json_codec import dumps, loads
from herd.node.http_server import INSTANCE_HEADER, STREAM_PATH, TOKEN_HEADER, error_from_payload
from herd.settings import Settings

log = logging.getLogger("herd.actors.http_plane")

Chunk = dict[str, Any]
WATCH_SPAN = 60.0  # seconds one NodeActor.watch call stays pending before it is renewed
_UNREACHABLE_PAUSE = 1.0  # after ActorUnavailableError (not dead): ask again this soon
_END_READ_S = 5.0  # for the end of a body whose final chunk came: then the connection goes


def _actor_id(handle: Any) -> str:
    """The actor id behind a handle ("" when unknown); compared with the id a node's
    data plane sends in ``X-Herd-Node-Instance`` to spot a handle to a replaced actor."""
    actor_id = getattr(handle, "_actor_id", None)  # no public accessor on ActorHandle
    return actor_id.hex() if actor_id is not None else ""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class DataPlaneUnreachable(NodeUnavailable):
    """No connection to the node's HTTP data plane at all (nothing was sent): its address
    may be stale, so the dispatcher tries the node's actor over Ray instead."""


class HttpDataPlane:
    """The ingress side of the HTTP data plane: one keep-alive session per event loop,
    the shared token on every request, and a :class:`DeathWatch` per event loop."""

    def __init__(self, settings: Settings, token: Callable[[], str] | None = None) -> None:
        self._token_source = token or (lambda: data_token(settings))
        self._headers: dict[str, str] | None = None  # with the token, once read
        self._session: aiohttp.ClientSession | None = None
        self._watch: DeathWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def headers(self) -> dict[str, str]:
        """The token header (read once, off the event loop: it may be a GCS call)."""
        if self._headers is None:
            token = await asyncio.to_thread(self._token_source)
            self._headers = {TOKEN_HEADER: token, "Content-Type": "application/json"}
        return self._headers

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, kept until it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def refused(self) -> None:
        """A node refused the token: read it again for the next request."""
        self._headers = None

    def session(self) -> aiohttp.ClientSession:
        self._on_loop()
        assert self._session is not None
        return self._session

    def body(self, url: str, node_id: str, handle: Any = None) -> HttpBody:
        """A reader for one answer from ``url``; with the node's actor ``handle`` its
        stream ends as soon as Ray reports that actor dead."""
        self._on_loop()
        body = HttpBody(self, url, node_id)
        if handle is not None and self._watch is not None:
            self._watch.follow(handle, node_id, body)
        return body

    @property
    def used(self) -> bool:
        """Whether any answer went over HTTP on this loop (a session is open)."""
        return self._session is not None and not self._session.closed

    def watching(self, handle: Any) -> int:
        """How many answers of this node actor are watched for its death."""
        return self._watch.watching(handle) if self._watch is not None else 0

    def _on_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            if self._loop is loop:
                self.close()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0),
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
            )
            self._watch = DeathWatch()
            self._loop = loop

    def close(self) -> None:
        """Stop watching and close the session (from its loop when one runs)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        session, self._session = self._session, None
        if session is not None and not session.closed:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to close on
                asyncio.get_running_loop().create_task(session.close())

    async def aclose(self) -> None:
        session, self._session = self._session, None
        self.close()
        if session is not None:
            await session.close()


class HttpBody:
    """One NDJSON answer from a node's HTTP data plane (``herd.node.http_server``)."""

    def __init__(self, plane: HttpDataPlane, url: str, node_id: str) -> None:
        self._plane = plane
        self._url = url + STREAM_PATH
        self._node_id = node_id
        self._resp: aiohttp.ClientResponse | None = None
        self._buf = b""
        self._ended = False
        self._started = False  # the first batch was handed out: errors no longer retry
        self._failure: HerdError | None = None  # set by abort()
        self._opener: asyncio.Task[Any] | None = None
        self._done: list[Callable[[], None]] = []
        self.instance = ""  # the answering process (X-Herd-Node-Instance), once open
        self.first: list[Chunk] = []  # the first batch, once open

    def on_done(self, callback: Callable[[], None]) -> None:
        self._done.append(callback)

    async def open(self, req: InferenceRequest, model: str) -> list[Chunk]:
        """Send the request and return the first batch ([] for an empty answer).
        Any failure here is retryable unless the node said otherwise."""
        payload = {
            "request_id": req.request_id,
            "kind": req.kind,
            "model": model,
            "body": dict(req.body),
        }
        self._opener = asyncio.current_task()
        try:
            headers = await self._plane.headers()
            try:
                resp = await self._plane.session().post(
                    self._url, data=dumps(payload), headers=headers
                )
            except (aiohttp.ClientError, OSError) as exc:
                raise DataPlaneUnreachable(
                    f"node data plane unreachable ({self._node_id}): {_describe(exc)}"
                ) from None
            self._resp = resp
            self.instance = resp.headers.get(INSTANCE_HEADER, "")
            if resp.status != 200:
                raise await self._refusal(resp)
            try:
                first = await self.next_batch()
            except StopAsyncIteration:
                first = []
            self._started = True
            self.first = first
            return first
        except asyncio.CancelledError:
            self.close()
            task = self._opener
            if self._failure is None or task is None:
                raise
            task.uncancel()  # our own cancel (abort), not the caller's
            raise self._failure from None
        except BaseException:
            self.close()
            raise
        finally:
            self._opener = None

    async def _refusal(self, resp: aiohttp.ClientResponse) -> HerdError:
        """The herd error behind a non-200 answer (the node sent it before any chunk)."""
        try:
            data = await resp.json(content_type=None)
        except Exception:
            data = {"error": f"node data plane answered HTTP {resp.status}"}
        finally:
            resp.release()
            self._ended = True
        if resp.status in (401, 403):
            self._plane.refused()
            log.warning("node %s refused the data-plane token (%s)", self._node_id, resp.status)
            return NodeUnavailable(
                f"node {self._node_id} refused the data-plane token (HTTP {resp.status}): "
                "FLEET_DATA_TOKEN must be the same on every device, or unset everywhere"
            )
        if not isinstance(data, dict):
            data = {"error": str(data)}
        return error_from_payload(data, default_retryable=True)

    async def next_batch(self) -> list[Chunk]:
        """Every complete line already received, waiting only for the first of them."""
        while True:
            if self._ended or self._resp is None:
                if self._failure is not None:
                    raise self._failure
                raise StopAsyncIteration
            try:
                data = await self._resp.content.readany()
            except HerdError:  # abort() put it there
                self.close()
                raise
            except (aiohttp.ClientError, OSError) as exc:
                self.close()
                raise self._failure or self._broken(f"connection lost: {_describe(exc)}") from None
            if not data:
                cut = bool(self._buf.strip())
                self._finish()
                if cut:
                    raise self._broken("stream cut mid-line")
                raise StopAsyncIteration
            buf = self._buf + data
            end = buf.rfind(b"\n")
            if end < 0:
                self._buf = buf
                continue
            self._buf = buf[end + 1 :]
            batch: list[Chunk] = []
            for line in buf[:end].split(b"\n"):
                if not line.strip():
                    continue
                try:
                    chunk = loads(line)
                except ValueError:
                    self.close()
                    raise self._broken("a malformed line") from None
                if "herd_error" in chunk:
                    self.close()
                    started = self._started or bool(batch)
                    raise error_from_payload(chunk, default_retryable=not started)
                batch.append(chunk)
            if batch:
                if batch[-1].get("done"):
                    self._settle()  # complete: nothing left to watch (EOF still read)
                return batch

    def _broken(self, what: str) -> BackendError:
        message = f"node data plane broke ({self._node_id}): {what}"
        if self._started:
            return BackendError(message, retryable=False)
        return NodeUnavailable(message)

    def abort(self, err: HerdError) -> None:
        """End this answer with ``err`` now (its node's actor died), from any state."""
        if self._failure is not None or self._ended:
            return
        self._failure = err
        resp = self._resp
        if resp is not None:
            resp.content.set_exception(err)  # wakes a pending read with ``err``
            self.close()
        elif self._opener is not None:
            self._opener.cancel()  # still waiting for the node's answer: open() raises err

    def cancel(self) -> None:
        self.close()

    def finish(self) -> None:
        """The final chunk is here: read the end of the body in the background, so the
        connection goes back to the session's pool, without the caller waiting for it."""
        if self._ended or self._resp is None:
            return
        self._plane.spawn(self._read_to_end())

    async def _read_to_end(self) -> None:
        resp = self._resp
        try:
            async with asyncio.timeout(_END_READ_S):
                while resp is not None and await resp.content.readany():
                    pass  # a well-behaved node sends nothing after its final chunk
        except Exception:  # cut, slow or gone: drop the connection instead
            self.close()
            return
        self._finish()

    def close(self) -> None:
        resp, self._resp = self._resp, None
        if resp is not None and not self._ended:
            resp.close()  # drops the connection: the node sees the client go
        self._finish()

    def _finish(self) -> None:
        self._ended = True
        if self._resp is not None:
            self._resp.release()
        self._settle()

    def _settle(self) -> None:
        """The answer is complete or over: run the ``on_done`` callbacks (once)."""
        callbacks, self._done = self._done, []
        for callback in callbacks:
            callback()


class DeathWatch:
    """Ends the HTTP answers of a NodeActor as soon as Ray reports that actor dead.

    One pending ``NodeActor.watch(WATCH_SPAN)`` call per actor with answers being read,
    renewed while any remain. A dead actor (``RayActorError`` other than the transient
    ``ActorUnavailableError``) aborts its answers with ``NodeUnavailable``: retried
    elsewhere before the first chunk, the dialect's error event after it. An answer that
    came from another actor than the watched handle's (the handle is stale: the node was
    redeployed) is not watched; chunk timeouts still bound it."""

    def __init__(self, span: float = WATCH_SPAN) -> None:
        self._span = span
        # actor handle -> answers being read (weak: an answer dropped unread goes too)
        self._bodies: dict[Any, weakref.WeakSet[HttpBody]] = {}
        self._tasks: dict[Any, asyncio.Task[None]] = {}
        self._unwatchable: set[Any] = set()  # actors without watch() (an older herd)

    def follow(self, handle: Any, node_id: str, body: HttpBody) -> None:
        if handle in self._unwatchable:
            return
        self._bodies.setdefault(handle, weakref.WeakSet()).add(body)
        body.on_done(lambda: self._unfollow(handle, body))
        task = self._tasks.get(handle)
        if task is None or task.done():
            self._tasks[handle] = asyncio.get_running_loop().create_task(
                self._watch(handle, node_id)
            )

    def watching(self, handle: Any) -> int:
        """How many answers of this actor are being watched."""
        return len(self._bodies.get(handle, ()))

    def _unfollow(self, handle: Any, body: HttpBody) -> None:
        bodies = self._bodies.get(handle)
        if bodies is not None:
            bodies.discard(body)
            if not bodies:
                del self._bodies[handle]

    async def _watch(self, handle: Any, node_id: str) -> None:
        while self._bodies.get(handle):
            self._forget_strangers(handle)
            try:
                await handle.watch.remote(self._span)
            except asyncio.CancelledError:
                raise
            except rex.ActorUnavailableError:
                await asyncio.sleep(_UNREACHABLE_PAUSE)  # unreachable for now, not dead
            except rex.RayActorError as exc:
                self._forget_strangers(handle)
                err = NodeUnavailable(f"node actor is gone ({node_id}): {type(exc).__name__}")
                for body in list(self._bodies.pop(handle, ())):
                    body.abort(err)
                return
            except Exception as exc:  # e.g. AttributeError: a NodeActor without watch()
                log.info("cannot watch node %s (%s): chunk timeouts only", node_id, exc)
                self._unwatchable.add(handle)
                self._bodies.pop(handle, None)
                return

    def _forget_strangers(self, handle: Any) -> None:
        """Stop watching answers that another actor than ``handle``'s sent."""
        mine = _actor_id(handle)
        bodies = self._bodies.get(handle, weakref.WeakSet())
        for body in [b for b in bodies if mine and b.instance and b.instance != mine]:
            bodies.discard(body)

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self._bodies.clear()
