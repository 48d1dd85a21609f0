"""Run one request through the fleet: decide, call the node, retry, report the outcome.

Shared by the Serve ingress and the Python client (``actors.client``) so both get the
same routing, retries, fallbacks, book-keeping and traces. Decisions are made here, over
a routing view that :class:`~actors.router_link.RouterLink` keeps in step with the
RouterActor. Token path cost: no router call when the view
has a candidate, one streaming-generator hop from the NodeActor. Without a candidate
(view not loaded or stale, no node can serve, unknown model) the attempt goes through
the awaited ``router.acquire``, which owns the holding queue and 404 vs 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ray

from actors import NAMESPACE, node_actor_name
from actors.auto_pull import auto_pull
from actors.errors import unwrap
from actors.node_stream import (
    DataPlaneUnreachable,
    HttpBody,
    HttpDataPlane,
    ray_cancel,
    ray_next,
)
from actors.router_link import RouterLink
from herd.convert.ollama_response import OllamaAggregator
from herd.dispatch.prep import RoutePlan, plan_route, settle
from herd.domain import Decision, InferenceRequest, Outcome
from herd.errors import (
    BackendError,
    FleetUnavailable,
    HerdError,
    ModelNotFound,
    NodeUnavailable,
    Rebalanced,
)
from herd.scoring.perf import metrics_from_final_chunk
from herd.settings import Settings
from herd.traces.context import TraceContext

Chunk = dict[str, Any]
_MARGIN = 5.0  # seconds added to node-side timeouts for the actor hop itself
_MAX_MOVES = 3  # times one request may be handed back by nodes (rebalancer, drain)


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


class Dispatcher(RouterLink):
    """Routes and runs requests; the routing view and reports live in :class:`RouterLink`."""

    def __init__(self, settings: Settings, router: Any = None, local_routing: bool = True) -> None:
        super().__init__(settings, router, local_routing)
        self._nodes: dict[str, Any] = {}
        self._plane = HttpDataPlane(settings)  # used when FLEET_DATA_PLANE=http

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self._plane.close()

    async def aclose(self) -> None:
        """``close`` from inside the loop, waiting for the data-plane session to close."""
        await self._plane.aclose()
        self.close()

    def _data_url(self, node_id: str) -> str:
        if self.settings.data_plane != "http":
            return ""
        return self.view.data_url(node_id)

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
    async def _decide(
        self, req: InferenceRequest, exclude: set[str], attempt: int
    ) -> tuple[Decision, InferenceRequest]:
        """Route from the local view; without a candidate there, ask the router. Returns
        the decision and the request as the chosen node should get it (``settle``)."""
        self._ensure_background()
        now = time.time()
        snapshot = self.view.snapshot(now) if self.view.fresh(now) else None
        plan = plan_route(req, snapshot, self.view.toggles, frozenset(exclude))
        decision = None
        if self.local_routing:
            decision = self.view.try_route(
                req.request_id, plan.models, now, frozenset(exclude), attempt, plan.query
            )
        if decision is None:
            # The router must see this request's earlier events before it books it again.
            await self.flush()
            try:
                decision = await self._acquire(req, exclude, attempt, plan)
            except ModelNotFound:
                if not self.view.toggles.get("auto_pull") or attempt > 0:
                    raise
                await auto_pull(self, req.model)
                decision = await self._acquire(req, exclude, attempt, plan)
        else:
            self._kicked()
        settled = settle(req, decision, snapshot, self.settings.context_protection)
        if settled.context is not None:
            ctx = settled.context
            self.view.note(
                "context_protection",
                {
                    "action": ctx.action,
                    "model": req.model,
                    "node_id": decision.node_id,
                    "note": ctx.note,
                },
                now,
            )
        if plan.vram is not None and settled.decision.model == plan.vram.model:
            self.view.note(
                "vram_fallback",
                {"model": req.model, "served": plan.vram.model, "node_id": decision.node_id},
                now,
            )
        return settled.decision, settled.req

    async def _acquire(
        self, req: InferenceRequest, exclude: set[str], attempt: int, plan: RoutePlan
    ) -> Decision:
        limit = self.settings.holding_queue_timeout + self.settings.actor_call_timeout
        try:
            ref = self.router().acquire.remote(
                req.request_id, plan.models, frozenset(exclude), attempt, query=plan.query
            )
            try:
                async with asyncio.timeout(limit):
                    decision: Decision = await ref
                    return decision
            except (asyncio.CancelledError, TimeoutError):
                # The client went away (or the router stopped answering): take the
                # request out of the holding queue so it does not take a node later.
                ray.cancel(ref)
                raise
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

    # --- attempts and traces --------------------------------------------------------------
    async def _traced_decide(
        self,
        req: InferenceRequest,
        exclude: set[str],
        attempt: int,
        ctx: TraceContext,
        own: bool,
    ) -> tuple[Decision, InferenceRequest]:
        try:
            decision, sent = await self._decide(req, exclude, attempt)
        except BaseException as exc:
            err = exc if isinstance(exc, HerdError) else None
            if err is None and isinstance(exc, asyncio.CancelledError):
                ctx.disconnected = True
            self._end_trace(ctx, own, err)
            raise
        ctx.attempt(decision)
        return decision, sent

    def _again(
        self,
        req: InferenceRequest,
        decision: Decision,
        t0: float,
        err: HerdError,
        ctx: TraceContext,
        exclude: set[str],
        attempt: int,
        moves: int,
    ) -> bool:
        """Book a failed attempt; True when the request should go to another node
        (moved off a node before any output, or a retryable failure with retries left).
        A failed node is excluded for the rest of the request; a node that handed the
        request back (rebalancer, drain) only for the next decision (the caller's job)."""
        moved = isinstance(err, Rebalanced) and moves < _MAX_MOVES
        self._report(decision, t0, ok=False, error=err.message, moved=moved)
        if not moved:
            self._nodes.pop(decision.node_id, None)
        retry = not moved and _retryable(err) and attempt < self.settings.max_retries
        ctx.failed_attempt(decision.node_id, err.message, retried=retry)
        if retry:
            exclude.add(decision.node_id)
        return moved or retry

    def _end_trace(self, ctx: TraceContext, own: bool, err: HerdError | None) -> None:
        if err is not None:
            ctx.fail(err.message, err.status)
        if own:
            self.traces.finish(ctx)

    # --- streaming ----------------------------------------------------------------------
    async def stream(self, req: InferenceRequest) -> Served:
        """Pick a node and wait for its first chunks; retry elsewhere on failure before them."""
        ctx, own = self.traces.open()
        ctx.request(req)
        exclude: set[str] = set()
        attempt = moves = 0
        avoid: set[str] = set()  # the node that just handed the request back
        while True:
            decision, sent = await self._traced_decide(req, exclude | avoid, attempt, ctx, own)
            avoid = set()
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
                        handle = self.node(decision.node_id)  # its death ends the body
                        body = self._plane.body(url, decision.node_id, handle)
                        try:
                            first = await body.open(sent, decision.model)
                            nxt, cancel = body.next_batch, body.close
                        except DataPlaneUnreachable:
                            # Its address may be stale (the actor was just replaced and
                            # its first heartbeat is not here yet): ask the actor itself.
                            body, url = None, ""
                    if not url:
                        gen = self.node(decision.node_id).stream.remote(sent, decision.model)
                        nxt, cancel = ray_next(gen), ray_cancel(gen)
                        try:
                            first = await nxt()
                        except StopAsyncIteration:
                            first = []
            except Exception as exc:
                if body is not None:
                    body.close()
                err = unwrap(exc, decision.node_id)
                if self._again(req, decision, t0, err, ctx, exclude, attempt, moves):
                    if isinstance(err, Rebalanced) and moves < _MAX_MOVES:
                        moves += 1
                        avoid = {decision.node_id}
                    else:
                        attempt += 1
                    continue
                self._end_trace(ctx, own, err)
                raise err from None
            ttft = time.perf_counter() - t0
            rest = self._rest(nxt, cancel, decision, t0, ttft, first, ctx, own)
            return Served(decision, attempt, first, rest)

    async def _rest(
        self,
        nxt: Callable[[], Awaitable[list[Chunk]]],
        cancel: Callable[[], None],
        decision: Decision,
        t0: float,
        ttft: float,
        first: list[Chunk],
        ctx: TraceContext,
        own: bool,
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
            ctx.disconnected = True
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
                error=error,
                **metrics_from_final_chunk(last or {}),
            )
            if ok:
                ctx.answer(ttft, last)
            else:
                ctx.fail(error or "stream failed", 499 if ctx.disconnected else 502)
            if own:
                self.traces.finish(ctx)

    # --- non-streaming ------------------------------------------------------------------
    async def complete(self, req: InferenceRequest) -> tuple[Decision, int, Chunk]:
        """One whole response; retries on another node when a node fails."""
        if self.settings.data_plane == "http" and req.kind in ("chat", "generate"):
            return await self._complete_folded(req)
        ctx, own = self.traces.open()
        ctx.request(req)
        exclude: set[str] = set()
        attempt = moves = 0
        avoid: set[str] = set()  # the node that just handed the request back
        while True:
            decision, sent = await self._traced_decide(req, exclude | avoid, attempt, ctx, own)
            avoid = set()
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(self.settings.node.request_timeout):
                    result: Chunk = await self.node(decision.node_id).complete.remote(
                        sent, decision.model
                    )
            except Exception as exc:
                err = unwrap(exc, decision.node_id)
                if self._again(req, decision, t0, err, ctx, exclude, attempt, moves):
                    if isinstance(err, Rebalanced) and moves < _MAX_MOVES:
                        moves += 1
                        avoid = {decision.node_id}
                    else:
                        attempt += 1
                    continue
                self._end_trace(ctx, own, err)
                raise err from None
            elapsed = time.perf_counter() - t0
            ctx.answer(elapsed, result)
            if own:
                self.traces.finish(ctx)
            self._report(
                decision,
                t0,
                ok=True,
                started=True,
                first_chunk_s=elapsed,
                **metrics_from_final_chunk(result),
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
