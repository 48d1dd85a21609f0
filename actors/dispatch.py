"""Run one request through the fleet: decide, call the node, retry, report the outcome.

Shared by the Serve ingress and the Python client (``actors.client``) so both get the
same routing, retries, fallbacks and book-keeping. Decisions are made here, over a
routing view (``herd.routing_view.LocalRouter``) that two background tasks keep in
step with the RouterActor: one long-polls ``router.view``, the other sends begin/end
events in batches (``router.report``). Token path cost: no router call when the view
has a candidate, one streaming-generator hop from the NodeActor. Without a candidate
(view not loaded or stale, no node can serve, unknown model) the attempt goes through
the awaited ``router.acquire``, which owns the holding queue and 404 vs 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import ray

from actors import NAMESPACE, ROUTER_NAME, node_actor_name
from actors.errors import unwrap
from actors.node_stream import HttpBody, ray_cancel, ray_next
from herd.convert.ollama_response import OllamaAggregator
from herd.errors import (
    BackendError,
    FleetUnavailable,
    HerdError,
    ModelNotFound,
    NodeUnavailable,
)
from herd.models import Decision, InferenceRequest, Outcome
from herd.routing_view import REPORT_BATCH, LocalRouter, weights_from
from herd.settings import Settings

Chunk = dict[str, Any]
_MARGIN = 5.0  # seconds added to node-side timeouts for the actor hop itself
_VIEW_WAIT = 0.5  # long-poll of router.view: the router answers at once on a change
_VIEW_GAP = 0.1  # at least this long between two views (under load every report is one)
_VIEW_RETRY = 1.0  # after a failed view call


def _retryable(err: HerdError) -> bool:
    if isinstance(err, BackendError):
        return err.retryable
    return isinstance(err, ModelNotFound | NodeUnavailable)


@dataclass(slots=True)
class Served:
    """A request that has its node: the decision, retries so far, and the first chunks."""

    decision: Decision
    retries: int
    first: list[Chunk]
    rest: AsyncIterator[list[Chunk]]


class Dispatcher:
    def __init__(self, settings: Settings, router: Any = None, local_routing: bool = True) -> None:
        self.settings = settings
        self._router = router
        self._nodes: dict[str, Any] = {}
        self.local_routing = local_routing
        self.view = LocalRouter(
            uuid.uuid4().hex,
            weights_from(settings),
            settings.heartbeat_timeout,
            settings.heartbeat_offline,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._send_lock: asyncio.Lock | None = None
        self._kick: asyncio.Event | None = None
        self._http: aiohttp.ClientSession | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None

    # --- the routing view (background) -----------------------------------------------
    def _ensure_background(self) -> None:
        """Start the view refresher and the reporter on the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and all(not t.done() for t in self._tasks):
            return
        for task in self._tasks:
            task.cancel()
        self._loop = loop
        self._send_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._tasks = [loop.create_task(self._report_loop())]
        if self.local_routing:
            self._tasks.append(loop.create_task(self._refresh_loop()))

    async def _refresh_loop(self) -> None:
        view = self.view
        while True:
            try:
                async with asyncio.timeout(_VIEW_WAIT + self.settings.actor_call_timeout):
                    data = await self.router().view.remote(view.epoch, view.version, _VIEW_WAIT)
                if data is None:
                    view.confirm(time.time())
                else:
                    view.load(data, time.time())
                await asyncio.sleep(_VIEW_GAP)
            except asyncio.CancelledError:
                raise
            except Exception:  # router gone or slow: route through acquire meanwhile
                view.invalidate()
                self._router = None
                await asyncio.sleep(_VIEW_RETRY)

    async def _report_loop(self) -> None:
        assert self._kick is not None
        kick = self._kick
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kick.wait(), timeout=self.view.next_due_in(time.time()))
            kick.clear()
            if self.view.due(time.time()):
                await self.flush()

    async def flush(self) -> None:
        """Send every pending begin/end event to the router (one batch at a time, in order)."""
        if self._send_lock is None:
            return
        async with self._send_lock:
            batch = self.view.take_batch()
            if batch is None:
                return
            seq, events = batch
            try:
                async with asyncio.timeout(self.settings.actor_call_timeout):
                    await self.router().report.remote(self.view.source, seq, events)
            except Exception:  # the router is gone; its restart rebuilds from heartbeats
                self.view.batch_lost(seq)
                self._router = None

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        session, self._http = self._http, None
        if session is not None and not session.closed:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to close on
                asyncio.get_running_loop().create_task(session.close())

    async def aclose(self) -> None:
        """``close`` from inside the loop, waiting for the data-plane session to close."""
        session, self._http = self._http, None
        self.close()
        if session is not None:
            await session.close()

    def _session(self) -> aiohttp.ClientSession:
        """One keep-alive session for the HTTP data plane, made in the running loop."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._http.closed or self._http_loop is not loop:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0),
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
            )
            self._http_loop = loop
        return self._http

    def _data_url(self, node_id: str) -> str:
        if self.settings.data_plane != "http":
            return ""
        return self.view.data_url(node_id)

    # --- handles ----------------------------------------------------------------------
    def router(self) -> Any:
        if self._router is None:
            try:
                self._router = ray.get_actor(ROUTER_NAME, namespace=NAMESPACE)
            except ValueError:
                raise FleetUnavailable(
                    "the herd router is not running (run `herd deploy`)"
                ) from None
        return self._router

    def node(self, node_id: str) -> Any:
        handle = self._nodes.get(node_id)
        if handle is None:
            try:
                handle = ray.get_actor(node_actor_name(node_id), namespace=NAMESPACE)
            except ValueError:
                raise NodeUnavailable(f"node {node_id} has no actor") from None
            self._nodes[node_id] = handle
        return handle

    # --- router calls -----------------------------------------------------------------
    async def _decide(self, req: InferenceRequest, exclude: set[str], attempt: int) -> Decision:
        """Route from the local view; without a candidate there, ask the router."""
        self._ensure_background()
        if self.local_routing:
            decision = self.view.try_route(
                req.request_id,
                (req.model, *req.fallback_models),
                time.time(),
                frozenset(exclude),
                attempt,
            )
            if decision is not None:
                self._kicked()
                return decision
        # The router must see this request's earlier events before it books it again.
        await self.flush()
        return await self._acquire(req, exclude, attempt)

    def _kicked(self) -> None:
        if self._kick is not None and self.view.pending >= REPORT_BATCH:
            self._kick.set()

    async def _acquire(self, req: InferenceRequest, exclude: set[str], attempt: int) -> Decision:
        models = (req.model, *req.fallback_models)
        limit = self.settings.holding_queue_timeout + self.settings.actor_call_timeout
        try:
            async with asyncio.timeout(limit):
                decision: Decision = await self.router().acquire.remote(
                    req.request_id, models, frozenset(exclude), attempt
                )
                return decision
        except HerdError:
            raise
        except Exception as exc:
            err = unwrap(exc)
            if isinstance(err, ModelNotFound | FleetUnavailable) or type(err) is HerdError:
                raise err from None
            self._router = None
            raise FleetUnavailable(f"router unavailable: {err.message}") from None

    def _report(self, decision: Decision, started_at: float, **fields: Any) -> None:
        outcome = Outcome(
            request_id=decision.request_id,
            node_id=decision.node_id,
            model=decision.model,
            total_s=time.perf_counter() - started_at,
            **fields,
        )
        self.view.end(outcome, time.time())
        self._kicked()

    # --- streaming ----------------------------------------------------------------------
    async def stream(self, req: InferenceRequest) -> Served:
        """Pick a node and wait for its first chunks; retry elsewhere on failure before them."""
        exclude: set[str] = set()
        attempt = 0
        while True:
            decision = await self._decide(req, exclude, attempt)
            t0 = time.perf_counter()
            url = self._data_url(decision.node_id)
            body: HttpBody | None = None
            nxt: Callable[[], Awaitable[list[Chunk]]]
            cancel: Callable[[], None]
            try:
                # The node enforces the backend's first-chunk timeout itself; this outer
                # bound (plus a margin) catches a node that stopped answering.
                async with asyncio.timeout(self.settings.first_chunk_timeout + _MARGIN):
                    if url:
                        body = HttpBody(self._session(), url, decision.node_id)
                        first = await body.open(req, decision.model)
                        nxt, cancel = body.next_batch, body.close
                    else:
                        gen = self.node(decision.node_id).stream.remote(req, decision.model)
                        nxt, cancel = ray_next(gen), ray_cancel(gen)
                        try:
                            first = await nxt()
                        except StopAsyncIteration:
                            first = []
            except Exception as exc:
                if body is not None:
                    body.close()
                err = unwrap(exc, decision.node_id)
                self._report(decision, t0, ok=False, error=err.message)
                self._nodes.pop(decision.node_id, None)
                if _retryable(err) and attempt < self.settings.max_retries:
                    exclude.add(decision.node_id)
                    attempt += 1
                    continue
                raise err from None
            ttft = time.perf_counter() - t0
            return Served(
                decision, attempt, first, self._rest(nxt, cancel, decision, t0, ttft, first)
            )

    async def _rest(
        self,
        nxt: Callable[[], Awaitable[list[Chunk]]],
        cancel: Callable[[], None],
        decision: Decision,
        t0: float,
        ttft: float,
        first: list[Chunk],
    ) -> AsyncIterator[list[Chunk]]:
        last: Chunk | None = first[-1] if first else None
        ok = False
        error: str | None = None
        try:
            if last is None or not last.get("done"):
                timeout = self.settings.chunk_timeout + _MARGIN
                while True:
                    try:
                        async with asyncio.timeout(timeout):
                            batch: list[Chunk] = await nxt()
                    except StopAsyncIteration:
                        break
                    if batch:
                        last = batch[-1]
                    yield batch
            ok = last is not None and bool(last.get("done"))
            if not ok:
                error = "stream ended without a final chunk"
                raise BackendError(error, retryable=False)
        except HerdError as exc:
            error = exc.message
            raise
        except (GeneratorExit, asyncio.CancelledError):
            error = "client disconnected"
            raise
        except Exception as exc:
            err = unwrap(exc, decision.node_id)
            error = err.message
            raise BackendError(err.message, retryable=False) from None
        finally:
            if not ok:
                cancel()  # stop the node's side (Ray generator or HTTP connection)
            self._report(
                decision,
                t0,
                ok=ok,
                started=True,
                first_chunk_s=ttft,
                prompt_tokens=int((last or {}).get("prompt_eval_count") or 0),
                completion_tokens=int((last or {}).get("eval_count") or 0),
                error=error,
            )

    # --- non-streaming ------------------------------------------------------------------
    async def complete(self, req: InferenceRequest) -> tuple[Decision, int, Chunk]:
        """One whole response; retries on another node when a node fails."""
        if self.settings.data_plane == "http" and req.kind in ("chat", "generate"):
            return await self._complete_folded(req)
        exclude: set[str] = set()
        attempt = 0
        while True:
            decision = await self._decide(req, exclude, attempt)
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(self.settings.node.request_timeout):
                    result: Chunk = await self.node(decision.node_id).complete.remote(
                        req, decision.model
                    )
            except Exception as exc:
                err = unwrap(exc, decision.node_id)
                self._report(decision, t0, ok=False, error=err.message)
                self._nodes.pop(decision.node_id, None)
                if _retryable(err) and attempt < self.settings.max_retries:
                    exclude.add(decision.node_id)
                    attempt += 1
                    continue
                raise err from None
            elapsed = time.perf_counter() - t0
            self._report(
                decision,
                t0,
                ok=True,
                started=True,
                first_chunk_s=elapsed,
                prompt_tokens=int(result.get("prompt_eval_count") or 0),
                completion_tokens=int(result.get("eval_count") or 0),
            )
            return decision, attempt, result

    async def _complete_folded(self, req: InferenceRequest) -> tuple[Decision, int, Chunk]:
        """Non-streaming chat/generate over the data plane: the stream, folded here."""
        async with asyncio.timeout(self.settings.node.request_timeout):
            served = await self.stream(req)
            folded = OllamaAggregator(req.kind)  # type: ignore[arg-type]
            for chunk in served.first:
                folded.feed(chunk)
            async for batch in served.rest:
                for chunk in batch:
                    folded.feed(chunk)
            return served.decision, served.retries, folded.result()

    async def status(self) -> dict[str, Any]:
        await self.flush()  # so the router's in-flight book includes what we started
        try:
            async with asyncio.timeout(self.settings.actor_call_timeout):
                result: dict[str, Any] = await self.router().status.remote()
                return result
        except HerdError:
            raise
        except Exception as exc:
            self._router = None
            raise FleetUnavailable(f"router unavailable: {unwrap(exc).message}") from None
