"""The in-process dispatcher of ``bench/fleet.py``: the real router and node code, no Ray.

What ``actors/dispatch.py``, ``actors/router.py`` and ``actors/node.py`` do over Ray,
done here with direct calls on the real classes:

* one :class:`herd.node.agent.NodeAgent` per emulated device (over the real
  :class:`herd.backends.ollama.OllamaBackend`) pushes a heartbeat to the real
  :class:`herd.routing.core.RouterCore` every ``heartbeat_interval``, like the NodeActor's
  loop; each agent has its device's memory budget (``FLEET_NODE_MEMORY_BYTES``) and
  ``OLLAMA_NUM_PARALLEL``, so it reports the emulated device, not the bench machine;
* the router's upkeep round (zombie reaper, rebalancer, pre-warm) runs every heartbeat
  interval as in the RouterActor, and its moves and warms are carried out on the
  NodeAgents;
* every request is converted by the real ingress code (``ollama_chat_request``), is
  planned and settled around its decision like in the dispatcher (``plan_route`` /
  ``settle``: the request's features for the policies, VRAM fallback, context
  protection), takes the decision from ``RouterCore.acquire`` (holding queue
  included), streams from the chosen node's ``NodeAgent.stream`` and, like
  ``Dispatcher.stream``, goes to another node when it fails before its first chunk
  (exclude set, up to ``max_retries``; a request handed back by the rebalancer moves
  without counting a retry); every attempt ends with ``RouterCore.release(Outcome)``
  carrying TTFT, latency and the final chunk's metrics (token counts, load / prompt /
  generation durations) that feed the router's PerfBook.

The only difference from the Ray path: decisions come from ``RouterCore.acquire``
directly (the ingress's mirrored view runs the same ``decide()`` over the same state).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from herd.backends.media import MediaEngines
from herd.backends.ollama import OllamaBackend
from herd.convert.ollama_request import ollama_chat_request
from herd.dispatch.prep import plan_route, settle
from herd.domain import Decision, InferenceRequest, Outcome
from herd.errors import BackendError, HerdError, ModelNotFound, NodeUnavailable, Rebalanced
from herd.node.agent import NodeAgent
from herd.routing.core import RouterCore
from herd.routing.maintenance import Warm
from herd.scoring.perf import metrics_from_final_chunk
from herd.settings import Settings
from herd.wire.ollama import ChatRequest

_MARGIN_S = 5.0  # as actors/dispatch.py: added to the node's first-chunk timeout
_MAX_MOVES = 3  # as actors/dispatch.py: times one request may be handed back by nodes

Chunks = AsyncGenerator[list[dict[str, Any]], None]


def retryable(err: HerdError) -> bool:
    """Same rule as ``actors.dispatch._retryable``: retry on another node or not."""
    if isinstance(err, BackendError):
        return err.retryable
    return isinstance(err, ModelNotFound | NodeUnavailable)


@dataclass(slots=True)
class SimNode:
    """One emulated device as the driver sees it."""

    name: str
    url: str
    agent: NodeAgent
    alive: bool = True


@dataclass(slots=True)
class RequestResult:
    index: int
    model: str
    ok: bool
    arrival: float  # perf_counter when the request arrived
    node: str | None = None
    served_model: str | None = None
    retries: int = 0
    moves: int = 0
    ttft_s: float | None = None  # wall seconds from arrival to the first chunk
    latency_s: float | None = None  # wall seconds from arrival to the final chunk
    completion_tokens: int = 0
    error: str | None = None


def chat_request(index: int, model: str, prompt: str, num_predict: int) -> InferenceRequest:
    """An ``/api/chat`` request as herd's Ollama ingress converts it."""
    body = ChatRequest.model_validate(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "options": {"num_predict": num_predict},
            "stream": True,
        }
    )
    return ollama_chat_request(body, request_id=f"req-{index}", received_at=time.time())


