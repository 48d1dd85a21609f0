"""Fleet state: the last heartbeat of every node, its status, and in-flight book-keeping.

Plain Python, no I/O: the RouterActor owns one instance and feeds it heartbeats,
Ray node deaths and request starts/ends. Status follows the seed's timeouts:
online while heartbeats arrive within ``heartbeat_timeout``, degraded until
``heartbeat_offline``, then offline; a node whose Ray node died is offline at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from herd.domain import (
    EMPTY_FAILURES,
    EMPTY_PERF,
    FailureStats,
    FleetSnapshot,
    NodeHeartbeat,
    NodeStatus,
    NodeView,
    PerfStats,
    canonical_model,
)


def node_status(age: float, dead: bool, timeout: float, offline: float) -> NodeStatus:
    """Status from the age of the last heartbeat (seconds) and whether Ray saw it die."""
    if dead:
        return "offline"
    if age <= timeout:
        return "online"
    return "degraded" if age <= offline else "offline"


@dataclass(frozen=True, slots=True)
class MirrorNode:
    """One node as the router shares it with ingress replicas (``RouterCore.view``):
    the last heartbeat, its age on the router's clock, and the router's in-flight book."""

    heartbeat: NodeHeartbeat
    age: float
    dead: bool
    in_flight_by_model: dict[str, int]


@dataclass(slots=True)
class _NodeRecord:
    heartbeat: NodeHeartbeat
    last_seen: float
    dead_since: float | None = None
    in_flight: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class InFlight:
    request_id: str
    node_id: str
    model: str
    started_at: float


class FleetState:
    def __init__(self, heartbeat_timeout: float, heartbeat_offline: float) -> None:
        self._timeout = heartbeat_timeout
        self._offline = heartbeat_offline
        self._nodes: dict[str, _NodeRecord] = {}
        self._requests: dict[str, InFlight] = {}
        self._snapshot: FleetSnapshot | None = None
        self._snapshot_bucket = -1.0
        self.version = 0

    # --- inputs -------------------------------------------------------------------
    def heartbeat(self, hb: NodeHeartbeat, now: float) -> bool:
        """Record a heartbeat; False when it was ignored.

        Ray never reuses a node id, so once Ray reported a node's Ray node dead, only a
        heartbeat from a NodeActor on another (live) Ray node brings it back. A worker
        orphaned by its dead raylet can keep running for a while and must not revive it.
        """
        rec = self._nodes.get(hb.node_id)
        if rec is None:
            self._nodes[hb.node_id] = _NodeRecord(hb, now)
        else:
            if rec.dead_since is not None and hb.ray_node_id == rec.heartbeat.ray_node_id:
                return False
            rec.heartbeat = hb
            rec.last_seen = now
            rec.dead_since = None
        self._changed()
        return True

    def mark_ray_node_dead(self, ray_node_id: str, now: float) -> list[str]:
        """Mark every node hosted on a dead Ray node offline; returns their ids."""
        hit = []
        for node_id, rec in self._nodes.items():
            if rec.heartbeat.ray_node_id == ray_node_id and rec.dead_since is None:
                rec.dead_since = now
                hit.append(node_id)
        if hit:
            self._changed()
        return hit

    def remove(self, node_id: str) -> None:
        if self._nodes.pop(node_id, None) is not None:
            self._changed()

    def begin(self, request_id: str, node_id: str, model: str, now: float) -> None:
        key = canonical_model(model)
        self._requests[request_id] = InFlight(request_id, node_id, key, now)
        rec = self._nodes.get(node_id)
        if rec is not None:
            rec.in_flight[key] += 1
        self._changed()

    def end(self, request_id: str) -> InFlight | None:
        entry = self._requests.pop(request_id, None)
        if entry is None:
            return None
        rec = self._nodes.get(entry.node_id)
        if rec is not None:
            rec.in_flight[entry.model] -= 1
            if rec.in_flight[entry.model] <= 0:
                del rec.in_flight[entry.model]
        self._changed()
        return entry

    # --- reads --------------------------------------------------------------------
    def status(self, node_id: str, now: float) -> NodeStatus:
        rec = self._nodes[node_id]
        return node_status(
            now - rec.last_seen, rec.dead_since is not None, self._timeout, self._offline
        )

    def mirror(self, now: float) -> tuple[MirrorNode, ...]:
        """Every node with its heartbeat age and in-flight counts, for the fleet mirrors."""
        return tuple(
            MirrorNode(
                heartbeat=rec.heartbeat,
                age=now - rec.last_seen,
                dead=rec.dead_since is not None,
                in_flight_by_model=dict(rec.in_flight),
            )
            for _, rec in sorted(self._nodes.items())
        )

    def node_ids(self) -> list[str]:
        return list(self._nodes)

    def heartbeat_of(self, node_id: str) -> NodeHeartbeat | None:
        rec = self._nodes.get(node_id)
        return rec.heartbeat if rec else None

    def in_flight(self) -> list[InFlight]:
        return list(self._requests.values())

    def snapshot(
        self, now: float, perf: PerfStats = EMPTY_PERF, failures: FailureStats = EMPTY_FAILURES
    ) -> FleetSnapshot:
        """A frozen view; rebuilt only when state changed or a status may have aged.
        ``perf`` (the router's learned performance) and ``failures`` (its failure memory)
        ride along."""
        bucket = now // 0.25  # statuses age with time: refresh at least every 250 ms
        if self._snapshot is None or bucket != self._snapshot_bucket:
            self._snapshot = FleetSnapshot(
                tuple(
                    NodeView(
                        heartbeat=rec.heartbeat,
                        status=self.status(node_id, now),
                        in_flight=sum(rec.in_flight.values()),
                        in_flight_by_model=dict(rec.in_flight),
                        last_seen=rec.last_seen,
                    )
                    for node_id, rec in sorted(self._nodes.items())
                ),
                now,
                perf,
                failures,
            )
            self._snapshot_bucket = bucket
        elif self._snapshot.perf is not perf or self._snapshot.failures is not failures:
            self._snapshot = replace(self._snapshot, perf=perf, failures=failures)
        return self._snapshot

    def known_model(self, model: str) -> bool:
        """Has any node ever reported this model (on disk or loaded)? Else it is a 404."""
        return any(rec.heartbeat.has_model(model) for rec in self._nodes.values())

    def _changed(self) -> None:
        self._snapshot = None
        self.version += 1
