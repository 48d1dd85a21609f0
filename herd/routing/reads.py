"""The router's reads as plain JSON-able data, built from a frozen fleet snapshot.

:class:`herd.routing.core.RouterCore` answers ``catalog`` (``/api/tags``), ``running``
(``/api/ps``) and ``status`` (``/fleet/status``, ``herd status``, the dashboard, the
metrics' gauges) with these functions; they read, never change, the router's state.
``outcome_record`` is one entry of its list of recent requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from herd.capacity.report import capacity_status
from herd.domain import FleetSnapshot, NodeView, Outcome, canonical_model


def fleet_catalog(snapshot: FleetSnapshot) -> list[dict[str, Any]]:
    """Every model across the herd (``/api/tags``), with which nodes hold and run it."""
    merged: dict[str, dict[str, Any]] = {}
    for view in snapshot.nodes:
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


def fleet_running(snapshot: FleetSnapshot) -> list[dict[str, Any]]:
    """Every loaded model on every reachable node (``/api/ps``)."""
    out = []
    for view in snapshot.nodes:
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


def node_status(
    view: NodeView, now: float, remembered: Mapping[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """One node of ``/fleet/status``; ``remembered`` is the failure memory's report."""
    hb = view.heartbeat
    return {
        "node_id": hb.node_id,
        "hostname": hb.hostname,
        "status": view.status,
        "ray_node_id": hb.ray_node_id,
        "backend": hb.backend,
        "backend_url": hb.backend_url,
        "data_url": hb.data_url,
        "backend_ok": hb.backend_ok,
        "remote": hb.remote,
        "backend_version": hb.backend_version,
        "herd_version": hb.herd_version,
        "draining": hb.draining,
        "last_seen_s_ago": round(now - view.last_seen, 3),
        "cpu_percent": hb.cpu_percent,
        "cpu_count": hb.cpu_count,
        "memory_total": hb.memory_total,
        "memory_available": hb.memory_available,
        "memory_pressure": hb.memory_pressure,
        "disk_free": hb.disk_free,
        "num_parallel": hb.num_parallel,
        "in_flight": view.in_flight,
        "in_flight_by_model": dict(view.in_flight_by_model),
        "models": [m.name for m in hb.models],
        "loaded_models": [
            {"name": m.name, "size": m.size, "context_length": m.context_length} for m in hb.loaded
        ],
        "failures": remembered.get(hb.node_id, []),  # the failure memory
        "capacity": capacity_status(hb),  # capacity learning (None: off)
    }


def fleet_status(
    snapshot: FleetSnapshot,
    now: float,
    remembered: Mapping[str, list[dict[str, Any]]],
    *,
    queue: dict[str, Any],
    events: Iterable[dict[str, Any]],
    counters: Mapping[str, int],
    view_version: int,
) -> dict[str, Any]:
    """Fleet state (``/fleet/status``): each node, the holding ``queue``, the last 50
    router ``events``, the ``counters`` and the view version the mirrors catch up to."""
    return {
        "nodes": [node_status(view, now, remembered) for view in snapshot.nodes],
        "queue": queue,
        "events": list(events)[-50:],
        "counters": dict(counters),
        "view_version": view_version,  # what the ingress mirrors catch up to
        "time": now,
    }


def outcome_record(outcome: Outcome, started_at: float | None) -> dict[str, Any]:
    """A finished request as the router's recent list keeps it."""
    return {
        "request_id": outcome.request_id,
        "node_id": outcome.node_id,
        "model": outcome.model,
        "ok": outcome.ok,
        "ttft_s": outcome.first_chunk_s,
        "latency_s": outcome.total_s,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "error": outcome.error,
        "started_at": started_at,
    }
