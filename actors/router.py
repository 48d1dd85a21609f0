"""RouterActor: the single source of truth for fleet state; wraps ``herd.routing.RouterCore``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import NAMESPACE, ROUTER_NAME
from actors.naming import kill_named
from herd.models import Decision, NodeHeartbeat, Outcome
from herd.routing import RouterCore
from herd.routing_view import Event, MirrorData
from herd.settings import Settings

log = logging.getLogger("herd.actors.router")


@ray.remote(num_cpus=0, max_concurrency=100_000)  # type: ignore[call-overload]
class RouterActor:
    def __init__(self, settings: Settings) -> None:
        self.core = RouterCore(settings)
        self.settings = settings
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        self._watch = asyncio.create_task(self._watch_ray_nodes())
        return True

    async def _watch_ray_nodes(self) -> None:
        """Mark nodes offline as soon as Ray reports their Ray node dead."""
        seen_dead: set[str] = set()
        while True:
            try:
                nodes = await asyncio.wait_for(asyncio.to_thread(ray.nodes), timeout=10)
                for info in nodes:
                    ray_id = info.get("NodeID")
                    if not info.get("Alive", True) and ray_id and ray_id not in seen_dead:
                        seen_dead.add(ray_id)
                        hit = self.core.ray_node_dead(ray_id)
                        if hit:
                            log.warning("ray node %s died: %s offline", ray_id, hit)
            except Exception as exc:
                log.warning("could not list ray nodes: %s", exc)
            await asyncio.sleep(min(1.0, self.settings.heartbeat_interval))

    def heartbeat(self, hb: NodeHeartbeat) -> None:
        self.core.heartbeat(hb)

    async def acquire(
        self,
        request_id: str,
        models: Sequence[str],
        exclude: frozenset[str] = frozenset(),
        attempt: int = 0,
    ) -> Decision:
        return await self.core.acquire(request_id, models, exclude, attempt)

    def release(self, outcome: Outcome) -> None:
        self.core.release(outcome)

    def report(self, source: str, seq: int, events: Sequence[Event]) -> None:
        """Begin/end events an ingress routed by itself (``herd.routing_view``)."""
        self.core.report(source, seq, events)

    async def view(
        self, epoch: str | None = None, since: int = -1, wait: float = 0.0
    ) -> MirrorData | None:
        """The fleet for an ingress's routing view; long-polls ``wait`` s for a change."""
        return await self.core.wait_view(epoch, since, min(wait, 5.0))

    def status(self) -> dict[str, Any]:
        return self.core.status()

    def catalog(self) -> list[dict[str, Any]]:
        return self.core.catalog()

    def running(self) -> list[dict[str, Any]]:
        return self.core.running()

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.core.recent)[-limit:]

    def forget_node(self, node_id: str) -> None:
        self.core.fleet.remove(node_id)

    def ping(self) -> str:
        return "ok"


def deploy_router_actor(
    settings: Settings, ray_node_id: str | None = None, start_timeout: float = 30.0
) -> Any:
    """(Re)create the RouterActor, pinned to ``ray_node_id`` (the head) when given."""
    kill_named(ROUTER_NAME, NAMESPACE)
    options: dict[str, Any] = {"name": ROUTER_NAME, "namespace": NAMESPACE, "lifetime": "detached"}
    if ray_node_id:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(ray_node_id, soft=False)
    handle = RouterActor.options(**options).remote(settings)  # type: ignore[attr-defined]
    ray.get(handle.start.remote(), timeout=start_timeout)
    return handle