class FleetDriver:
    def __init__(
        self, settings: Settings, nodes: list[SimNode], core: RouterCore | None = None
    ) -> None:
        self.settings = settings
        self.core = core if core is not None else RouterCore(settings)
        self.nodes = {n.name: n for n in nodes}
        self.upkeep_counts = {"moves": 0, "warms": 0, "reaped": 0}
        self._tasks: list[asyncio.Task[Any]] = []
        self._warming: set[asyncio.Task[None]] = set()

    # --- heartbeats (the NodeActor's loop) --------------------------------------------
    async def push_heartbeat(self, node: SimNode) -> None:
        hb = await node.agent.heartbeat()
        if node.alive:  # a beat that was in flight when the node died is lost with it
            self.core.heartbeat(hb)

    async def start(self) -> None:
        """First heartbeat of every node (so the router knows the fleet), then the loops."""
        await asyncio.gather(*(self.push_heartbeat(n) for n in self.nodes.values()))
        interval = self.settings.heartbeat_interval
        for i, node in enumerate(self.nodes.values()):
            phase = interval * (i + 1) / (len(self.nodes) + 1)
            self._tasks.append(asyncio.create_task(self._beat_loop(node, phase)))
        self._tasks.append(asyncio.create_task(self._upkeep_loop()))

    async def _beat_loop(self, node: SimNode, phase: float) -> None:
        await asyncio.sleep(phase)
        while node.alive:
            with contextlib.suppress(Exception):  # as the NodeActor: never let the loop die
                await self.push_heartbeat(node)
            await asyncio.sleep(self.settings.heartbeat_interval)

    def node_died(self, name: str) -> None:
        """The device is gone: no more heartbeats from it (the router notices by itself)."""
        self.nodes[name].alive = False

    # --- upkeep (the RouterActor's loop) ------------------------------------------------
    async def _upkeep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            with contextlib.suppress(Exception):  # as the RouterActor: never let it die
                self._upkeep_once()

    def _upkeep_once(self) -> None:
        plan = self.core.upkeep()
        self.upkeep_counts["reaped"] += len(plan.reaped)
        for move in plan.moves:
            node = self.nodes.get(move.from_node)
            if node is None or not node.alive:
                continue
            shed = node.agent.shed_pending(move.model, move.count)
            self.upkeep_counts["moves"] += shed
            self.core.moved(move, shed)
        for warm in plan.warms:
            node = self.nodes.get(warm.node_id)
            if node is not None and node.alive:
                task = asyncio.create_task(self._warm(node, warm))
                self._warming.add(task)
                task.add_done_callback(self._warming.discard)

    async def _warm(self, node: SimNode, warm: Warm) -> None:
        ok = await node.agent.prewarm(warm.model)
        self.upkeep_counts["warms"] += int(ok)
        self.core.warmed(warm, ok)

    async def stop(self) -> None:
        for task in [*self._tasks, *self._warming]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._warming, return_exceptions=True)
        for node in self.nodes.values():
            await node.agent.stop()

    # --- requests (Dispatcher.stream + its _rest) ---------------------------------------
    def _release(
        self, decision: Decision, t0: float, chunk: dict[str, Any] | None, **fields: Any
    ) -> None:
        outcome = Outcome(
            request_id=decision.request_id,
            node_id=decision.node_id,
            model=decision.model,
            total_s=time.perf_counter() - t0,
            **fields,
            **metrics_from_final_chunk(chunk or {}),
        )
        self.core.release(outcome)

    async def _decide(
        self, req: InferenceRequest, exclude: set[str], attempt: int
    ) -> tuple[Decision, InferenceRequest]:
        """As ``Dispatcher._decide``: plan (features, VRAM fallback), decide, settle
        (context protection); returns the decision and the request the node gets."""
        snapshot = self.core.snapshot(time.time())
        plan = plan_route(req, snapshot, self.core.toggles, frozenset(exclude))
        decision = await self.core.acquire(
            req.request_id, plan.models, frozenset(exclude), attempt, query=plan.query
        )
        settled = settle(req, decision, snapshot, self.settings.context_protection)
        return settled.decision, settled.req

    async def serve(self, req: InferenceRequest, index: int) -> RequestResult:
        arrival = time.perf_counter()
        result = RequestResult(index, req.model, ok=False, arrival=arrival)
        exclude: set[str] = set()
        attempt = moves = 0
        while True:
            try:
                decision, node_req = await self._decide(req, exclude, attempt)
            except HerdError as exc:  # 404 / 503 after the holding queue
                result.error = exc.message
                return result
            result.node, result.served_model = decision.node_id, decision.model
            result.retries, result.moves = attempt, moves
            t0 = time.perf_counter()
            stream = self.nodes[decision.node_id].agent.stream(node_req, decision.model)
            try:
                async with asyncio.timeout(self.settings.first_chunk_timeout + _MARGIN_S):
                    first = await anext(stream)
            except Exception as exc:
                await stream.aclose()
                err = exc if isinstance(exc, HerdError) else NodeUnavailable(repr(exc))
                self._release(decision, t0, None, ok=False, error=err.message)
                if isinstance(err, Rebalanced) and moves < _MAX_MOVES:
                    exclude.add(decision.node_id)
                    moves += 1
                    continue
                if retryable(err) and attempt < self.settings.max_retries:
                    exclude.add(decision.node_id)
                    attempt += 1
                    continue
                result.error = err.message
                return result
            ttft = time.perf_counter() - t0
            result.ttft_s = time.perf_counter() - arrival
            return await self._rest(stream, first, decision, t0, ttft, result)

    async def _rest(
        self,
        stream: Chunks,
        first: list[dict[str, Any]],
        decision: Decision,
        t0: float,
        ttft: float,
        result: RequestResult,
    ) -> RequestResult:
        last = first[-1] if first else None
        error: str | None = None
        try:
            while last is None or not last.get("done"):
                async with asyncio.timeout(self.settings.chunk_timeout + _MARGIN_S):
                    batch = await anext(stream)
                if batch:
                    last = batch[-1]
        except StopAsyncIteration:
            pass
        except Exception as exc:
            error = exc.message if isinstance(exc, HerdError) else repr(exc)
        finally:
            await stream.aclose()
        ok = error is None and last is not None and bool(last.get("done"))
        if not ok and error is None:
            error = "stream ended without a final chunk"
        self._release(decision, t0, last, ok=ok, started=True, first_chunk_s=ttft, error=error)
        result.ok, result.error = ok, error
        if ok and last is not None:
            result.latency_s = time.perf_counter() - result.arrival
            result.completion_tokens = int(last.get("eval_count") or 0)
        return result


def make_agent(settings: Settings, name: str, url: str) -> NodeAgent:
    """A NodeAgent over the device's emulator (no media engines: the fleet serves LLMs)."""
    return NodeAgent(
        settings,
        node_id=name,
        ray_node_id=f"sim-ray-{name}",
        backend=OllamaBackend(
            url,
            connect_timeout=settings.node.connect_timeout,
            request_timeout=settings.node.request_timeout,
            probe_timeout=settings.node.probe_timeout,
        ),
        media=MediaEngines(),
    )
