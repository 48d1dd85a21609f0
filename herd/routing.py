"""The router's logic, without Ray: fleet state, decisions, the holding queue, outcomes.

``RouterCore`` is what the RouterActor wraps. Decisions run the pure scoring
pipeline over a frozen snapshot; a request that no node can take waits in the
holding queue and is re-scored whenever the fleet changes (event-driven), up to
``holding_queue_timeout``, then fails with ``NoCapacity`` (503 + Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from herd.errors import ModelNotFound, NoCapacity
from herd.fleet import FleetState
from herd.models import Decision, NodeHeartbeat, Outcome, canonical_model
from herd.routing_view import Begin, Event, MirrorData, decide, weights_from
from herd.settings import Settings


class RouterCore:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.fleet = FleetState(settings.heartbeat_timeout, settings.heartbeat_offline)
        self.weights = weights_from(settings)
        self._change = asyncio.Event()
        self.waiting = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=500)
        self.counters: dict[str, int] = {"requests": 0, "ok": 0, "failed": 0, "retries": 0}
        # Routing views (herd.routing_view): who this router is (changes on restart)
        # and the last report batch applied per ingress.
        self.epoch = uuid.uuid4().hex
        self.applied: dict[str, int] = {}
        self._reports = 0

    # --- fleet inputs ---------------------------------------------------------------
    def heartbeat(self, hb: NodeHeartbeat) -> None:
        self.fleet.heartbeat(hb, self.clock())
        self._notify()

    def ray_node_dead(self, ray_node_id: str) -> list[str]:
        hit = self.fleet.mark_ray_node_dead(ray_node_id, self.clock())
        if hit:
            self._notify()
        return hit

    def _notify(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    # --- decisions --------------------------------------------------------------------
    def try_route(
        self,
        request_id: str,
        models: Sequence[str],
        exclude: frozenset[str] = frozenset(),
        attempt: int = 0,
    ) -> Decision | None:
        """Best node for the first model (then each fallback) that some node can serve."""
        now = self.clock()
        decision = decide(
            self.fleet.snapshot(now), request_id, models, now, self.weights, exclude, attempt
        )
        if decision is not None:
            self.fleet.begin(request_id, decision.node_id, decision.model, now)
        return decision

    async def acquire(
        self,
        request_id: str,
        models: Sequence[str],
        exclude: frozenset[str] = frozenset(),
        attempt: int = 0,
        wait: float | None = None,
    ) -> Decision:
        """Route now, or wait in the holding queue until the fleet changes or time runs out."""
        self._count(attempt)
        decision = self.try_route(request_id, models, exclude, attempt)
        if decision is not None:
            return decision
        if not any(self.fleet.known_model(m) for m in models):
            raise ModelNotFound(f"model '{models[0]}' not found")
        limit = self.settings.holding_queue_timeout if wait is None else wait
        deadline = self.clock() + limit
        self.waiting += 1
        try:
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise NoCapacity(
                        f"no node can serve '{models[0]}' right now; try again shortly",
                        retry_after=max(1.0, self.settings.heartbeat_interval),
                    )
                # Statuses also age with time, so look again at least every heartbeat.
                step = min(remaining, self.settings.heartbeat_interval)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._change.wait(), timeout=step)
                decision = self.try_route(request_id, models, exclude, attempt)
                if decision is not None:
                    return decision
        finally:
            self.waiting -= 1

    def _count(self, attempt: int) -> None:
        self.counters["requests" if attempt == 0 else "retries"] += 1

    def report(self, source: str, seq: int, events: Sequence[Event]) -> None:
        """A batch of attempts an ingress routed itself (``Begin``) and finished (``Outcome``)."""
        now = self.clock()
        for event in events:
            if isinstance(event, Begin):
                self._count(event.attempt)
                self.fleet.begin(event.request_id, event.node_id, event.model, now)
            else:
                self._release(event)
        self.applied[source] = max(seq, self.applied.get(source, -1))
        self._reports += 1
        self._notify()

    def view_version(self) -> int:
        return self.fleet.version + self._reports

    def view(self, epoch: str | None = None, since: int = -1) -> MirrorData | None:
        """The fleet for routing views; ``None`` when ``(epoch, since)`` is still current."""
        version = self.view_version()
        if epoch == self.epoch and since == version:
            return None
        return MirrorData(self.epoch, version, self.fleet.mirror(self.clock()), dict(self.applied))

    async def wait_view(
        self, epoch: str | None = None, since: int = -1, wait: float = 0.0
    ) -> MirrorData | None:
        """Like :meth:`view`, but waits up to ``wait`` seconds for a change (long poll)."""
        data = self.view(epoch, since)
        if data is None and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._change.wait(), timeout=wait)
            data = self.view(epoch, since)
        return data

    def release(self, outcome: Outcome) -> None:
        """An attempt finished (ok or not): free its slot and remember what happened."""
        self._release(outcome)
        self._notify()

    def _release(self, outcome: Outcome) -> None:
        entry = self.fleet.end(outcome.request_id)
        self.counters["ok" if outcome.ok else "failed"] += 1
        self.recent.append(
            {
                "request_id": outcome.request_id,
                "node_id": outcome.node_id,
                "model": outcome.model,
                "ok": outcome.ok,
                "ttft_s": outcome.first_chunk_s,
                "latency_s": outcome.total_s,
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
                "error": outcome.error,
                "started_at": entry.started_at if entry else None,
            }
        )

    # --- reads ------------------------------------------------------------------------
    def catalog(self) -> list[dict[str, Any]]:
        """Every model across the herd (``/api/tags``), with which nodes hold and run it."""
        now = self.clock()
        merged: dict[str, dict[str, Any]] = {}
        for view in self.fleet.snapshot(now).nodes:
            if view.status == "offline":
                continue
            hb = view.heartbeat
            for model in hb.models:
                entry = merged.setdefault(
                    canonical_model(model.name),
                    {"model": asdict(model), "nodes": [], "loaded_on": []},
                )
                entry["nodes"].append(hb.node_id)
            for loaded in hb.loaded:
                entry = merged.setdefault(
                    canonical_model(loaded.name),
                    {
                        "model": {"name": loaded.name, "size": loaded.size},
                        "nodes": [],
                        "loaded_on": [],
                    },
                )
                if hb.node_id not in entry["nodes"]:
                    entry["nodes"].append(hb.node_id)
                entry["loaded_on"].append(hb.node_id)
        return [merged[k] for k in sorted(merged)]

    def running(self) -> list[dict[str, Any]]:
        """Every loaded model on every reachable node (``/api/ps``)."""
        now = self.clock()
        out = []
        for view in self.fleet.snapshot(now).nodes:
            if view.status == "offline":
                continue
            for loaded in view.heartbeat.loaded:
                disk = next(
                    (
                        m
                        for m in view.heartbeat.models
                        if canonical_model(m.name) == canonical_model(loaded.name)
                    ),
                    None,
                )
                out.append(
                    {
                        "node": view.node_id,
                        "loaded": asdict(loaded),
                        "model": asdict(disk) if disk else None,
                    }
                )
        return out

    def status(self) -> dict[str, Any]:
        """Fleet state as plain JSON-able data (``/fleet/status``, ``herd status``)."""
        now = self.clock()
        snap = self.fleet.snapshot(now)
        nodes = []
        for view in snap.nodes:
            hb = view.heartbeat
            nodes.append(
                {
                    "node_id": hb.node_id,
                    "hostname": hb.hostname,
                    "status": view.status,
                    "ray_node_id": hb.ray_node_id,
                    "backend": hb.backend,
                    "backend_url": hb.backend_url,
                    "data_url": hb.data_url,
                    "backend_ok": hb.backend_ok,
                    "backend_version": hb.backend_version,
                    "herd_version": hb.herd_version,
                    "draining": hb.draining,
                    "last_seen_s_ago": round(now - view.last_seen, 3),
                    "cpu_percent": hb.cpu_percent,
                    "cpu_count": hb.cpu_count,
                    "memory_total": hb.memory_total,
                    "memory_available": hb.memory_available,
                    "memory_pressure": hb.memory_pressure,
                    "num_parallel": hb.num_parallel,
                    "in_flight": view.in_flight,
                    "in_flight_by_model": dict(view.in_flight_by_model),
                    "models": [m.name for m in hb.models],
                    "loaded_models": [
                        {"name": m.name, "size": m.size, "context_length": m.context_length}
                        for m in hb.loaded
                    ],
                }
            )
        return {
            "nodes": nodes,
            "queue": {"waiting": self.waiting, "in_flight": len(self.fleet.in_flight())},
            "counters": dict(self.counters),
            "time": now,
        }
