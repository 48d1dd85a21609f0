"""VRAM-aware fallback: serve an already-loaded model of the same category instead of
cold-loading the requested one.

Off by default: a user who asks for a model gets that model unless the fleet
(``FLEET_VRAM_FALLBACK`` / the dashboard toggle) or the request opts in
(:func:`requested_in_body`). It only applies when the requested model is loaded on
no node that can take requests; the stand-in is a model loaded on such a node, of the
same category (:mod:`herd.scoring.categories`), the closest in size (parameters, else
bytes), preferring the same family, then the name. The caller routes the stand-in
with ``decide(..., models=[choice.model])`` and reports ``choice.model`` as the model
that served (response ``model`` field, ``X-Herd-Model``, the trace).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from herd.domain import FleetSnapshot, ModelOnDisk, NodeView, canonical_model
from herd.scoring.model_size import parameter_count, size_distance
from herd.taxonomy import group_of


@dataclass(frozen=True, slots=True)
class VramFallback:
    requested: str
    model: str  # the loaded model to serve instead
    category: str
    nodes: tuple[str, ...]  # where it is loaded (sorted)
    note: str


_Found = tuple[str, ModelOnDisk | None, int, list[str]]


def requested_in_body(body: Mapping[str, Any]) -> bool:
    """Does the client opt in? ``"vram_fallback": true`` at the top level of the body or
    in its ``metadata`` (where the OpenAI SDKs' ``extra_body`` puts herd fields)."""
    if body.get("vram_fallback") is True:
        return True
    metadata = body.get("metadata")
    return isinstance(metadata, Mapping) and metadata.get("vram_fallback") is True


def _takes_requests(node: NodeView, exclude: frozenset[str]) -> bool:
    hb = node.heartbeat
    return (
        node.status != "offline"
        and hb.backend_ok
        and not hb.draining
        and not hb.paused
        and node.node_id not in exclude
    )


def _describe(snapshot: FleetSnapshot, key: str) -> ModelOnDisk | None:
    """The model as some node describes it on disk (the node with the lowest id)."""
    for node in sorted(snapshot.nodes, key=lambda n: n.node_id):
        disk = node.heartbeat.models_by_key.get(key)
        if disk is not None:
            return disk
    return None


def vram_fallback(
    snapshot: FleetSnapshot,
    model: str,
    *,
    enabled: bool,
    exclude: frozenset[str] = frozenset(),
) -> VramFallback | None:
    """The loaded stand-in for ``model``, or ``None`` (disabled, already loaded, none fits)."""
    if not enabled:
        return None
    key = canonical_model(model)
    live = sorted(
        (n for n in snapshot.nodes if _takes_requests(n, exclude)), key=lambda n: n.node_id
    )
    if any(key in n.heartbeat.loaded_by_key for n in live):
        return None
    wanted = _describe(snapshot, key)
    category = group_of(model, wanted)
    want_params = parameter_count(model, wanted.parameter_size if wanted else "")
    want_bytes = float(wanted.size) if wanted and wanted.size else None
    family = wanted.family.lower() if wanted else ""

    # canonical name -> (name, disk entry, size in memory, nodes), from the lowest node id
    found: dict[str, _Found] = {}
    for node in live:
        hb = node.heartbeat
        for other, loaded in hb.loaded_by_key.items():
            disk = hb.models_by_key.get(other)
            if group_of(loaded.name, disk) != category:
                continue
            entry = found.setdefault(other, (loaded.name, disk, loaded.size, []))
            entry[3].append(node.node_id)
    if not found:
        return None

    def preference(item: tuple[str, _Found]) -> tuple[float, bool, str]:
        other, (name, disk, size, _) = item
        distance = size_distance(
            want_params, parameter_count(name, disk.parameter_size if disk else "")
        )
        if math.isinf(distance):
            distance = size_distance(want_bytes, float((disk.size if disk else 0) or size))
        same_family = bool(family) and disk is not None and disk.family.lower() == family
        return (distance, not same_family, other)

    other, (name, _, _, nodes) = min(found.items(), key=preference)
    return VramFallback(
        requested=model,
        model=name,
        category=category,
        nodes=tuple(sorted(nodes)),
        note=f"{model} is loaded nowhere; serving {name} ({category}), already loaded",
    )
