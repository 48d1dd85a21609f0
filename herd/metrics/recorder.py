"""The per-request metrics, recorded where every request ends up: the router.

Every ingress replica (and the Python client) ships each request's closed trace to the
RouterActor (``record_traces``) and its routing events with the report batches
(``report``: ``Begin``, ``Outcome``, ``Note``). :class:`RequestRecorder` turns those into
Prometheus counters and histograms, so ``/metrics`` on any replica shows the totals of
the whole fleet (one scrape target, however many Serve replicas run) and the token path
itself records nothing. Traces arrive at least once: a trace the router already counted
(a batch sent again after a lost acknowledgement) is not counted twice.

Names follow Prometheus's conventions: the ``herd_`` prefix, base units (seconds),
``_total`` counters (``prometheus_client`` adds the suffix), and bounded labels only
(:mod:`herd.metrics.labels`): no request ids, no tags, no client addresses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from herd.domain import Outcome, canonical_model
from herd.metrics.labels import (
    MAX_MODEL_LABELS,
    MAX_NODE_LABELS,
    MAX_SMALL_LABELS,
    NONE,
    LabelCap,
)
from herd.routing.events import Begin, Event, Note
from herd.traces.records import TRACE_STATUSES, TraceRecord

# Bucket bounds (seconds, tokens per second): from a hot embedding to a cold 70B load.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TPS_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 1000)
_DEDUPE = 8192  # trace ids remembered (a re-sent batch comes back within seconds)


class RequestRecorder:
    """Counters and histograms of requests, fed by traces and routing events."""

    def __init__(
        self, registry: CollectorRegistry, known_model: Callable[[str], bool] | None = None
    ) -> None:
        self.models = LabelCap(MAX_MODEL_LABELS, known_model or (lambda _: True))
        self.nodes = LabelCap(MAX_NODE_LABELS)
        self._small = LabelCap(MAX_SMALL_LABELS * 4)  # dialects, kinds, actions together
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0
        # (metric, label values) -> its child: ``labels()`` checks its arguments each
        # time (~5 us); as many entries as series, which the label caps bound.
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        r = registry
        self.requests = Counter(
            "herd_requests",
            "Requests that ended, by dialect, kind, requested model, served model, node "
            "and outcome (ok, error, rejected, disconnected)",
            ("dialect", "kind", "model", "served_model", "node", "status"),
            registry=r,
        )
        self.duration = Histogram(
            "herd_request_duration_seconds",
            "End-to-end latency: from arrival to the last byte (or the error)",
            ("kind", "served_model", "node", "status"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "herd_time_to_first_token_seconds",
            "From sending the request to its node to the node's first chunk",
            ("kind", "served_model", "node"),
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tps = Histogram(
            "herd_generation_tokens_per_second",
            "Completion tokens per second after the first token, per served request",
            ("served_model", "node"),
            buckets=TPS_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "herd_queue_wait_seconds",
            "Time an attempt waited for a node: 0 when routed at once by an ingress, "
            "else the router's decision including its holding queue",
            ("model",),
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "herd_tokens",
            "Prompt and completion tokens of served requests",
            ("type", "served_model", "node"),
            registry=r,
        )
        self.retries = Counter(
            "herd_retries", "Attempts retried on another node", ("kind", "model"), registry=r
        )
        self.fallbacks = Counter(
            "herd_fallbacks",
            "Requests served by a fallback model",
            ("kind", "model", "served_model"),
            registry=r,
        )
        self.moves = Counter(
            "herd_moves",
            "Attempts a node handed back before any output (rebalancer, drain)",
            ("model", "node"),
            registry=r,
        )
        self.context_protection = Counter(
            "herd_context_protection_events",
            "Requests whose num_ctx would have reloaded a loaded model",
            ("action", "model", "node"),
            registry=r,
        )
        self.vram_fallbacks = Counter(
            "herd_vram_fallbacks",
            "Requests sent to a smaller stand-in model for lack of memory",
            ("model", "served_model", "node"),
            registry=r,
        )

    # --- inputs -------------------------------------------------------------------------
    def model(self, name: str | None) -> str:
        return self.models(canonical_model(name)) if name else NONE

    def traces(self, records: Iterable[TraceRecord]) -> None:
        for record in records:
            if self._first_time(record.request_id):
                self.trace(record)

    def trace(self, t: TraceRecord) -> None:
        kind, node = self._small(t.kind), self.nodes(t.node_id)
        model, served = self.model(t.requested_model), self.model(t.served_model)
        status = t.status if t.status in TRACE_STATUSES else "error"
        self._at(self.requests, self._small(t.dialect), kind, model, served, node, status).inc()
        if t.latency_s is not None and t.latency_s >= 0:
            self._at(self.duration, kind, served, node, status).observe(t.latency_s)
        if t.ttft_s is not None and t.ttft_s >= 0:
            self._at(self.ttft, kind, served, node).observe(t.ttft_s)
        tps = t.tokens_per_s
        if tps is not None:
            self._at(self.tps, served, node).observe(tps)
        if t.status == "ok":
            if t.prompt_tokens > 0:
                self._at(self.tokens, "prompt", served, node).inc(t.prompt_tokens)
            if t.completion_tokens > 0:
                self._at(self.tokens, "completion", served, node).inc(t.completion_tokens)
        if t.retries > 0:
            self._at(self.retries, kind, model).inc(t.retries)
        if t.fallback_used:
            self._at(self.fallbacks, kind, model, served).inc()

    def events(self, events: Iterable[Event]) -> None:
        """A report batch of an ingress: decisions it made, ends of attempts, notes."""
        for event in events:
            if isinstance(event, Begin):
                self._at(self.queue_wait, self.model(event.model)).observe(0.0)
            elif isinstance(event, Outcome):
                if event.moved:
                    self._at(self.moves, self.model(event.model), self.nodes(event.node_id)).inc()
            elif isinstance(event, Note):
                self.note(event)

    def note(self, note: Note) -> None:
        fields = note.fields
        model = self.model(_text(fields.get("model")))
        node = self.nodes(_text(fields.get("node_id")))
        if note.kind == "context_protection":
            action = self._small(_text(fields.get("action")))
            self._at(self.context_protection, action, model, node).inc()
        elif note.kind == "vram_fallback":
            served = self.model(_text(fields.get("served")))
            self._at(self.vram_fallbacks, model, served, node).inc()

    def waited(self, model: str | None, seconds: float) -> None:
        """A decision the router made (``acquire``), holding queue included."""
        self._at(self.queue_wait, self.model(model)).observe(max(0.0, seconds))

    def _at(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _first_time(self, request_id: str) -> bool:
        seen = self._seen
        if request_id in seen:
            self.duplicates += 1
            return False
        seen[request_id] = None
        if len(seen) > _DEDUPE:
            seen.popitem(last=False)
        return True


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
