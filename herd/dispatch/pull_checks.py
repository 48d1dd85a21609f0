"""What a pull must pass before any node is asked: the registry allow-list and the disk.

**Registry.** A pull fetches from the registry its model name names, read the way
Ollama reads it: ``[host/][namespace/]model[:tag]``; a name of one or two parts
(``llama3:8b``, ``library/x``) is ``registry.ollama.ai``'s, a name of three has its host
first (``hf.co/user/repo:Q4_K_M`` is ``hf.co``'s, ``10.0.0.5:8080/x/y`` is
``10.0.0.5:8080``'s). Only the hosts of ``FLEET_PULL_REGISTRIES`` are allowed; any other
is refused with 403. Names Ollama would read in some other way (a scheme, ``@``,
more than three parts, characters outside ``[A-Za-z0-9._:/-]``) are refused too: they
cannot be checked safely. ``insecure`` changes how a node talks to an allowed
registry, never which registries are allowed. Auto-pull goes through the same check.

**Disk.** A node that reports its free disk (``NodeHeartbeat.disk_free``) gets a pull
only when it has room for the model's size (known when another node holds it: the
catalog's) plus ``FLEET_NODE_PULL_RESERVE_BYTES``, or for that reserve alone when the
size is unknown; a node that already holds the model (a re-pull fetches only what
changed) and a node that reports nothing are not checked. Refused: 503, naming the
node, what it has, what the pull needs and what to do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from herd.domain import canonical_model
from herd.errors import Forbidden, NoCapacity
from herd.routing import model_targets

DEFAULT_REGISTRY = "registry.ollama.ai"
GIB = 1024**3

_NAME = re.compile(r"[A-Za-z0-9._:/-]+")

Entry = Mapping[str, Any]


def allowed_registries(setting: str) -> frozenset[str]:
    return frozenset(h.strip().lower().rstrip(".") for h in setting.split(",") if h.strip())


def model_registry(name: str) -> str | None:
    """The registry host a pull of ``name`` fetches from; ``None`` for a name that does
    not read unambiguously as ``[host/][namespace/]model[:tag]``."""
    name = name.strip()
    if not _NAME.fullmatch(name) or "//" in name or name.startswith("/") or name.endswith("/"):
        return None
    path = name
    if path.rfind(":") > path.rfind("/"):  # the tag (a ':' in a host comes before a '/')
        path = path[: path.rfind(":")]
    parts = path.split("/")
    if len(parts) > 3 or not all(parts):
        return None
    return parts[0].lower().rstrip(".") if len(parts) == 3 else DEFAULT_REGISTRY


def check_registry(setting: str, model: str) -> str:
    """The registry of ``model`` when FLEET_PULL_REGISTRIES allows it; else Forbidden."""
    allowed = allowed_registries(setting)
    host = model_registry(model)
    shown = ", ".join(sorted(allowed)) or "none"
    if host is None:
        raise Forbidden(
            f"cannot pull '{model}': a pull names [registry/][namespace/]model[:tag] "
            f"(letters, digits, '.', '_', '-'); allowed registries: {shown}"
        )
    if host not in allowed:
        raise Forbidden(
            f"pulls from '{host}' are not allowed (FLEET_PULL_REGISTRIES: {shown}); "
            f"'{model}' was not pulled"
        )
    return host


def known_size(catalog: Sequence[Entry], model: str) -> int:
    """The model's size on disk where another node holds it, else 0 (unknown)."""
    entry = model_targets.catalog_entry(catalog, model)
    return int(entry["model"].get("size") or 0) if entry is not None else 0


def _holds(node: Entry, model: str) -> bool:
    key = canonical_model(model)
    return any(canonical_model(m) == key for m in node.get("models") or ())


def _fits(node: Entry, model: str, need: int) -> bool:
    free = node.get("disk_free")
    return free is None or _holds(node, model) or int(free) >= need


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _short(node: Entry, model: str, size: int, reserve: int) -> NoCapacity:
    need = size + reserve
    what = (
        f"{_gib(size)} for the model + {_gib(reserve)} kept free"
        if size
        else f"its size is unknown: at least the {_gib(reserve)} kept free"
    )
    return NoCapacity(
        f"node '{node['node_id']}' has {_gib(int(node.get('disk_free') or 0))} of disk free "
        f"for models; pulling '{model}' needs {_gib(need)} ({what}, "
        "FLEET_NODE_PULL_RESERVE_BYTES): delete a model there or pull onto another node"
    )


def pick_pull_node(
    nodes: Sequence[Entry],
    catalog: Sequence[Entry],
    model: str,
    named: str | None,
    reserve: int,
) -> str:
    """The node a pull goes to (:func:`herd.routing.model_targets.pick_pull_node`) among
    those with room for it; 503 when the node named, or every node that could pull, lacks
    the disk."""
    size = known_size(catalog, model)
    need = size + reserve
    if named:
        node_id = model_targets.pick_pull_node(nodes, model, named)
        node = next(n for n in nodes if n["node_id"] == node_id)
        if not _fits(node, model, need):
            raise _short(node, model, size, reserve)
        return node_id
    roomy = [n for n in nodes if _fits(n, model, need)]
    try:
        return model_targets.pick_pull_node(roomy, model)
    except NoCapacity:
        best = model_targets.pick_pull_node(nodes, model)  # no node can pull at all: raises
        node = next(n for n in nodes if n["node_id"] == best)
        raise _short(node, model, size, reserve) from None
