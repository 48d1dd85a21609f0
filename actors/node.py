"""NodeActor: one per device, named after its node id, pinned to its own Ray node."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import NAMESPACE, ROUTER_NAME, node_actor_name
from actors.data_plane import start_node_data_plane
from actors.handles import HandleCache
from actors.naming import kill_named
from herd.backends.base import BackendState
from herd.domain import InferenceRequest, NodeHeartbeat
from herd.errors import FleetUnavailable
from herd.logs import configure_logging
from herd.node import log_tail
from herd.node.agent import NodeAgent
from herd.node.http_server import NodeHTTPServer
from herd.settings import Settings

log = logging.getLogger("herd.actors.node")


# Restarted by Ray after a crash, on its own Ray node (affinity); ``herd deploy
# --foreground`` re-deploys it when it is gone for good (its Ray node rejoined under a
# new id, restarts exhausted).
@ray.remote(num_cpus=0, max_concurrency=4096, max_restarts=-1)  # type: ignore[call-overload]
class NodeActor:
    def __init__(self, settings: Settings, node_id: str, ray_node_id: str) -> None:
        configure_logging(settings)  # JSONL in <data_dir>/logs on this device
        self.settings = settings
        self.agent = NodeAgent(settings, node_id=node_id, ray_node_id=ray_node_id)
        self._handles = HandleCache(settings.actor_call_timeout)
        self._beat: asyncio.Task[None] | None = None
        self._http: NodeHTTPServer | None = None
        self._started: asyncio.Future[dict[str, Any]] | None = None
        # A restarted actor runs only ``__init__``: start from here too (the deploy's own
        # ``start`` call then waits for the same start).
        ray.get_runtime_context().current_actor.start.remote()

    async def start(self) -> dict[str, Any]:
        """Detect the backend, open the data plane, start heartbeats: once; a failed
        start is tried again by the next call."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        started = self._started
        try:
            return await asyncio.shield(started)
        except Exception:
            if self._started is started:
                self._started = None
            raise

    async def _start(self) -> dict[str, Any]:
        state: BackendState = await self.agent.start()
        if self.settings.data_plane == "http" and self._http is None:
            # Served from this actor's event loop, on the Ray node's own address.
            host = await asyncio.to_thread(_ray_node_ip)  # a GCS call: off the loop
            self._http = await start_node_data_plane(self.agent, self.settings, host)
        self._beat = asyncio.create_task(self._heartbeat_loop())
        return {
            "node_id": self.agent.node_id,
            "backend": state.kind,
            "url": state.url,
            "ok": state.ok,
            "models": [m.name for m in state.models],
            "media": list(self.agent.media.kinds()),
            "data_url": self.agent.data_url,
        }

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            try:
                await self.push_heartbeat()
            except Exception as exc:  # never let the loop die; next beat retries
                log.warning("heartbeat failed: %s", exc)
                self._handles.forget(ROUTER_NAME)
            await asyncio.sleep(interval)

    async def push_heartbeat(self) -> NodeHeartbeat:
        hb = await self.agent.heartbeat()
        router = await self._handles.get(ROUTER_NAME)
        if router is None:
            raise FleetUnavailable("the herd router is not running")
        await asyncio.wait_for(
            router.heartbeat.remote(hb), timeout=self.settings.actor_call_timeout
        )
        return hb

    async def stream(self, req: InferenceRequest, model: str) -> AsyncIterator[list[dict]]:
        async for batch in self.agent.stream(req, model):
            yield batch

    async def complete(self, req: InferenceRequest, model: str) -> dict[str, Any]:
        return await self.agent.complete(req, model)

    async def prewarm(self, model: str) -> bool:
        return await self.agent.prewarm(model)

    def shed_pending(self, model: str | None = None, count: int | None = None) -> int:
        """Hand back requests still waiting for a slot (the router's rebalancer)."""
        return self.agent.shed_pending(model, count)

    # --- model management and media (``herd.node.model_store``, ``herd.node.media``) -------
    async def show(self, model: str, verbose: bool = False) -> dict[str, Any]:
        return await self.agent.show(model, verbose)

    async def pull(self, model: str, insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Progress lines of a pull on this node (a Ray streaming generator); the next
        heartbeat goes out at once so routing sees the new model."""
        try:
            async for line in self.agent.pull(model, insecure):
                yield line
        finally:
            await self._beat_now()

    async def delete(self, model: str) -> bool:
        try:
            await self.agent.delete(model)
        finally:
            await self._beat_now()
        return True

    def media_engines(self) -> list[str]:
        return list(self.agent.media.kinds())

    # --- logs (``herd logs``: ``herd.node.log_tail``, bounded per call) ----------------
    async def log_tail(self, lines: int = 100) -> dict[str, Any]:
        """The last ``lines`` lines of this device's JSONL log and the position after them."""
        path = log_tail.log_file(self.settings.log_dir)
        return await asyncio.to_thread(log_tail.tail, path, lines)

    async def log_follow(
        self, position: dict[str, int] | None, span: float = 30.0
    ) -> AsyncIterator[dict[str, Any]]:
        """A Ray streaming generator of what the log gets after ``position``, for at most
        ``span`` seconds (capped at a minute: the caller asks again from the last
        position), polled every 0.25 s; its last item always carries the position."""
        path = log_tail.log_file(self.settings.log_dir)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(span, 0.5), 60.0)
        while True:
            batch = await asyncio.to_thread(log_tail.read_after, path, position)
            position = batch["position"]
            if batch["lines"] or loop.time() >= deadline:
                yield batch
            if loop.time() >= deadline:
                return
            if not batch["lines"]:
                await asyncio.sleep(0.25)

    async def _beat_now(self) -> None:
        try:
            await self.push_heartbeat()
        except Exception as exc:  # the regular loop sends it again shortly
            log.warning("heartbeat after a model change failed: %s", exc)
            self._handles.forget(ROUTER_NAME)

    async def drain(self, timeout: float) -> bool:
        done = await self.agent.drain(timeout)
        await self.push_heartbeat()
        return done

    async def shutdown(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        if self._http is not None:
            self.agent.data_url = ""
            await self._http.stop()
            self._http = None
        await self.agent.stop()

    def ping(self) -> str:
        return self.agent.node_id

    def pid(self) -> int:
        """This actor's process (supervision tests kill it to see it come back)."""
        return os.getpid()

    async def watch(self, span: float) -> str:
        """Answers after ``span`` seconds. An ingress reading HTTP data-plane answers from
        this actor keeps one such call pending: Ray fails it when the actor dies, which
        ends those answers as a Ray generator would (``actors.http_plane.DeathWatch``)."""
        await asyncio.sleep(span)
        return self.agent.node_id


def _ray_node_ip() -> str:
    """The address this actor's Ray node was started with (``--node-ip-address``)."""
    me = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == me and node.get("NodeManagerAddress"):
            return str(node["NodeManagerAddress"])
    return str(ray.util.get_node_ip_address())


def deploy_node_actor(
    settings: Settings, node_id: str, ray_node_id: str, start_timeout: float = 120.0
) -> Any:
    """Create (replacing any previous one) this device's NodeActor and start it."""
    name = node_actor_name(node_id)
    kill_named(name, NAMESPACE, graceful="shutdown")
    handle = NodeActor.options(  # type: ignore[attr-defined]
        name=name,
        namespace=NAMESPACE,
        lifetime="detached",
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=ray_node_id, soft=False),
    ).remote(settings, node_id, ray_node_id)
    ray.get(handle.start.remote(), timeout=start_timeout)
    return handle
