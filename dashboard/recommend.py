"""Model mix per node (pure): what each device should keep, from its hardware and usage.

:func:`recommend` takes the fleet status (``herd.routing.core.RouterCore.status``) and the
fleet's recent usage (``{model: requests}``) and returns, per node, a set of models that
fits its memory budget (``memory * BUDGET_FRACTION``, the rest is for the OS, KV cache
and apps): first the models the fleet actually uses (most requested first), then one
model per role (general, coding, reasoning, embedding) from a small curated catalog,
as large as the budget allows with no single model taking more than ``MAX_SHARE`` of it.
Small or CPU-poor machines get small, fast models. Sizes are Q4 weights in GB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from herd.domain import canonical_model

GB = 1024**3
BUDGET_FRACTION = 0.7
MAX_SHARE = 0.6
SMALL_NODE_GB = 12.0  # at or below this (or <= 4 CPUs without much memory): small models


@dataclass(frozen=True, slots=True)
class CatalogModel:
    name: str
    size_gb: float
    role: str  # general | coding | reasoning | embedding
    note: str


CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel("nomic-embed-text", 0.3, "embedding", "embeddings for search and RAG"),
    CatalogModel("gemma3:270m", 0.3, "general", "tiny and instant; classification, routing"),
    CatalogModel("llama3.2:3b", 2.0, "general", "fast small chat model"),
    CatalogModel("gemma3:4b", 3.3, "general", "small multimodal chat"),
    CatalogModel("qwen3:8b", 5.2, "general", "strong all-rounder for its size"),
    CatalogModel("qwen2.5-coder:7b", 4.7, "coding", "code completion and edits"),
    CatalogModel("deepseek-r1:8b", 5.2, "reasoning", "step-by-step reasoning, small"),
    CatalogModel("gemma3:12b", 8.1, "general", "good quality on mid-size machines"),
    CatalogModel("deepseek-r1:14b", 9.0, "reasoning", "reasoning, mid-size"),
    CatalogModel("gpt-oss:20b", 14.0, "reasoning", "open-weight reasoning with tool use"),
    CatalogModel("gemma3:27b", 17.0, "general", "high-quality general chat"),
    CatalogModel("qwen2.5-coder:32b", 20.0, "coding", "best open coder at this size"),
    CatalogModel("qwen3:32b", 20.0, "reasoning", "strong reasoning and chat"),
    CatalogModel("llama3.3:70b", 43.0, "general", "large general model for big machines"),
    CatalogModel("gpt-oss:120b", 65.0, "reasoning", "frontier-class open model, big machines"),
)
ROLES = ("general", "coding", "reasoning", "embedding")
_PARAMS = re.compile(r":(?:[a-z-]*?)(\d+(?:\.\d+)?)([bm])\b")


def estimate_size_gb(name: str) -> float:
    """Q4 size guessed from a tag like ``:7b`` / ``:270m`` (0.6 GB per billion + 0.3)."""
    match = _PARAMS.search(canonical_model(name))
    if not match:
        return 4.0
    billions = float(match.group(1)) / (1000 if match.group(2) == "m" else 1)
    return round(billions * 0.6 + 0.3, 1)


def _role(name: str) -> str:
    low = name.lower()
    if "embed" in low:
        return "embedding"
    if "coder" in low or "code" in low:
        return "coding"
    if any(k in low for k in ("r1", "reason", "gpt-oss", "qwq")):
        return "reasoning"
    return "general"


def _known_sizes(status: Mapping[str, Any]) -> dict[str, float]:
    sizes: dict[str, float] = {}
    for node in status.get("nodes") or []:
        for m in node.get("loaded_models") or []:
            if m.get("size"):
                sizes[canonical_model(m["name"])] = round(m["size"] / GB, 1)
        for m in node.get("model_details") or []:  # optional: per-model disk sizes
            if m.get("size"):
                sizes.setdefault(canonical_model(m["name"]), round(m["size"] / GB, 1))
    for c in CATALOG:
        sizes.setdefault(canonical_model(c.name), c.size_gb)
    return sizes


def _names(values: Iterable[Any]) -> set[str]:
    out = set()
    for v in values:
        name = v.get("name") if isinstance(v, Mapping) else v
        if name:
            out.add(canonical_model(str(name)))
    return out


def recommend_node(
    node: Mapping[str, Any], usage: Mapping[str, int], sizes: Mapping[str, float]
) -> dict[str, Any]:
    mem_gb = (node.get("memory_total") or 0) / GB
    cpus = int(node.get("cpu_count") or 1)
    budget = mem_gb * BUDGET_FRACTION
    small = mem_gb <= SMALL_NODE_GB or (cpus <= 4 and mem_gb <= 2 * SMALL_NODE_GB)
    cap = min(budget * MAX_SHARE, 8.0) if small else budget * MAX_SHARE
    installed = _names(node.get("models") or [])
    loaded = _names(node.get("loaded_models") or [])
    picked: list[dict[str, Any]] = []
    used = 0.0

    def add(name: str, role: str, reason: str) -> bool:
        nonlocal used
        key = canonical_model(name)
        size = sizes.get(key) or estimate_size_gb(name)
        if any(p["key"] == key for p in picked) or size > cap or used + size > budget:
            return False
        used += size
        picked.append(
            {
                "key": key,
                "model": name,
                "size_gb": size,
                "role": role,
                "reason": reason,
                "installed": key in installed,
                "loaded": key in loaded,
                "requests": int(usage.get(name, 0) or usage.get(key, 0)),
            }
        )
        return True

    for name, requests in sorted(usage.items(), key=lambda kv: (-kv[1], kv[0])):
        if requests > 0:
            add(name, _role(name), f"used by the fleet: {requests} request(s) recently")
    covered = {p["role"] for p in picked}
    for role in ROLES:
        if role in covered:
            continue
        options = sorted((c for c in CATALOG if c.role == role), key=lambda c: -c.size_gb)
        for c in options:
            why = "the largest" if not small else "a fast"
            if add(c.name, role, f"{why} {role} model that fits: {c.note}"):
                break
    for p in picked:
        p.pop("key")
    return {
        "node_id": node.get("node_id"),
        "hostname": node.get("hostname"),
        "status": node.get("status"),
        "memory_gb": round(mem_gb, 1),
        "cpu_count": cpus,
        "budget_gb": round(budget, 1),
        "used_gb": round(used, 1),
        "installed": sorted(installed),
        "recommended": picked,
    }


def recommend(status: Mapping[str, Any], usage: Mapping[str, int], now: float) -> dict[str, Any]:
    """Recommendations for every node that is not offline; see the module docstring."""
    sizes = _known_sizes(status)
    nodes = [
        recommend_node(node, usage, sizes)
        for node in status.get("nodes") or []
        if node.get("status") != "offline"
    ]
    return {"generated_at": now, "cached": False, "nodes": nodes}
