"""The ingress's mirror of the router's fleet state, with its own book-keeping on top.

The RouterActor stays the source of truth. Each dispatcher keeps a :class:`FleetMirror`:
the router's nodes (heartbeats, heartbeat ages, in-flight counts), refreshed in the
background, plus the requests it started or finished whose reports the mirror does not
reflect yet, so bursts spread as they do in the router. Decisions use the same pure
:func:`~herd.routing.decide.decide`; begin/end events go to the router in numbered
batches (:mod:`herd.routing.events`), and the router's view says which batch it applied
last, which is when the local overlay drops those events.

Plain Python, no I/O, no Ray: the dispatcher does the calls and the timing.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from herd.domain import (
    EMPTY_FAILURES,
    EMPTY_PERF,
    Decision,
    FailureStats,
    FleetSnapshot,
    NodeView,
    Outcome,
    PerfStats,
    canonical_model,
)
from herd.routing.decide import decide, with_turn
from herd.routing.events import REPORT_BATCH, REPORT_EVERY_S, Begin, Event, MirrorData, Note
from herd.routing.fleet import MirrorNode, node_status
from herd.scoring import RouteQuery, ScoringWeights
from herd.scoring.failures import observe, rebased

STALE_AFTER_S = 1.5  # a mirror not confirmed by the router for this long is not used


@dataclass(slots=True)
class _Pending:
    node_id: str
    model: str  # canonical
    delta: int  # +1 begin, -1 end
    seq: int | None = None  # the batch that carried it; None while unsent


@dataclass(slots=True)
class _Seen:
    """An outcome that changed the failure memory here, kept until the router applied it."""

    outcome: Outcome
    at: float
    seq: int | None = None  # as in _Pending


class FleetMirror:
    """The fleet as one dispatcher (``source``) sees it; see the module docstring."""

    def __init__(
        self,
        source: str,
        weights: ScoringWeights,
        heartbeat_timeout: float,
        heartbeat_offline: float,
        stale_after: float = STALE_AFTER_S,
        report_every: float = REPORT_EVERY_S,
        report_batch: int = REPORT_BATCH,
    ) -> None:
        self.source = source
        self.weights = weights
        self._timeout = heartbeat_timeout
        self._offline = heartbeat_offline
        self._stale_after = stale_after
        self._report_every = report_every
        self._report_batch = report_batch
        self.epoch: str | None = None
        self.version = -1
        self._nodes: tuple[MirrorNode, ...] = ()
        self._data_urls: dict[str, str] = {}
        self.perf: PerfStats = EMPTY_PERF
        self._turns = itertools.count()  # round-robin's turn counter
        self.toggles: dict[str, bool] = {}
        self._received_at = 0.0
        self._confirmed_at = float("-inf")
        self._overlay: list[_Pending] = []
        self._events: list[Event] = []
        self._first_pending_at: float | None = None
        self._seq = 0
        self._snapshot: FleetSnapshot | None = None
        self._bucket = -1.0
        self._counts: dict[str, dict[str, int]] = {}  # per node: in flight by model
        self._index: dict[str, int] = {}  # node id -> its place in the snapshot
        # The failure memory: the router's (on the local clock), plus the outcomes seen
        # here that its view does not reflect yet, replayed on top.
        self._router_failures: FailureStats = EMPTY_FAILURES
        self._seen: list[_Seen] = []
        self.failures: FailureStats = EMPTY_FAILURES

    # --- the mirror ------------------------------------------------------------------
    def load(self, data: MirrorData, now: float) -> None:
        """A fresh view from the router (``now`` is the local clock when it arrived)."""
        if data.epoch != self.epoch:
            # A new router: whatever the old one was told is gone with it.
            self._overlay = [p for p in self._overlay if p.seq is None]
            self._seen = [s for s in self._seen if s.seq is None]
            self.epoch = data.epoch
        applied = data.applied.get(self.source, -1)
        self._overlay = [p for p in self._overlay if p.seq is None or p.seq > applied]
        self._seen = [s for s in self._seen if s.seq is None or s.seq > applied]
        offset = now - data.clock if data.clock else 0.0
        self._router_failures = rebased(data.failures, offset)
        self._replay()
        self.version = data.version
        self._nodes = data.nodes
        self.perf = data.perf
        self.toggles = dict(data.toggles)
        self._data_urls = {
            n.heartbeat.node_id: n.heartbeat.data_url for n in data.nodes if n.heartbeat.data_url
        }
        self._received_at = now
        self._confirmed_at = now
        self._snapshot = None

    def data_url(self, node_id: str) -> str:
        """The node's HTTP data plane as its last mirrored heartbeat gave it ("" if none)."""
        return self._data_urls.get(node_id, "")

    def confirm(self, now: float) -> None:
        """The router said nothing changed since the loaded version."""
        self._confirmed_at = now

    def invalidate(self) -> None:
        """The router could not be reached: route through it until a view loads again."""
        self._confirmed_at = float("-inf")

    def fresh(self, now: float) -> bool:
        return self.epoch is not None and now - self._confirmed_at <= self._stale_after

    def snapshot(self, now: float) -> FleetSnapshot:
        """Mirrored nodes with local status ages and local in-flight on top (cached; a
        booking updates the cached snapshot's one node instead of rebuilding it)."""
        bucket = now // 0.25  # statuses age with time, as in FleetState
        if self._snapshot is not None and bucket == self._bucket:
            return self._snapshot
        extra: dict[str, Counter[str]] = {}
        for p in self._overlay:
            extra.setdefault(p.node_id, Counter())[p.model] += p.delta
        views: list[NodeView] = []
        self._counts = {}
        self._index = {}
        for node in self._nodes:
            node_id = node.heartbeat.node_id
            counts = dict(node.in_flight_by_model)  # mirrored + local, unclipped
            for model, delta in extra.get(node_id, {}).items():
                counts[model] = counts.get(model, 0) + delta
            by_model = {m: n for m, n in counts.items() if n > 0}
            last_seen = self._received_at - node.age
            self._counts[node_id] = counts
            self._index[node_id] = len(views)
            views.append(
                NodeView(
                    heartbeat=node.heartbeat,
                    status=node_status(now - last_seen, node.dead, self._timeout, self._offline),
                    in_flight=sum(by_model.values()),
                    in_flight_by_model=by_model,
                    last_seen=last_seen,
                )
            )
        self._snapshot = FleetSnapshot(tuple(views), now, self.perf, self.failures)
        self._bucket = bucket
        return self._snapshot

    def _rebook(self, node_id: str, model: str, delta: int) -> None:
        """Apply one booking to the cached snapshot (the same result as a rebuild)."""
        snap = self._snapshot
        index = self._index.get(node_id)
        if snap is None or index is None:
            self._snapshot = None
            return
        counts = self._counts[node_id]
        counts[model] = counts.get(model, 0) + delta
        by_model = {m: n for m, n in counts.items() if n > 0}
        views = list(snap.nodes)
        views[index] = replace(
            views[index], in_flight=sum(by_model.values()), in_flight_by_model=by_model
        )
        self._snapshot = FleetSnapshot(tuple(views), snap.taken_at, snap.perf, snap.failures)

    # --- decisions -------------------------------------------------------------------
    def try_route(
        self,
        request_id: str,
        models: Sequence[str],
        now: float,
        exclude: frozenset[str] = frozenset(),
        attempt: int = 0,
        query: RouteQuery | None = None,
    ) -> Decision | None:
        """Decide locally and book the attempt; ``None`` means ask the router."""
        if not self.fresh(now):
            return None
        query = with_turn(query, self._turns)
        decision = decide(
            self.snapshot(now), request_id, models, now, self.weights, exclude, attempt, query=query
        )
        if decision is not None:
            self._add(Begin(request_id, decision.node_id, decision.model, attempt), now)
            self._book(decision.node_id, decision.model, +1)
        return decision

    def note(self, kind: str, fields: dict[str, Any], now: float) -> None:
        """Tell the router about ``kind`` with the next report batch."""
        self._add(Note(kind, fields, now), now)

    def end(self, outcome: Outcome, now: float) -> None:
        """An attempt finished, routed here or by the router: report it, free its slot."""
        self._add(outcome, now)
        if outcome.node_id is not None:
            self._book(outcome.node_id, outcome.model, -1)
            failures = observe(self.failures, outcome, now)
            if failures is not self.failures:
                self._seen.append(_Seen(outcome, now))
                self.failures = failures
                if self._snapshot is not None:
                    self._snapshot = replace(self._snapshot, failures=failures)

    def _book(self, node_id: str, model: str, delta: int) -> None:
        key = canonical_model(model)
        self._overlay.append(_Pending(node_id, key, delta))
        self._rebook(node_id, key, delta)

    def _add(self, event: Event, now: float) -> None:
        if not self._events:
            self._first_pending_at = now
        self._events.append(event)

    # --- reports ---------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._events)

    def due(self, now: float) -> bool:
        """Time to send: a full batch, or the oldest event has waited long enough."""
        if not self._events:
            return False
        if len(self._events) >= self._report_batch:
            return True
        first = self._first_pending_at if self._first_pending_at is not None else now
        return now - first >= self._report_every

    def next_due_in(self, now: float) -> float:
        """Seconds until the pending events are due (the full interval when none are)."""
        if not self._events or self._first_pending_at is None:
            return self._report_every
        return max(0.0, self._first_pending_at + self._report_every - now)

    def take_batch(self) -> tuple[int, list[Event]] | None:
        """Everything pending, numbered; ``None`` when there is nothing to send."""
        if not self._events:
            return None
        self._seq += 1
        events, self._events = self._events, []
        self._first_pending_at = None
        for p in self._overlay:
            if p.seq is None:
                p.seq = self._seq
        for s in self._seen:
            if s.seq is None:
                s.seq = self._seq
        return self._seq, events

    def batch_lost(self, seq: int) -> None:
        """A batch may not have reached the router: stop counting its events locally."""
        before = len(self._overlay), len(self._seen)
        self._overlay = [p for p in self._overlay if p.seq != seq]
        self._seen = [s for s in self._seen if s.seq != seq]
        if before[1] != len(self._seen):
            self._replay()
        if before != (len(self._overlay), len(self._seen)):
            self._snapshot = None

    def _replay(self) -> None:
        failures = self._router_failures
        for seen in self._seen:
            failures = observe(failures, seen.outcome, seen.at)
        self.failures = failures
