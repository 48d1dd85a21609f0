"""RouterActor: the source of truth for fleet state; wraps ``herd.routing.core.RouterCore``."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import NAMESPACE, ROUTER_NAME, node_actor_name
from actors.discovery import advertise_head
from actors.handles import HandleCache
from actors.naming import kill_named
from herd.discovery import Advertisement
from herd.domain import Decision, NodeHeartbeat, Outcome
from herd.errors import BadRequest
from herd.logs import configure_logging
from herd.metrics import FleetMetrics
from herd.routing.core import RouterCore
from herd.routing.events import Event, MirrorData
from herd.routing.maintenance import Warm
from herd.scoring import RouteQuery
from herd.settings import Settings
from herd.traces.records import TraceRecord
from herd.traces.retention import Retention
from herd.traces.store import TraceStore
from herd.traces.writer import TraceWriter

log = logging.getLogger("herd.actors.router")


# Restarted by Ray after a crash (its process killed, a segfault), as often as it takes;
# a call in flight then fails (callers retry or answer 503), none is re-run by Ray.
# ``ray.kill`` (a redeploy, ``herd stop``) ends it for good.
@ray.remote(num_cpus=0, max_concurrency=100_000, max_restarts=-1)  # type: ignore[call-overload]
class RouterActor:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings)
        # Restarted after a crash: every live node has beaten again within
        # FLEET_HEARTBEAT_OFFLINE (else it counts as offline anyway); until then an unknown
        # model waits for the heartbeats instead of a 404.
        restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self.core = RouterCore(settings, warm_up=settings.heartbeat_offline if restarted else 0)
        self.settings = settings
        self._watch: asyncio.Task[None] | None = None
        self._upkeep: asyncio.Task[None] | None = None
        self._warming: set[asyncio.Task[Any]] = set()
        self._nodes = HandleCache(settings.actor_call_timeout)
        self._advert: Advertisement | None = None  # the head's mDNS record (FLEET_MDNS)
        # Traces: journaled here (acknowledged = on disk), written to the database in
        # the writer's thread; a restarted router replays what was not stored yet.
        self.trace_store = TraceStore.from_settings(settings)
        self.trace_writer = TraceWriter.claim(
            self.trace_store, settings.data_dir / "traces" / "spool"
        )
        # FLEET_TRACE_RETENTION_DAYS: pruned hourly by the upkeep, in a thread, in batches.
        self.retention = Retention(self.trace_store.engine, settings.trace_retention_days)
        self._pruning: asyncio.Task[Any] | None = None
        # /metrics (herd.metrics): every replica's traces and reports, counted here once.
        self.fleet_metrics = FleetMetrics(
            self._metrics_status, self.core.known_model, settings.metrics
        )
        # A restarted actor runs only ``__init__``: start the loops from here too (the
        # call runs once ``__init__`` returns; ``start`` is idempotent). Fleet state comes
        # back with the nodes' next heartbeats, unstored traces from the journal.
        ray.get_runtime_context().current_actor.start.remote()

    async def start(self) -> bool:
        if self._watch is None:
            self._watch = asyncio.create_task(self._watch_ray_nodes())
            self._upkeep = asyncio.create_task(self._upkeep_loop())
            if self.settings.mdns:
                self._advert = await asyncio.to_thread(advertise_head, self.settings.port)
        return True

    def close_advertisement(self) -> None:
        """Stop announcing the head over mDNS (``herd stop`` before it kills this actor)."""
        if self._advert is not None:
            self._advert.close()
            self._advert = None

    async def _upkeep_loop(self) -> None:
        """Zombie reaper, rebalancer and pre-warm, every heartbeat interval."""
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self._upkeep_once()
            except Exception as exc:  # never let the loop die
                log.warning("upkeep failed: %s", exc)

    async def _upkeep_once(self) -> None:
        if self.retention.due(time.time()):
            self._pruning = asyncio.create_task(asyncio.to_thread(self.retention.run))
        plan = self.core.upkeep()
        if plan.reaped:
            log.warning("reaped %d zombie in-flight entries", len(plan.reaped))
        timeout = self.settings.actor_call_timeout
        for move in plan.moves:
            node = await self._node(move.from_node)
            if node is None:
                continue
            try:
                shed = await asyncio.wait_for(
                    node.shed_pending.remote(move.model, move.count), timeout
                )
            except Exception as exc:
                log.warning("rebalance on %s failed: %s", move.from_node, exc)
                self._nodes.forget(node_actor_name(move.from_node))
                continue
            self.core.moved(move, int(shed))
        for warm in plan.warms:
            node = await self._node(warm.node_id)
            if node is not None:
                self._warming.add(asyncio.create_task(self._warm(node, warm)))

    async def _node(self, node_id: str) -> Any | None:
        """The node's actor handle, looked up off the loop (None: gone or GCS silent)."""
        try:
            return await self._nodes.get(node_actor_name(node_id))
        except TimeoutError:
            log.warning("could not look up the actor of node %s in time", node_id)
            return None

    async def _warm(self, node: Any, warm: Warm) -> None:
        try:
            limit = self.settings.first_chunk_timeout + self.settings.actor_call_timeout
            ok = await asyncio.wait_for(node.prewarm.remote(warm.model), limit)
        except Exception as exc:
            log.warning("pre-warm of %s on %s failed: %s", warm.model, warm.node_id, exc)
            ok = False
        self.core.warmed(warm, bool(ok))
        task = asyncio.current_task()
        if task is not None:
            self._warming.discard(task)

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
        query: RouteQuery | None = None,
    ) -> Decision:
        decision = self.core.acquire(request_id, models, exclude, attempt, query=query)
        return await self.fleet_metrics.timed(models[0] if models else None, decision)

    def release(self, outcome: Outcome) -> None:
        self.core.release(outcome)

    def report(self, source: str, seq: int, events: Sequence[Event]) -> None:
        """Begin/end events an ingress routed by itself (``herd.routing.mirror``)."""
        self.core.report(source, seq, events)
        self.fleet_metrics.events(events)

    async def view(
        self, epoch: str | None = None, since: int = -1, wait: float = 0.0
    ) -> MirrorData | None:
        """The fleet for an ingress's mirror; long-polls ``wait`` s for a change."""
        return await self.core.wait_view(epoch, since, min(wait, 5.0))

    def status(self) -> dict[str, Any]:
        status = self.core.status()
        status["traces"] = self.trace_writer.stats()
        # The Router badge: nodes on the Ray node that hosts this actor (the head).
        here = ray.get_runtime_context().get_node_id()
        for node in status["nodes"]:
            node["is_router"] = node.get("ray_node_id") == here
        return status

    def get_toggles(self) -> dict[str, bool]:
        return dict(self.core.toggles)

    def set_toggles(self, changes: dict[str, bool]) -> dict[str, bool]:
        try:
            return self.core.set_toggles(changes)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    async def record_traces(self, records: Sequence[TraceRecord]) -> int:
        """Journal finished request traces; returning acknowledges them."""
        await asyncio.to_thread(self.trace_writer.submit, records)
        self.fleet_metrics.traces(records)
        return len(records)

    def metrics(self) -> bytes:
        """``/metrics``: Prometheus's text format (empty with FLEET_METRICS off)."""
        return self.fleet_metrics.exposition()

    def _metrics_status(self) -> dict[str, Any]:
        status = self.core.status()
        status["traces"] = self.trace_writer.stats()
        return status

    async def flush_traces(self, timeout: float = 10.0) -> bool:
        """Wait until every acknowledged trace is in the database (tests, shutdown)."""
        return await asyncio.to_thread(self.trace_writer.flush, timeout)

    def catalog(self) -> list[dict[str, Any]]:
        return self.core.catalog()

    def running(self) -> list[dict[str, Any]]:
        return self.core.running()

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.core.recent)[-limit:]

    def forget_node(self, node_id: str) -> None:
        self.core.forget_node(node_id)

    def forget_failures(self) -> int:
        """Readmit every (node, model) pair the failure memory holds; returns how many."""
        return self.core.forget_failures()

    def forget_learning(self) -> int:
        """Forget the latencies and rates requests taught; returns how many pairs."""
        return self.core.forget_learning()

    def ping(self) -> str:
        return "ok"

    def pid(self) -> int:
        """This actor's process (supervision tests kill it to see it come back)."""
        return os.getpid()


def deploy_router_actor(
    settings: Settings, ray_node_id: str | None = None, start_timeout: float = 30.0
) -> Any:
    """(Re)create the RouterActor, pinned to ``ray_node_id`` (the head) when given."""
    kill_named(ROUTER_NAME, NAMESPACE, graceful="close_advertisement")
    options: dict[str, Any] = {"name": ROUTER_NAME, "namespace": NAMESPACE, "lifetime": "detached"}
    if ray_node_id:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(ray_node_id, soft=False)
    handle = RouterActor.options(**options).remote(settings)  # type: ignore[attr-defined]
    ray.get(handle.start.remote(), timeout=start_timeout)
    return handle
