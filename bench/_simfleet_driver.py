"""The in-process fleet of ``bench/fleet.py``: the real router, node and dispatch code, no Ray.

What the NodeActors and the RouterActor do over Ray, done here with direct calls on the
real classes, while every request runs through the production attempt loop:

* one :class:`herd.node.agent.NodeAgent` per emulated device (over the real
  :class:`herd.backends.ollama.OllamaBackend`) pushes a heartbeat to the real
  :class:`herd.routing.core.RouterCore` every ``heartbeat_interval``, like the NodeActor's
  loop; each agent has its device's memory budget (``FLEET_NODE_MEMORY_BYTES``) and
  ``OLLAMA_NUM_PARALLEL``, so it reports the emulated device, not the bench machine;
* the router's upkeep round (zombie reaper, rebalancer, pre-warm) runs every heartbeat
  interval as in the RouterActor, and its moves and warms are carried out on the agents;
* every request is converted by the real ingress code (``ollama_chat_request``) and
  served by :class:`herd.dispatch.dispatcher.Dispatcher` (the very class the Serve
  ingress runs) over in-process ports (``bench/_simfleet_ports.py``): its own fleet
  mirror, plan and settle, retries, moves, fallbacks, outcome reports and traces.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from _simfleet_ports import AgentNodes, CoreRouter

from herd.backends.media import MediaEngines
from herd.backends.ollama import OllamaBackend
from herd.convert.ollama_request import ollama_chat_request
from herd.dispatch.dispatcher import Dispatcher
from herd.dispatch.router_link import LinkTiming
from herd.domain import InferenceRequest
from herd.errors import HerdError
from herd.node.agent import NodeAgent
from herd.routing.core import RouterCore
from herd.routing.maintenance import Warm
from herd.settings import Settings
from herd.wire.ollama import ChatRequest


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
        self,
        settings: Settings,
        nodes: list[SimNode],
        core: RouterCore | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self.settings = settings
        self.core = core if core is not None else RouterCore(settings)
        self.nodes = {n.name: n for n in nodes}
        self.router = CoreRouter(self.core)
        ports = AgentNodes({n.name: n.agent for n in nodes}, lambda name: self.nodes[name].alive)
        self.dispatcher = Dispatcher(
            settings, self.router, ports, timing=LinkTiming().scaled(time_scale)
        )
        self.dispatcher.mirror.weights = self.core.weights  # the time-scaled priors
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
        await self.dispatcher.flush()
        self.dispatcher.close()
        for task in [*self._tasks, *self._warming]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._warming, return_exceptions=True)
        for node in self.nodes.values():
            await node.agent.stop()

    # --- requests (the production attempt loop) -----------------------------------------
    async def serve(self, req: InferenceRequest, index: int) -> RequestResult:
        arrival = time.perf_counter()
        result = RequestResult(index, req.model, ok=False, arrival=arrival)
        try:
            served = await self.dispatcher.stream(req)
        except HerdError as exc:  # 404 / 503 after the holding queue, retries used up
            result.error = exc.message
            return result
        result.ttft_s = time.perf_counter() - arrival
        result.node, result.served_model = served.decision.node_id, served.decision.model
        result.retries, result.moves = served.retries, served.moves
        last = served.first[-1] if served.first else None
        try:
            async for batch in served.rest:
                last = batch[-1]
        except HerdError as exc:  # broke after the first chunk (the device died)
            result.error = exc.message
            return result
        result.ok = True
        result.latency_s = time.perf_counter() - arrival
        result.completion_tokens = int((last or {}).get("eval_count") or 0)
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
            probe_timeout=settings.node.probe_timeout,
        ),
        media=MediaEngines(),
    )
