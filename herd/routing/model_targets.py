"""Which node(s) a model-management request goes to: show, pull, delete; and the
fleet's default image model. Pure functions over the router's plain-data reads:
``catalog`` entries (``{"model": {...}, "nodes": [...], "loaded_on": [...]}``, see
``RouterCore.catalog``) and ``status()["nodes"]`` entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from herd.domain import canonical_model
from herd.errors import BadRequest, ModelNotFound, NoCapacity, NodeUnavailable

Entry = Mapping[str, Any]


def catalog_entry(catalog: Sequence[Entry], model: str) -> Entry | None:
    key = canonical_model(model)
    return next((e for e in catalog if canonical_model(e["model"]["name"]) == key), None)


def holders(catalog: Sequence[Entry], model: str) -> list[str]:
    """Nodes that hold ``model``, the ones that have it loaded first."""
    entry = catalog_entry(catalog, model)
    if entry is None:
        return []
    loaded = list(entry.get("loaded_on") or ())
    return loaded + [n for n in entry.get("nodes") or () if n not in loaded]


def _find_node(nodes: Sequence[Entry], name: str) -> Entry:
    for node in nodes:
        if node["node_id"] == name:
            return node
    known = ", ".join(sorted(n["node_id"] for n in nodes)) or "none"
    raise BadRequest(f"unknown node '{name}' (nodes: {known})")


def _usable(node: Entry) -> bool:
    return node.get("status") == "online" and bool(node.get("backend_ok"))


def pick_pull_node(nodes: Sequence[Entry], model: str, named: str | None = None) -> str:
    """The node a pull goes to: ``named`` when given (it must be online and run Ollama),
    else the online Ollama node with the most free memory, preferring nodes that do not
    have the model yet."""
    if named:
        node = _find_node(nodes, named)
        if not _usable(node):
            raise NodeUnavailable(f"node '{named}' is {node.get('status', 'unknown')}")
        if node.get("backend") != "ollama":
            raise BadRequest(f"node '{named}' runs {node.get('backend')}, which cannot pull models")
        return named
    key = canonical_model(model)
    candidates = [
        n for n in nodes if _usable(n) and not n.get("draining") and n.get("backend") == "ollama"
    ]
    if not candidates:
        raise NoCapacity("no online Ollama node can pull models right now")

    def order(node: Entry) -> tuple[bool, int, str]:
        has = any(canonical_model(m) == key for m in node.get("models") or ())
        return has, -int(node.get("memory_available") or 0), str(node["node_id"])

    return str(min(candidates, key=order)["node_id"])


def delete_targets(
    catalog: Sequence[Entry], nodes: Sequence[Entry], model: str, named: str | None = None
) -> list[str]:
    """The nodes a delete goes to: ``named`` (which must exist), else every node that
    holds the model. No holder: 404."""
    if named:
        _find_node(nodes, named)
        return [named]
    found = holders(catalog, model)
    if not found:
        raise ModelNotFound(f"model '{model}' not found")
    return found


def show_targets(catalog: Sequence[Entry], model: str) -> list[str]:
    """Nodes to ask for ``/api/show``, in order (loaded first). None: 404."""
    found = holders(catalog, model)
    if not found:
        raise ModelNotFound(f"model '{model}' not found")
    return found


def default_model(catalog: Sequence[Entry], category: str) -> str | None:
    """The fleet's first model of ``category`` (a loaded one if any), for OpenAI requests
    that leave ``model`` out (images)."""
    matching = [e for e in catalog if e["model"].get("category") == category]
    if not matching:
        return None
    matching.sort(key=lambda e: (not e.get("loaded_on"), e["model"]["name"]))
    return str(matching[0]["model"]["name"])
