"""The router's background duties as pure planners: rebalancer, pre-warm, zombie reaper.

Each takes a frozen :class:`FleetSnapshot` (plus what the router keeps beside it) and
``now``, and returns what should happen; the RouterActor carries it out. A request
counts as *pending* on a node when the node already runs ``num_parallel`` requests of
its model: it waits in the node's slot queue (``herd.node.slots``), has sent nothing to
its client yet and can still go elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from herd.domain import FleetSnapshot, NodeView, canonical_model
from herd.routing.fleet import InFlight


@dataclass(frozen=True, slots=True)
class Move:
    """Hand ``count`` pending ``model`` requests back from ``from_node``; the dispatcher
    re-routes them, and ``to_node`` (hot, with free slots) is where they should land."""

    from_node: str
    to_node: str
    model: str
    count: int


@dataclass(frozen=True, slots=True)
class Warm:
    """Load ``model`` on ``node_id`` now, before its queue reaches it."""

    node_id: str
    model: str
    queued: int


def _usable(node: NodeView) -> bool:
    hb = node.heartbeat
    return node.status == "online" and hb.backend_ok and not hb.draining


def pending_of(node: NodeView, model: str) -> int:
    """Requests of ``model`` on ``node`` beyond its parallel slots."""
    busy = node.in_flight_by_model.get(canonical_model(model), 0)
    return max(0, busy - node.heartbeat.num_parallel)


def free_slots(node: NodeView, model: str) -> int:
    busy = node.in_flight_by_model.get(canonical_model(model), 0)
    return max(0, node.heartbeat.num_parallel - busy)


def queued_by_model(snapshot: FleetSnapshot, holding: Mapping[str, int]) -> dict[str, int]:
    """Requests waiting per model: pending on nodes plus those in the holding queue."""
    queued = {canonical_model(m): n for m, n in holding.items() if n > 0}
    for node in snapshot.nodes:
        for model in node.in_flight_by_model:
            waiting = pending_of(node, model)
            if waiting:
                queued[model] = queued.get(model, 0) + waiting
    return queued


def plan_rebalance(snapshot: FleetSnapshot) -> list[Move]:
    """Pair nodes holding pending requests with nodes that have the model hot and free
    slots. Largest backlog first; never more moves than free slots; never onto a node
    that is draining, degraded or whose backend is down."""
    moves: list[Move] = []
    models = sorted({m for n in snapshot.nodes for m in n.in_flight_by_model})
    for model in models:
        sources = sorted(
            ((pending_of(n, model), n.node_id) for n in snapshot.nodes if pending_of(n, model)),
            key=lambda item: (-item[0], item[1]),
        )
        if not sources:
            continue
        targets = sorted(
            (
                (free_slots(n, model), n.node_id)
                for n in snapshot.nodes
                if _usable(n) and n.heartbeat.is_loaded(model) and free_slots(n, model)
            ),
            key=lambda item: (-item[0], item[1]),
        )
        free = dict((node_id, slots) for slots, node_id in targets)
        for backlog, source in sources:
            for _slots, target in targets:
                if target == source or free[target] <= 0 or backlog <= 0:
                    continue
                count = min(backlog, free[target])
                moves.append(Move(source, target, model, count))
                free[target] -= count
                backlog -= count
    return moves


def _fits(node: NodeView, model: str) -> bool:
    hb = node.heartbeat
    key = canonical_model(model)
    size = next((m.size for m in hb.models if canonical_model(m.name) == key), 0)
    return hb.memory_pressure != "critical" and (size == 0 or size <= hb.memory_available)


def plan_prewarm(
    snapshot: FleetSnapshot,
    queued: Mapping[str, int],
    threshold: int,
    now: float,
    last_warmed: Mapping[tuple[str, str], float],
    cooldown: float,
) -> list[Warm]:
    """For each model whose queue reached ``threshold``, warm it on the runner-up: the
    usable node that has it on disk but not loaded, where it fits, with the most free
    memory (then the fewest requests in flight, then its id). One node per model per
    round; a node and model warmed less than ``cooldown`` ago are skipped."""
    if threshold <= 0:
        return []
    warms: list[Warm] = []
    for model, count in sorted(queued.items()):
        if count < threshold:
            continue
        candidates = [
            n
            for n in snapshot.nodes
            if _usable(n)
            and n.heartbeat.has_model(model)
            and not n.heartbeat.is_loaded(model)
            and _fits(n, model)
            and now - last_warmed.get((n.node_id, model), float("-inf")) >= cooldown
        ]
        if not candidates:
            continue
        best = min(
            candidates,
            key=lambda n: (-n.heartbeat.memory_available, n.in_flight, n.node_id),
        )
        warms.append(Warm(best.node_id, model, count))
    return warms


def find_zombies(entries: Iterable[InFlight], now: float, timeout: float) -> list[InFlight]:
    """In-flight entries that began more than ``timeout`` seconds ago and never ended:
    their ingress died or lost the report. Reclaiming them frees their queue slots."""
    return [e for e in entries if now - e.started_at > timeout]


# --- the router's event records of its upkeep (the Health view's list) ---------------
def zombie_event(entry: InFlight, now: float) -> dict[str, Any]:
    return {
        "time": now,
        "kind": "zombie_reaped",
        "node_id": entry.node_id,
        "model": entry.model,
        "request_id": entry.request_id,
        "age_s": round(now - entry.started_at, 3),
    }


def prewarm_event(warm: Warm, now: float) -> dict[str, Any]:
    return {"time": now, "kind": "prewarm", "node_id": warm.node_id, "model": warm.model}


def rebalance_event(move: Move, count: int, now: float) -> dict[str, Any]:
    return {
        "time": now,
        "kind": "rebalanced",
        "node_id": move.from_node,
        "to_node": move.to_node,
        "model": move.model,
        "count": count,
    }
