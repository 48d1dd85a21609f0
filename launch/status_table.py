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


def _availability(node: dict[str, Any]) -> str:
    """Capacity learning: availability now -> next hour, or why the node is paused."""
    cap = node.get("capacity")
    if not cap:
        return "-"
    if cap.get("paused"):
        return f"paused: {cap.get('pause_reason') or 'capacity learning'}"
    nxt = cap.get("availability_next")
    return f"{cap.get('availability') or 0.0:.2f}->{'?' if nxt is None else f'{nxt:.2f}'}"


def render_status(status: dict[str, Any]) -> str:
    header = ["NODE", "STATUS", "BACKEND", "CPU", "MEM FREE", "IN-FLIGHT", "MODELS", "LOADED"]
    nodes = status.get("nodes", [])
    rows = [header] + [_row(n) for n in nodes]
    if any(n.get("capacity") for n in nodes):  # an AVAIL column when some node learns
        for row, node in zip(rows, [None, *nodes], strict=True):
            row.insert(5, "AVAIL" if node is None else _availability(node))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    queue = status.get("queue", {})
    lines.append("")
    lines.append(
        f"{len(status.get('nodes', []))} node(s); in flight {queue.get('in_flight', 0)}, "
        f"waiting {queue.get('waiting', 0)}"
    )
    return "\n".join(lines)
