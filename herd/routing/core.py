"""The router's logic, without Ray: fleet state, decisions, the holding queue, outcomes.

``RouterCore`` is what the RouterActor wraps. Decisions run the pure scoring
pipeline over a frozen snapshot; a request that no node can take waits in the
holding queue and is re-scored whenever the fleet changes (event-driven), up to
``holding_queue_timeout``, then fails with ``NoCapacity`` (503 + Retry-After).
The holding queue is FIFO per model (``herd.routing.holding``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from herd.domain import Decision, FleetSnapshot, NodeHeartbeat, Outcome, canonical_model
from herd.errors import ModelNotFound, NoCapacity
from herd.routing.decide import decide, weights_from, with_turn
from herd.routing.events import Begin, Event, MirrorData, Note
from herd.routing.fleet import FleetState
from herd.routing.holding import HoldingQueue, Waiter
from herd.routing.maintenance import (
    Move,
    Warm,
    find_zombies,
    plan_prewarm,
    plan_rebalance,
    prewarm_event,
    queued_by_model,
    rebalance_event,
    zombie_event,
)
from herd.routing.reads import fleet_catalog, fleet_running, fleet_status, outcome_record
from herd.scoring import RouteQuery, failures
from herd.scoring.perf import PerfBook
from herd.settings import Settings


@dataclass(frozen=True, slots=True)
class Upkeep:
    """What one maintenance round decided; the RouterActor carries out moves and warms."""

    moves: tuple[Move, ...] = ()
    warms: tuple[Warm, ...] = ()
    reaped: tuple[str, ...] = ()


class RouterCore:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        warm_up: float = 0.0,
    ) -> None:
        self.settings = settings
        self.clock = clock
        # A restarted router knows no node until their next heartbeats: for ``warm_up``
        # seconds an unknown model waits for them instead of being a 404.
        self._warm_until = clock() + warm_up
        self.fleet = FleetState(settings.heartbeat_timeout, settings.heartbeat_offline)
        self._turns = itertools.count()  # round-robin's turn counter
        self.perf = PerfBook()  # learned per node and model from outcomes and heartbeats
        self.failures = failures.empty(failures.policy_from(settings))  # frozen
        # Runtime toggles (dashboard Settings view); fleet mirrors get them with the fleet.
        self.toggles: dict[str, bool] = {
            "auto_pull": settings.auto_pull,
            "vram_fallback": settings.vram_fallback,
        }
        self.weights = weights_from(settings)
        self._change = asyncio.Event()
        self._holding = HoldingQueue()  # herd.routing.holding
        # Models each node reported the last time its backend answered: a node whose
        # backend is down reports none, yet its models are still "known" (held, not 404).
        self._models_seen: dict[str, frozenset[str]] = {}
        self._serve_scheduled = False
        self._last_warmed: dict[tuple[str, str], float] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=500)
        # Router events for the Health view (zombie reaped, rebalanced, pre-warm, ...).
        self.events: deque[dict[str, Any]] = deque(maxlen=500)
        self.counters: dict[str, int] = {
            "requests": 0,
            "ok": 0,
            "failed": 0,
            "retries": 0,
            "held": 0,
            "hold_timeouts": 0,
            "moved": 0,
            "prewarmed": 0,
            "reaped": 0,
            "cooled_down": 0,  # (node, model) pairs tripped by the failure memory
            "readmitted": 0,  # ... and let back in after a successful probe
        }
        # Fleet mirrors (herd.routing.mirror): who this router is (changes on restart)
        # and the last report batch applied per ingress.
        self.epoch = uuid.uuid4().hex
        self.applied: dict[str, int] = {}
        self._reports = 0

    # --- fleet inputs ---------------------------------------------------------------
    def heartbeat(self, hb: NodeHeartbeat) -> None:
        now = self.clock()
        if self.fleet.heartbeat(hb, now):
            self.perf.observe_heartbeat(hb, now)
            if hb.backend_ok:
                self._models_seen[hb.node_id] = frozenset(hb.models_by_key) | frozenset(
                    hb.loaded_by_key
                )
        self._notify()

    def forget_node(self, node_id: str) -> None:
        """A node removed from the herd (``herd`` removed its actor): drop what it had."""
        self.fleet.remove(node_id)
        self.perf.forget_node(node_id)
        self.failures = failures.forget_node(self.failures, node_id)
        self._models_seen.pop(node_id, None)
        self._notify()

    def known_model(self, model: str) -> bool:
        """Does some node have ``model``, as far as its backend last said? Else a 404."""
        key = canonical_model(model)
        return self.fleet.known_model(model) or any(
            key in models for models in self._models_seen.values()
        )

    def snapshot(self, now: float) -> FleetSnapshot:
        return self.fleet.snapshot(now, self.perf.freeze(), self.failures)

    def set_toggles(self, changes: dict[str, bool]) -> dict[str, bool]:
        """Change runtime toggles (only known ones, booleans); returns all of them."""
        for key, value in changes.items():
            if key not in self.toggles or not isinstance(value, bool):
                raise ValueError(f"unknown toggle or not a boolean: {key}={value!r}")
        self.toggles.update(changes)
        self._reports += 1  # a new view version, so ingress mirrors pick it up
        self._notify()
        return dict(self.toggles)

    def ray_node_dead(self, ray_node_id: str) -> list[str]:
        hit = self.fleet.mark_ray_node_dead(ray_node_id, self.clock())
        if hit:
            self._notify()
        return hit

    def _notify(self) -> None:
        self._change.set()
        self._change = asyncio.Event()
        if self._holding and not self._serve_scheduled:
            # Serve waiters after the current change is fully applied, not inside it.
            self._serve_scheduled = True
            asyncio.get_running_loop().call_soon(self.serve_waiters)

    @property
    def waiting(self) -> int:
        return self._holding.waiting

    def waiting_by_model(self) -> dict[str, int]:
        return self._holding.by_model()

    def serve_waiters(self) -> int:
        """Give freed capacity to the holding queue, oldest first per model. Returns how
        many waiters got a node."""
        self._serve_scheduled = False
        return self._holding.serve(
            lambda w: self.try_route(w.request_id, w.models, w.exclude, w.attempt, w.query)
        )

    # --- decisions --------------------------------------------------------------------
    def try_route(
        self,
        request_id: str,
        models: Sequence[str],
        exclude: frozenset[str] = frozenset(),
        attempt: int = 0,
        query: RouteQuery | None = None,
    ) -> Decision | None:
        """Best node for the first model (then each fallback) that some node can serve."""
        now = self.clock()
        query = with_turn(query, self._turns)
        decision = decide(
            self.snapshot(now), request_id, models, now, self.weights, exclude, attempt, query=query
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
        query: RouteQuery | None = None,
    ) -> Decision:
        """Route now, or wait in the holding queue until a node frees up or time runs out."""
        self._count(attempt)
        key = canonical_model(models[0])
        if not self._holding.has_waiters(key):  # FIFO: with others waiting, queue up behind them
            decision = self.try_route(request_id, models, exclude, attempt, query)
            if decision is not None:
                return decision
        if not any(self.known_model(m) for m in models) and await self._heard_of(models):
            decision = self.try_route(request_id, models, exclude, attempt, query)
            if decision is not None:
                return decision
        if not any(self.known_model(m) for m in models):
            raise ModelNotFound(f"model '{models[0]}' not found")
        now = self.clock()
        hopeless = failures.nobody_left(self.snapshot(now), models, exclude, now)
        if hopeless is not None and hopeless.cooling:  # holding would not help: say why now
            raise hopeless.error()
        limit = self.settings.holding_queue_timeout if wait is None else wait
        waiter = Waiter(
            request_id,
            tuple(models),
            exclude,
            attempt,
            asyncio.get_running_loop().create_future(),
            query,
        )
        self._holding.join(key, waiter)
        self.counters["held"] += 1
        deadline = self.clock() + limit
        try:
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0 and not waiter.future.done():
                    self.counters["hold_timeouts"] += 1
                    raise NoCapacity(
                        f"no node can serve '{models[0]}' right now; try again shortly",
                        retry_after=max(1.0, self.settings.heartbeat_interval),
                    )
                # Statuses also age with time, so look again at least every heartbeat.
                step = max(0.0, min(remaining, self.settings.heartbeat_interval))
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(waiter.future), timeout=step)
                self.serve_waiters()
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                # Served at the very moment the caller went away: give the slot back.
                self.fleet.end(request_id)
                self._notify()
            raise
        finally:
            self._holding.leave(key, waiter)

    def _count(self, attempt: int) -> None:
        self.counters["requests" if attempt == 0 else "retries"] += 1

    def report(self, source: str, seq: int, events: Sequence[Event]) -> None:
        """A batch of attempts an ingress routed itself (``Begin``) and finished (``Outcome``)."""
        now = self.clock()
        for event in events:
            if isinstance(event, Begin):
                self._count(event.attempt)
                self.fleet.begin(event.request_id, event.node_id, event.model, now)
            elif isinstance(event, Note):
                self.events.append({"time": event.time, "kind": event.kind, **event.fields})
            else:
                self._release(event)
        self.applied[source] = max(seq, self.applied.get(source, -1))
        self._reports += 1
        self._notify()

    def view_version(self) -> int:
        return self.fleet.version + self._reports

    def view(self, epoch: str | None = None, since: int = -1) -> MirrorData | None:
        """The fleet for the mirrors; ``None`` when ``(epoch, since)`` is still current."""
        version = self.view_version()
        if epoch == self.epoch and since == version:
            return None
        return MirrorData(
            self.epoch,
            version,
            self.fleet.mirror(self.clock()),
            dict(self.applied),
            self.perf.freeze(),
            dict(self.toggles),
            self.failures,
            self.clock(),
        )

    async def _heard_of(self, models: Sequence[str]) -> bool:
        """While warming up, wait for a heartbeat naming one of ``models``; whether one
        came (after the warm-up: False at once)."""
        while (left := self._warm_until - self.clock()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._change.wait()
            if any(self.known_model(m) for m in models):
                return True
        return False

    async def wait_view(
        self, epoch: str | None = None, since: int = -1, wait: float = 0.0
    ) -> MirrorData | None:
        """Like :meth:`view`, but waits up to ``wait`` seconds for a change (long poll)."""
        data = self.view(epoch, since)
        if data is None and wait > 0:
            with contextlib.suppress(TimeoutError):  # not wait_for: it can eat a cancel (3.11)
                async with asyncio.timeout(wait):
                    await self._change.wait()
            data = self.view(epoch, since)
        return data

    def release(self, outcome: Outcome) -> None:
        """An attempt finished (ok or not): free its slot and remember what happened."""
        self._release(outcome)
        self._notify()

    def _release(self, outcome: Outcome) -> None:
        entry = self.fleet.end(outcome.request_id)
        self.perf.observe_outcome(outcome)
        self.failures, event = failures.learn(self.failures, outcome, self.clock())
        if event is not None:  # a pair cooled down or readmitted
            self.counters[event["kind"]] += 1
            self.events.append(event)
        if outcome.moved:
            return  # the request goes on elsewhere: neither served nor failed here
        self.counters["ok" if outcome.ok else "failed"] += 1
        self.recent.append(outcome_record(outcome, entry.started_at if entry else None))

    # --- upkeep -----------------------------------------------------------------------
    def upkeep(self) -> Upkeep:
        """One maintenance round: reap zombies, plan moves and pre-warms (pure planners in
        :mod:`herd.routing.maintenance`); the actor carries out the moves and warms."""
        now = self.clock()
        settings = self.settings
        reaped = find_zombies(self.fleet.in_flight(), now, settings.zombie_timeout)
        for entry in reaped:
            self.fleet.end(entry.request_id)
            self.counters["reaped"] += 1
            self.events.append(zombie_event(entry, now))
        if reaped:
            self._notify()
        snapshot = self.fleet.snapshot(now)
        moves = plan_rebalance(snapshot) if settings.rebalance else []
        queued = queued_by_model(snapshot, self.waiting_by_model())
        warms = plan_prewarm(
            snapshot,
            queued,
            settings.prewarm_threshold,
            now,
            self._last_warmed,
            settings.prewarm_cooldown,
        )
        for warm in warms:
            self._last_warmed[(warm.node_id, warm.model)] = now
            self.events.append(prewarm_event(warm, now))
        self.serve_waiters()
        return Upkeep(tuple(moves), tuple(warms), tuple(e.request_id for e in reaped))

    def moved(self, move: Move, count: int) -> None:
        """The rebalancer handed ``count`` requests back from ``move.from_node``."""
        if count:
            self.counters["moved"] += count
            self.events.append(rebalance_event(move, count, self.clock()))

    def forget_failures(self) -> int:
        """Readmit every pair the failure memory holds (an operator fixed the nodes; tests
        between cases); returns how many it held."""
        held = sum(len(by_node) for by_node in self.failures.models.values())
        self.failures = failures.empty(self.failures.policy)
        self._reports += 1  # a new view version, so ingress mirrors forget them too
        self._notify()
        return held

    def forget_learning(self) -> int:
        """Forget what requests taught the performance learner (see
        :meth:`PerfBook.forget_requests`); returns how many pairs it had learned."""
        learned = self.perf.forget_requests()
        if learned:
            self._reports += 1  # a new view version: the mirrors score without it too
            self._notify()
        return learned

    def warmed(self, warm: Warm, ok: bool) -> None:
        if ok:
            self.counters["prewarmed"] += 1

    # --- reads (built in ``herd.routing.reads``) ---------------------------------------
    def catalog(self) -> list[dict[str, Any]]:
        """Every model across the herd (``/api/tags``), with which nodes hold and run it."""
        return fleet_catalog(self.fleet.snapshot(self.clock()))

    def running(self) -> list[dict[str, Any]]:
        """Every loaded model on every reachable node (``/api/ps``)."""
        return fleet_running(self.fleet.snapshot(self.clock()))

    def status(self) -> dict[str, Any]:
        """Fleet state as plain JSON-able data (``/fleet/status``, ``herd status``)."""
        now = self.clock()
        return fleet_status(
            self.fleet.snapshot(now),
            now,
            failures.report(self.failures, now),
            queue={
                "waiting": self.waiting,
                "waiting_by_model": self.waiting_by_model(),
                "in_flight": len(self.fleet.in_flight()),
            },
            events=self.events,
            counters=self.counters,
            view_version=self.view_version(),
        )
