"""Run one request through the fleet: decide, open the node's answer, retry or move,
fall back, report the outcome, close the trace.

One attempt loop (:meth:`Dispatcher.stream`) serves every kind and every transport; a
non-streaming request is the same stream folded (:meth:`Dispatcher.complete`). The
decision comes from the dispatcher's own :class:`~herd.routing.mirror.FleetMirror` when it
has a candidate (no router call on the token path), else from the router's ``acquire``,
which owns the holding queue and 404 vs 503. Shared by the Serve ingress and the Python
client, over the ports they hand it (:mod:`herd.dispatch.ports`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass
from typing import Any

from herd.convert.ollama_response import answer_complete, answer_folder
from herd.deadlines import IdleTimeout
from herd.dispatch.attempts import (
    MARGIN_S,
    Attempts,
    as_herd_error,
    first_chunk_error,
    first_chunk_limit,
)
from herd.dispatch.auto_pull import auto_pull
from herd.dispatch.fences import Fence
from herd.dispatch.model_ops import ModelOps
from herd.dispatch.ports import Answer, Chunk, NodePort, RouterPort
from herd.dispatch.prep import RoutePlan, plan_route, settle, with_aliases
from herd.dispatch.router_link import LinkTiming, RouterLink
from herd.domain import Decision, InferenceRequest, Outcome
from herd.errors import (
    BackendError,
    BackendTimeout,
    FleetUnavailable,
    HerdError,
    ModelNotFound,
    NodeUnavailable,
)
from herd.scoring.failures import counts_against_node, nobody_left
from herd.scoring.perf import metrics_from_final_chunk
from herd.settings import Settings
from herd.traces.context import TraceContext


@dataclass(slots=True)
class _Attempt:
    """The attempt that answers: ended once, by the end of its answer or by its caller."""

    dispatcher: Dispatcher
    decision: Decision
    answer: Answer
    t0: float
    ttft: float
    ctx: TraceContext
    own: bool
    fence: Fence  # set when the fleet view shows the node offline: the answer ends then
    ended: bool = False

    def end(self, ok: bool, error: str | None, last: Chunk | None, fault: bool = False) -> None:
        """Report the outcome, stop the node's side if it failed, close the trace.
        ``fault``: the node failed (the failure memory counts it), not its client."""
        if self.ended:
            return
        self.ended = True
        self.fence.close()
        if not ok:
            self.answer.cancel()
        self.dispatcher._report(
            self.decision,
            self.t0,
            ok=ok,
            started=True,
            first_chunk_s=self.ttft,
            error=error,
            node_fault=fault and not ok,
            **metrics_from_final_chunk(last or {}),
        )
        ctx = self.ctx
        if ok:
            ctx.answer(self.ttft, last)
        else:
            ctx.fail(error or "stream failed", 499 if ctx.disconnected else 502)
        if self.own:
            self.dispatcher.traces.finish(ctx)


class AnswerStream:
    """The rest of an answer: an async iterator of batches. Closing it before the end
    (:meth:`aclose`, even before the first batch was asked for) ends the attempt as a
    client disconnect, so the node's slot and the trace never wait for the reaper."""

    __slots__ = ("_attempt", "_gen")

    def __init__(self, gen: AsyncGenerator[list[Chunk], None], attempt: _Attempt) -> None:
        self._gen = gen
        self._attempt = attempt

    def __aiter__(self) -> AnswerStream:
        return self

    def __anext__(self) -> Awaitable[list[Chunk]]:
        return self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()
        if not self._attempt.ended:  # closed before it started: the generator never ran
            self._attempt.ctx.disconnected = True
            self._attempt.end(False, "client disconnected", None)


@dataclass(slots=True)
class Served:
    """A request that has its node: the decision, retries so far, and the first chunks."""

    decision: Decision
    retries: int
    first: list[Chunk]
    rest: AnswerStream
    moves: int = 0  # times nodes handed the request back before this one took it


