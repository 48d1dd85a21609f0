"""The protocol between the router and the ingress mirrors of its fleet state.

An ingress that routes by itself tells the router what it did in numbered batches of
events (:data:`Event`); the router answers view requests with :class:`MirrorData`, which
says which batch of each source it has applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from herd.domain import EMPTY_FAILURES, EMPTY_PERF, FailureStats, Outcome, PerfStats
from herd.routing.fleet import MirrorNode

REPORT_EVERY_S = 0.05  # an ingress sends pending events at least this often ...
REPORT_BATCH = 64  # ... or as soon as this many are pending


@dataclass(frozen=True, slots=True)
class Begin:
    """A request attempt an ingress routed by itself: the router books it in flight."""

    request_id: str
    node_id: str
    model: str
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class Note:
    """Something an ingress did that the router keeps among its events (Health view):
    context protection acting, a VRAM-aware fallback, ..."""

    kind: str
    fields: dict[str, Any]
    time: float


Event = Begin | Outcome | Note


@dataclass(frozen=True, slots=True)
class MirrorData:
    """What ``RouterCore.view`` returns: fleet nodes plus the last batch applied per source."""

    epoch: str
    version: int
    nodes: tuple[MirrorNode, ...]
    applied: dict[str, int] = field(default_factory=dict)
    perf: PerfStats = EMPTY_PERF  # the router's learned performance
    toggles: dict[str, bool] = field(default_factory=dict)  # runtime toggles
    failures: FailureStats = EMPTY_FAILURES  # the router's failure memory ...
    clock: float = 0.0  # ... whose times are on the router's clock, which read this then
