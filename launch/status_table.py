"""Render ``/fleet/status`` data as a readable terminal table."""

from __future__ import annotations

from typing import Any

_GIB = 1024**3


def _row(node: dict[str, Any]) -> list[str]:
    loaded = ", ".join(m["name"] for m in node.get("loaded_models", [])) or "-"
    mem = f"{node['memory_available'] / _GIB:.1f}/{node['memory_total'] / _GIB:.1f}G"
    status = node["status"] + (" (draining)" if node.get("draining") else "")
    backend = node["backend"] + (" (remote)" if node.get("remote") else "")
    backend += "" if node.get("backend_ok") else " (down)"
    return [
        node["node_id"],
        status,
        backend,
        f"{node['cpu_percent']:.0f}%",
        mem,
        str(node["in_flight"]),
        str(len(node.get("models", []))),
        loaded,
    ]


def render_status(status: dict[str, Any]) -> str:
    header = ["NODE", "STATUS", "BACKEND", "CPU", "MEM FREE", "IN-FLIGHT", "MODELS", "LOADED"]
    rows = [header] + [_row(n) for n in status.get("nodes", [])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    queue = status.get("queue", {})
    lines.append("")
    lines.append(
        f"{len(status.get('nodes', []))} node(s); in flight {queue.get('in_flight', 0)}, "
        f"waiting {queue.get('waiting', 0)}"
    )
    return "\n".join(lines)