class Dispatcher:
    """Routes and runs requests over a :class:`NodePort` and a :class:`RouterPort`."""

    def __init__(
        self,
        settings: Settings,
        router: RouterPort,
        nodes: NodePort,
        local_routing: bool = True,
        timing: LinkTiming | None = None,
    ) -> None:
        self.settings = settings
        self.nodes = nodes
        self.link = RouterLink(settings, router, local_routing, timing)
        self.mirror = self.link.mirror
        self.traces = self.link.traces
        self.models = ModelOps(settings, self.link, nodes)
        self.aliases = self.models.aliases  # FLEET_MODEL_ALIASES

    # --- life cycle and router reads ------------------------------------------------------
    def close(self) -> None:
        self.link.stop()
        self.nodes.close()

    async def aclose(self) -> None:
        """``close`` from inside the loop, waiting for the node connections to close."""
        await self.nodes.aclose()
        self.close()

    async def flush(self) -> None:
        await self.link.flush()

    async def status(self) -> dict[str, Any]:
        return await self.link.status()

    async def call_router(self, method: str, *args: Any) -> Any:
        return await self.link.call(method, *args)

    # --- deciding -----------------------------------------------------------------------
    async def _decide(
        self, req: InferenceRequest, exclude: frozenset[str], attempt: int
    ) -> tuple[Decision, InferenceRequest]:
        """Route from the mirror; without a candidate there, ask the router. Returns the
        decision and the request as the chosen node should get it (``settle``)."""
        self.link.ensure_background()
        mirror = self.mirror
        now = time.time()
        snapshot = mirror.snapshot(now) if mirror.fresh(now) else None
        plan = plan_route(req, snapshot, mirror.toggles, exclude)
        decision = None
        if self.link.local_routing:
            decision = mirror.try_route(
                req.request_id, plan.models, now, exclude, attempt, plan.query
            )
        if decision is None:
            # The router must see this request's earlier events before it books it again.
            await self.link.flush()
            try:
                decision = await self._acquire(req, exclude, attempt, plan)
            except ModelNotFound:
                if not mirror.toggles.get("auto_pull") or attempt > 0:
                    raise
                await auto_pull(self.settings, self.models, req.model)
                decision = await self._acquire(req, exclude, attempt, plan)
        else:
            self.link.kicked()
        settled = settle(req, decision, snapshot, self.settings.context_protection)
        if settled.context is not None:
            ctx = settled.context
            fields = {"action": ctx.action, "model": req.model, "node_id": decision.node_id}
            mirror.note("context_protection", {**fields, "note": ctx.note}, now)
        if plan.vram is not None and settled.decision.model == plan.vram.model:
            fields = {"model": req.model, "served": plan.vram.model, "node_id": decision.node_id}
            mirror.note("vram_fallback", fields, now)
        return settled.decision, settled.req

    async def _acquire(
        self, req: InferenceRequest, exclude: frozenset[str], attempt: int, plan: RoutePlan
    ) -> Decision:
        limit = self.settings.holding_queue_timeout + self.settings.actor_call_timeout
        router = self.link.router
        try:
            async with asyncio.timeout(limit):
                return await router.acquire(
                    req.request_id, plan.models, exclude, attempt, plan.query
                )
        except TimeoutError:
            router.forget()
            raise FleetUnavailable("router unavailable: no decision in time") from None
        except FleetUnavailable:
            router.forget()
            raise

    def _report(self, decision: Decision, started_at: float, **fields: Any) -> None:
        outcome = Outcome(
            request_id=decision.request_id,
            node_id=decision.node_id,
            model=decision.model,
            total_s=time.perf_counter() - started_at,
            **fields,
        )
        self.mirror.end(outcome, time.time())
        self.link.kicked()

    # --- the attempt loop -----------------------------------------------------------------
    async def stream(self, req: InferenceRequest) -> Served:
        """Pick a node and wait for its first chunks; retry or move elsewhere on a failure
        before them. The rest of the answer is :attr:`Served.rest`."""
        ctx, own = self.traces.open()
        ctx.request(req)  # the trace's requested model: the name the client sent
        req = with_aliases(req, self.aliases)
        tries = Attempts(self.settings.max_retries)
        limit = first_chunk_limit(self.settings, req.kind)
        while True:
            try:
                decision, sent = await self._decide(req, tries.exclude(), tries.attempt)
            except BaseException as exc:
                err = exc if isinstance(exc, HerdError) else None
                if err is None and isinstance(exc, asyncio.CancelledError):
                    ctx.disconnected = True
                self._end_trace(ctx, own, err)
                raise
            ctx.attempt(decision)
            t0 = time.perf_counter()
            node_id = decision.node_id
            fence = self.link.fences.open(node_id, self.mirror.epoch)
            try:
                answer = await self._open(fence, limit, decision, sent)
            except asyncio.CancelledError:
                fence.close()
                # The client went away (or complete()'s limit ran out) before the first
                # chunk: end the attempt, so its slot on the node is given back.
                self._report(decision, t0, ok=False, error="client disconnected")
                ctx.disconnected = True
                ctx.fail("client disconnected", 499)
                self._end_trace(ctx, own, None)
                raise
            except Exception as exc:
                fence.close()
                err = first_chunk_error(self.settings, req.kind, exc, node_id)
                again = tries.failed(err, node_id)
                fault = counts_against_node(err)
                self._report(
                    decision,
                    t0,
                    ok=False,
                    error=err.message,
                    moved=again == "move",
                    node_fault=fault,
                )
                if again == "retry" and self._nowhere_else(req, tries.exclude()):
                    again = None  # every holder failed it: the client hears now, not after a hold
                if again != "move":
                    self.nodes.forget(node_id)
                ctx.failed_attempt(node_id, err.message, retried=again == "retry")
                if again is not None:
                    continue
                self._end_trace(ctx, own, err)
                raise err from None
            ttft = time.perf_counter() - t0
            attempt = _Attempt(self, decision, answer, t0, ttft, ctx, own, fence)
            rest = AnswerStream(self._rest(req.kind, attempt), attempt)
            return Served(decision, tries.attempt, answer.first, rest, tries.moves)

    async def _open(
        self, fence: Fence, limit: float, decision: Decision, sent: InferenceRequest
    ) -> Answer:
        """The first batch. The node bounds it itself; ``limit`` (the node's plus a margin)
        catches a node that stopped answering, the fence one the fleet view shows offline."""
        node_id = decision.node_id
        fence.wait()
        try:
            async with asyncio.timeout(limit):
                return await self.nodes.open(
                    node_id, sent, decision.model, self.mirror.data_url(node_id)
                )
        except asyncio.CancelledError:
            if fence.caught():  # retried elsewhere, like a refused connection
                raise NodeUnavailable(fence.message()) from None
            raise
        finally:
            fence.stop_waiting()

    async def _rest(self, kind: str, attempt: _Attempt) -> AsyncGenerator[list[Chunk], None]:
        answer, fence = attempt.answer, attempt.fence
        last: Chunk | None = answer.first[-1] if answer.first else None
        ok = False
        error: str | None = None
        fault = True  # the node's fault unless the client went away or sent bad input
        try:
            # One stall deadline for the whole answer (not a timer per batch); the time
            # the consumer holds a batch does not count.
            async with IdleTimeout(self.settings.chunk_timeout + MARGIN_S) as idle:
                while not answer_complete(kind, last):  # up to the final chunk
                    if fence.reason is not None:  # set while the consumer held a batch
                        raise BackendError(fence.message(), retryable=False)
                    fence.wait()
                    try:
                        batch = await answer.next_batch()
                    except StopAsyncIteration:
                        break
                    except asyncio.CancelledError:
                        if fence.caught():
                            raise BackendError(fence.message(), retryable=False) from None
                        raise
                    finally:
                        fence.stop_waiting()
                    if batch:
                        last = batch[-1]
                        idle.pause()
                        yield batch
                        idle.resume()
                    else:
                        idle.touch()
            ok = answer_complete(kind, last)
            if not ok:
                error = "stream ended without a final chunk"
                raise BackendError(error, retryable=False)
            answer.finish()  # the end of the node's answer is not waited for
        except HerdError as exc:
            error = exc.message
            fault = counts_against_node(exc)
            if isinstance(exc, BackendError):
                exc.retryable = False  # output has gone out: never retry it elsewhere
            raise
        except (GeneratorExit, asyncio.CancelledError):
            error = "client disconnected"
            fault = False
            attempt.ctx.disconnected = True
            raise
        except TimeoutError:  # the node's own chunk timeout should have fired first
            limit = self.settings.chunk_timeout + MARGIN_S
            error = (
                f"node {attempt.decision.node_id} sent nothing for {limit:g}s (FLEET_CHUNK_TIMEOUT)"
            )
            raise BackendTimeout(error, retryable=False) from None
        except Exception as exc:
            err = as_herd_error(exc, attempt.decision.node_id)
            error = err.message
            raise BackendError(err.message, retryable=False) from None
        finally:
            attempt.end(ok, error, last, fault)

    def _nowhere_else(self, req: InferenceRequest, exclude: frozenset[str]) -> bool:
        """Has every node that holds the request's models (not offline) failed it or is
        cooling down for them? Only the mirror can tell; without a fresh one, ask the
        router as usual."""
        now = time.time()
        if not self.mirror.fresh(now):
            return False
        snapshot = self.mirror.snapshot(now)
        plan = plan_route(req, snapshot, self.mirror.toggles, exclude)
        return nobody_left(snapshot, plan.models, exclude, now) is not None

    def _end_trace(self, ctx: TraceContext, own: bool, err: HerdError | None) -> None:
        if err is not None:
            ctx.fail(err.message, err.status)
        if own:
            self.traces.finish(ctx)

    # --- non-streaming ------------------------------------------------------------------
    async def complete(self, req: InferenceRequest) -> tuple[Decision, int, Chunk]:
        """One whole response: :meth:`stream`, folded. Bounded like the stream, by
        silence (first-chunk and chunk timeouts), never by a total: a long answer that
        keeps coming is waited for."""
        served = await self.stream(req)
        folded = answer_folder(req.kind)
        try:
            for chunk in served.first:
                folded.feed(chunk)
            async for batch in served.rest:
                for chunk in batch:
                    folded.feed(chunk)
        finally:  # an error chunk stops the fold: the attempt ends now, not at GC
            await served.rest.aclose()
        return served.decision, served.retries, folded.result()
