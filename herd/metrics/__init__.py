"""herd's Prometheus metrics: families, bounded labels, the recorder, the fleet's gauges.

The RouterActor owns one :class:`FleetMetrics` (``FLEET_METRICS``, on by default): every
trace and routing event of every ingress replica reaches the router anyway, so the
router counts them once for the whole fleet, and the fleet's gauges are read from its
state at scrape time. ``GET /metrics`` on the endpoint port (``serve_app/routes_metrics``)
returns :meth:`FleetMetrics.exposition` in Prometheus's text format, whichever replica
answers. Pure: no Ray here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from herd.errors import ModelNotFound
from herd.metrics.fleet import FleetCollector, Status
from herd.metrics.recorder import RequestRecorder
from herd.routing.events import Event
from herd.traces.records import TraceRecord

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what Prometheus 2.x and promtool read
T = TypeVar("T")


class FleetMetrics:
    """The router's metrics: request counters and histograms plus the fleet's gauges.

    ``enabled=False`` records nothing (every input returns at once) and exposes nothing.
    """

    def __init__(
        self,
        status: Status,
        known_model: Callable[[str], bool] | None = None,
        enabled: bool = True,
    ) -> None:
        # One series per label set, without the `_created` twin of every counter.
        prometheus_client.disable_created_metrics()
        self.enabled = enabled
        self.registry = CollectorRegistry(auto_describe=False)
        self.recorder = RequestRecorder(self.registry, known_model)
        self.registry.register(FleetCollector(status, self.recorder.models, self.recorder.nodes))

    def traces(self, records: Iterable[TraceRecord]) -> None:
        if self.enabled:
            self.recorder.traces(records)

    def events(self, events: Iterable[Event]) -> None:
        if self.enabled:
            self.recorder.events(events)

    async def timed(self, model: str | None, decision: Awaitable[T]) -> T:
        """Await the router's decision, recording how long it took (holding queue
        included); a model nobody has (404) or a caller that left records nothing."""
        if not self.enabled:
            return await decision
        t0 = time.perf_counter()
        try:
            result = await decision
        except ModelNotFound:
            raise
        except Exception:
            self.recorder.waited(model, time.perf_counter() - t0)  # no node in time: 503
            raise
        self.recorder.waited(model, time.perf_counter() - t0)
        return result

    def exposition(self) -> bytes:
        """Prometheus's text format (:data:`CONTENT_TYPE`); empty when disabled."""
        if not self.enabled:
            return b""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "FleetMetrics"]
