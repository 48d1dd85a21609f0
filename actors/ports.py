"""The dispatcher's ports over Ray and the nodes' HTTP data plane.

:class:`RayRouter` reaches the RouterActor, :class:`RayNodes` the NodeActors; both turn
Ray's exceptions into herd errors (``actors.errors.unwrap``) and look handles up off the
event loop (``actors.handles``). :meth:`RayNodes.transport` is the one place that picks
how an answer travels. :func:`ray_dispatcher` wires a
:class:`~herd.dispatch.dispatcher.Dispatcher` over both: the ingress and the Python
client use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import ray

from actors import ROUTER_NAME, node_actor_name
from actors.errors import herd_cause, unwrap
from actors.handles import HandleCache
from actors.http_plane import DataPlaneUnreachable, HttpDataPlane
from herd.dispatch.dispatcher import Dispatcher
from herd.dispatch.ports import Answer, Chunk, read_first
from herd.domain import Decision, InferenceRequest
from herd.errors import FleetUnavailable, HerdError, NodeUnavailable
from herd.routing.events import Event, MirrorData
from herd.scoring import RouteQuery
from herd.settings import Settings

# Kinds whose requests and answers are plain JSON go over the HTTP data plane when it is
# on; images and audio carry bytes (a PNG, an upload) and go through the actor.
HTTP_KINDS = frozenset({"chat", "generate", "embed", "embeddings"})

Transport = Literal["http", "ray"]


class RayRouter:
    """The :class:`~herd.dispatch.ports.RouterPort` over the RouterActor."""

    def __init__(self, settings: Settings, handle: Any = None) -> None:
        self._handles = HandleCache(settings.actor_call_timeout)
        self._fixed = handle

    async def _router(self) -> Any:
        if self._fixed is not None:
            return self._fixed
        try:
            handle = await self._handles.get(ROUTER_NAME)
        except TimeoutError:
            raise FleetUnavailable("router unavailable: the Ray GCS did not answer") from None
        if handle is None:
            raise FleetUnavailable("the herd router is not running (run `herd deploy`)")
        return handle

    def forget(self) -> None:
        self._fixed = None
        self._handles.forget(ROUTER_NAME)

    def _failed(self, exc: BaseException) -> HerdError:
        cause = herd_cause(exc)
        if cause is not None:
            return cause  # the router raised it: 404, 503 after the holding queue, 400
        self.forget()
        return FleetUnavailable(f"router unavailable: {unwrap(exc).message}")

    async def call(self, method: str, *args: Any) -> Any:
        router = await self._router()
        try:
            return await getattr(router, method).remote(*args)
        except (asyncio.CancelledError, TimeoutError):
            raise
        except Exception as exc:
            raise self._failed(exc) from None

    async def acquire(
        self,
        request_id: str,
        models: Sequence[str],
        exclude: frozenset[str],
        attempt: int,
        query: RouteQuery | None,
    ) -> Decision:
        router = await self._router()
        ref = router.acquire.remote(request_id, models, exclude, attempt, query=query)
        try:
            decision: Decision = await ref
            return decision
        except asyncio.CancelledError:
            # The client went away (or the dispatcher's bound ran out): take the request
            # out of the holding queue so it does not take a node later.
            ray.cancel(ref)
            raise
        except Exception as exc:
            raise self._failed(exc) from None

    async def report(self, source: str, seq: int, events: Sequence[Event]) -> None:
        await self.call("report", source, seq, events)

    async def view(self, epoch: str | None, since: int, wait: float) -> MirrorData | None:
        data: MirrorData | None = await self.call("view", epoch, since, wait)
        return data


class RayAnswer:
    """A node's answer read from the NodeActor's Ray streaming generator."""

    __slots__ = ("_gen", "_node_id", "first")

    def __init__(self, gen: Any, node_id: str) -> None:
        self._gen = gen
        self._node_id = node_id
        self.first: list[Chunk] = []

    async def next_batch(self) -> list[Chunk]:
        try:
            batch: list[Chunk] = await (await self._gen.__anext__())
            return batch
        except (StopAsyncIteration, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise unwrap(exc, self._node_id) from None

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            ray.cancel(self._gen)

    def finish(self) -> None:
        """Nothing to wind down: the actor runs its generator to the end by itself."""


class RayNodes:
    """The :class:`~herd.dispatch.ports.NodePort` over the NodeActors and their HTTP
    data planes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._handles = HandleCache(settings.actor_call_timeout)
        self.plane = HttpDataPlane(settings)

    async def handle(self, node_id: str) -> Any:
        try:
            handle = await self._handles.get(node_actor_name(node_id))
        except TimeoutError:
            raise NodeUnavailable(f"node {node_id}: the Ray GCS did not answer") from None
        if handle is None:
            raise NodeUnavailable(f"node {node_id} has no actor")
        return handle

    def forget(self, node_id: str) -> None:
        self._handles.forget(node_actor_name(node_id))

    def transport(self, kind: str, data_url: str) -> Transport:
        """How an answer of ``kind`` from a node with ``data_url`` travels."""
        if self.settings.data_plane == "http" and data_url and kind in HTTP_KINDS:
            return "http"
        return "ray"

    async def open(self, node_id: str, req: InferenceRequest, model: str, data_url: str) -> Answer:
        handle = await self.handle(node_id)
        if self.transport(req.kind, data_url) == "http":
            body = self.plane.body(data_url, node_id, handle)  # its actor's death ends it
            try:
                await body.open(req, model)
                return body
            except DataPlaneUnreachable:
                # Its address may be stale (the actor was just replaced and its first
                # heartbeat is not here yet): ask the actor itself this time.
                pass
        try:
            answer = RayAnswer(handle.stream.remote(req, model), node_id)
        except Exception as exc:
            raise unwrap(exc, node_id) from None
        await read_first(answer)
        return answer

    async def call(self, node_id: str, method: str, *args: Any) -> Any:
        handle = await self.handle(node_id)
        try:
            return await getattr(handle, method).remote(*args)
        except (asyncio.CancelledError, TimeoutError):
            raise
        except Exception as exc:
            raise unwrap(exc, node_id) from None

    async def pull(self, node_id: str, model: str, insecure: bool) -> AsyncIterator[Chunk]:
        handle = await self.handle(node_id)
        try:
            gen = handle.pull.remote(model, insecure)
            while True:
                try:
                    line: Chunk = await (await gen.__anext__())
                except StopAsyncIteration:
                    return
                yield line
        except (asyncio.CancelledError, HerdError):
            raise
        except Exception as exc:
            raise unwrap(exc, node_id) from None

    def close(self) -> None:
        self.plane.close()

    async def aclose(self) -> None:
        await self.plane.aclose()


def ray_dispatcher(
    settings: Settings, router: Any = None, local_routing: bool = True
) -> Dispatcher:
    """A dispatcher over the running cluster's RouterActor (or ``router``, a handle) and
    NodeActors."""
    return Dispatcher(settings, RayRouter(settings, router), RayNodes(settings), local_routing)
