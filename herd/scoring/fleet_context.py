"""Fleet-level facts one decision needs, computed once per decision (O(nodes)).

Signals and eliminators get a :class:`ScoreContext` so that none of them has to look
at other nodes (which would make a decision O(nodes^2)). The memory helpers here are
shared by the ``model_does_not_fit`` eliminator, the ``memory_fit`` signal and the
expected-latency estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from herd.domain import EMPTY_PERF, FleetSnapshot, ModelPerf, NodeView, PairHealth, PerfStats
from herd.scoring.query import RouteQuery
from herd.scoring.weights import ScoringWeights


@dataclass(frozen=True, slots=True)
class ScoreContext:
    key: str = ""  # the query model (canonical)
    perf: PerfStats = EMPTY_PERF
    learned: Mapping[str, ModelPerf] = field(default_factory=dict)  # node id -> the model's
    model_bytes: int = 0  # the query model's size on disk, as any node reports it
    fleet_resident: int = 0  # its smallest measured size in memory on any node
    best_p75_s: float | None = None  # the fleet's best p75 latency for the model
    completion_tokens: float | None = None  # its mean answer length, fleet-wide
    mem_lo: float = 0.0  # log2 of the smallest memory_total in the fleet (0 = unknown)
    mem_hi: float = 0.0  # log2 of the largest
    model_pos: float | None = None  # role affinity: the model's size, 0 small .. 1 large
    failures: Mapping[str, PairHealth] = field(default_factory=dict)  # node id -> the model's


def build_context(
    snapshot: FleetSnapshot, query: RouteQuery, weights: ScoringWeights
) -> ScoreContext:
    key = query.key
    size = 0
    lo = 0
    hi = 0
    for node in snapshot.nodes:
        hb = node.heartbeat
        disk = hb.models_by_key.get(key)
        if disk is not None and disk.size > size:
            size = disk.size
        total = hb.memory_total
        if total > 0:
            if lo == 0 or total < lo:
                lo = total
            if total > hi:
                hi = total
    perf = snapshot.perf
    fleet = perf.fleet.get(key)
    small, large = math.log2(weights.small_model_bytes), math.log2(weights.large_model_bytes)
    model_pos = None
    if size > 0:
        model_pos = min(1.0, max(0.0, (math.log2(size) - small) / (large - small)))
    return ScoreContext(
        key=key,
        perf=perf,
        learned=perf.models.get(key, {}),
        model_bytes=size,
        fleet_resident=fleet.resident_bytes if fleet else 0,
        best_p75_s=fleet.best_p75_s if fleet else None,
        completion_tokens=fleet.completion_tokens if fleet else None,
        mem_lo=math.log2(lo) if lo else 0.0,
        mem_hi=math.log2(hi) if hi else 0.0,
        model_pos=model_pos,
        failures=snapshot.failures.models.get(key, {}),
    )


def model_bytes(node: NodeView, ctx: ScoreContext) -> int:
    """The model's file size: this node's copy, else what another node reported (0 = unknown)."""
    key = ctx.key
    hb = node.heartbeat
    disk = hb.models_by_key.get(key)
    if disk is not None and disk.size > 0:
        return disk.size
    loaded = hb.loaded_by_key.get(key)
    if loaded is not None and loaded.size > 0:
        return loaded.size
    return ctx.model_bytes


def needed_bytes(node: NodeView, ctx: ScoreContext) -> int:
    """Memory a cold load of the model would take on this node (0 if loaded or unknown).

    The measured resident size wins (this node's, else the smallest seen on any node,
    since KV cache depends on each node's settings); the file size is the fallback.
    """
    hb = node.heartbeat
    if ctx.key in hb.loaded_by_key:
        return 0
    learned = ctx.learned.get(hb.node_id)
    if learned is not None and learned.resident_bytes > 0:
        return learned.resident_bytes
    if ctx.fleet_resident > 0:
        return ctx.fleet_resident
    return model_bytes(node, ctx)


def room_for_load(node: NodeView) -> int | None:
    """Bytes a new model could take: free memory plus the models Ollama could evict
    (loaded, no request in flight), within the capacity learner's ceiling if any.
    ``None`` when the node did not report its memory."""
    hb = node.heartbeat
    if hb.memory_total <= 0:
        return None
    busy = node.in_flight_by_model
    resident = 0
    idle = 0
    for key, loaded in hb.loaded_by_key.items():
        resident += loaded.size
        if not busy.get(key):
            idle += loaded.size
    room = hb.memory_available + idle
    if hb.memory_ceiling > 0:
        room = min(room, hb.memory_ceiling - resident + idle)
    return room
