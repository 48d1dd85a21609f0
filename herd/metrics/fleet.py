"""The fleet's gauges, read from the router's state when Prometheus scrapes.

:class:`FleetCollector` is a ``prometheus_client`` collector: at each scrape it asks for
the router's status (``RouterCore.status()`` plus the trace writer's ``stats()``, the
same data as ``/fleet/status``) and turns it into gauges: node status, in-flight
requests per node and model, slots, the holding queue per model, loaded models and
memory per node, the trace writer's backlog and failures, and the router's own counters.
Nothing runs between scrapes. Node and model labels go through the recorder's caps.

A router counter gets a metric when :data:`ROUTER_COUNTERS` names it and the router
reports it (a new counter in ``RouterCore.counters`` needs one entry here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from herd import __version__
from herd.metrics.labels import OTHER, LabelCap

NODE_STATUSES = ("online", "degraded", "offline")

# RouterCore.counters key -> (metric name without _total, help)
ROUTER_COUNTERS: dict[str, tuple[str, str]] = {
    "held": ("herd_router_held_requests", "Requests that waited in the holding queue"),
    "hold_timeouts": (
        "herd_router_hold_timeouts",
        "Requests that left the holding queue without a node (503)",
    ),
    "moved": ("herd_rebalanced_requests", "Requests the rebalancer moved off a busy node"),
    "prewarmed": ("herd_prewarms", "Models pre-warmed on a node for a queue"),
    "reaped": ("herd_zombies_reaped", "In-flight entries reaped after FLEET_ZOMBIE_TIMEOUT"),
    "cooled_down": (
        "herd_failure_cooldowns",
        "Node and model pairs the failure memory cooled down after failures",
    ),
    "readmitted": (
        "herd_failure_readmissions",
        "Cooled-down node and model pairs readmitted after a successful probe",
    ),
}

Status = Callable[[], Mapping[str, Any]]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class FleetCollector:
    """Gauges of the fleet at scrape time (see the module's docstring)."""

    def __init__(self, status: Status, models: LabelCap, nodes: LabelCap) -> None:
        self._status = status
        self._models = models
        self._nodes = nodes

    def describe(self) -> list[Metric]:
        return []  # registering must not read the router's state

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        info = GaugeMetricFamily("herd_build_info", "herd's version", labels=("version",))
        info.add_metric((__version__,), 1)
        yield info
        yield from self._node_families(status.get("nodes") or ())
        yield from self._queue_families(status.get("queue") or {})
        yield from self._trace_families(status.get("traces") or {})
        counters = status.get("counters") or {}
        for key, (name, doc) in ROUTER_COUNTERS.items():
            value = _num(counters.get(key))
            if value is not None:
                yield CounterMetricFamily(name, doc, value=value)

    def _node_families(self, nodes: Any) -> Iterator[Metric]:
        def gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=("node", *labels))

        state = gauge("herd_node_status", "1 for the node's current status", "status")
        draining = gauge("herd_node_draining", "1 while the node drains")
        slots = gauge("herd_node_slots", "Requests the node runs at once (num_parallel)")
        in_flight = gauge(
            "herd_node_in_flight_requests", "Requests running on the node, per model", "model"
        )
        loaded = gauge("herd_node_loaded_models", "Models loaded in the node's memory")
        loaded_bytes = gauge(
            "herd_node_loaded_model_bytes", "Memory a loaded model takes on the node", "model"
        )
        mem_total = gauge("herd_node_memory_total_bytes", "The node's memory")
        mem_free = gauge("herd_node_memory_available_bytes", "The node's free memory")
        disk_free = gauge("herd_node_disk_free_bytes", "Free disk where the node's models live")
        cpu = gauge("herd_node_cpu_utilization_ratio", "The node's CPU use, 0 to 1")
        age = gauge("herd_node_heartbeat_age_seconds", "Time since the node's last heartbeat")
        per_model: dict[tuple[str, str], float] = {}
        sizes: dict[tuple[str, str], float] = {}
        for n in nodes:
            node = self._nodes(str(n.get("node_id") or ""))
            if node == OTHER:
                continue  # past the node cap: its series would collide with another's
            for value in NODE_STATUSES:
                state.add_metric((node, value), 1 if n.get("status") == value else 0)
            draining.add_metric((node,), 1 if n.get("draining") else 0)
            _add(slots, (node,), n.get("num_parallel"))
            for model, count in (n.get("in_flight_by_model") or {}).items():
                _sum(per_model, (node, self._models(str(model))), count)
            models = n.get("loaded_models") or ()
            loaded.add_metric((node,), len(models))
            for m in models:
                _sum(sizes, (node, self._models(str(m.get("name") or ""))), m.get("size"))
            _add(mem_total, (node,), n.get("memory_total"))
            _add(mem_free, (node,), n.get("memory_available"))
            _add(disk_free, (node,), n.get("disk_free"))
            pct = _num(n.get("cpu_percent"))
            if pct is not None:
                cpu.add_metric((node,), pct / 100.0)
            _add(age, (node,), n.get("last_seen_s_ago"))
        for key, count in per_model.items():
            in_flight.add_metric(key, count)
        for key, size in sizes.items():
            loaded_bytes.add_metric(key, size)
        families = (state, draining, slots, in_flight, loaded, loaded_bytes)
        yield from (*families, mem_total, mem_free, disk_free, cpu, age)

    def _queue_families(self, queue: Mapping[str, Any]) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "herd_holding_queue_depth", "Requests waiting in the router's holding queue"
        )
        depth.add_metric((), _num(queue.get("waiting")) or 0.0)
        yield depth
        waiting = GaugeMetricFamily(
            "herd_waiting_requests", "Requests waiting for a node, per model", labels=("model",)
        )
        by_model: dict[tuple[str, ...], float] = {}
        for model, count in (queue.get("waiting_by_model") or {}).items():
            _sum(by_model, (self._models(str(model)),), count)
        for key, value in by_model.items():
            waiting.add_metric(key, value)
        yield waiting
        in_flight = GaugeMetricFamily("herd_in_flight_requests", "Requests running on any node")
        in_flight.add_metric((), _num(queue.get("in_flight")) or 0.0)
        yield in_flight

    def _trace_families(self, traces: Mapping[str, Any]) -> Iterator[Metric]:
        if not traces:
            return
        submitted = _num(traces.get("submitted")) or 0.0
        written = _num(traces.get("written")) or 0.0
        quarantined = _num(traces.get("quarantined")) or 0.0
        backlog = GaugeMetricFamily(
            "herd_trace_backlog", "Traces journaled but not yet in the database"
        )
        backlog.add_metric((), max(0.0, submitted - written - quarantined))
        yield backlog
        up = GaugeMetricFamily("herd_trace_writer_up", "1 while the trace writer's thread runs")
        up.add_metric((), 1 if traces.get("alive", True) else 0)
        yield up
        for key, name, doc in (
            ("written", "herd_traces_written", "Traces written to the database"),
            ("quarantined", "herd_traces_quarantined", "Traces the database refused, kept aside"),
            ("failures", "herd_trace_writer_failures", "Database writes that failed (retried)"),
            ("crashes", "herd_trace_writer_crashes", "Restarts of the trace writer's thread"),
        ):
            value = _num(traces.get(key))
            if value is not None:
                yield CounterMetricFamily(name, doc, value=value)


def _add(family: GaugeMetricFamily, labels: tuple[str, ...], value: Any) -> None:
    number = _num(value)
    if number is not None:
        family.add_metric(labels, number)


def _sum(into: dict[Any, float], key: Any, value: Any) -> None:
    """Values whose labels fold into one (models past the cap) are added up."""
    number = _num(value)
    if number is not None:
        into[key] = into.get(key, 0.0) + number
