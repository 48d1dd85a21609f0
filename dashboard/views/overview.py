"""1. Fleet Overview: live node status, CPU and memory, loaded models, queue depths.

Refreshed every two seconds by a ``dcc.Interval`` from ``service.live()`` (the same data
``/dashboard/events`` pushes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html

from dashboard.bridge import SyncBridge
from dashboard.views.base import View
from dashboard.views.common import (
    Column,
    badge,
    bar_chart,
    empty_figure,
    error_note,
    fmt_gb,
    fmt_int,
    fmt_rate,
    fmt_seconds,
    graph,
    page,
    stats_row,
    styled,
    testid,
)

REFRESH_MS = 2000
STATUS_KIND = {"online": "ok", "degraded": "warning", "offline": "critical"}
GB = 1024**3

STATS = (
    ("overview-nodes-online", "Nodes online"),
    ("overview-in-flight", "In flight"),
    ("overview-waiting", "Waiting in queue"),
    ("overview-requests-1h", "Requests (1 h)"),
    ("overview-latency-1h", "Avg latency (1 h)"),
    ("overview-tokens-per-s-1h", "Tokens/s (1 h)"),
)
STAT_IDS = tuple(id_ for id_, _ in STATS)


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Fleet Overview",
        dcc.Interval(id="overview-tick", interval=REFRESH_MS),
        stats_row(STATS),
        html.Div(id="overview-nodes", className="cards"),
        html.Div([graph("overview-resources"), graph("overview-queues")], className="grid2"),
        html.Div(id="overview-error"),
        intro="Live state of every node; refreshes every 2 s.",
    )


def update(bridge: SyncBridge) -> tuple[Any, ...]:
    """Stat values, node cards, the resources figure, the queue figure, an error note."""
    try:
        live = bridge.call("live")
    except Exception as exc:
        note = error_note(f"Fleet state unavailable: {exc}")
        return (*(["—"] * len(STAT_IDS)), [], empty_figure(), empty_figure(), note)
    nodes = live.get("nodes", [])
    queue = live.get("queue", {})
    recent = live.get("overview", {})
    stats = (
        f"{sum(1 for n in nodes if n['status'] == 'online')} / {len(nodes)}",
        fmt_int(queue.get("in_flight", 0)),
        fmt_int(queue.get("waiting", 0)),
        fmt_int(recent.get("requests", 0)),
        fmt_seconds(recent.get("avg_latency_s")),
        fmt_rate(recent.get("tokens_per_s")),
    )
    cards: list[Any] = [node_card(n) for n in nodes] or [html.P("No nodes have reported yet.")]
    return (*stats, cards, resources_figure(nodes), queue_figure(nodes), None)


def node_card(node: Mapping[str, Any]) -> html.Div:
    nid = node["node_id"]
    total = node.get("memory_total", 0)
    used = total - node.get("memory_available", 0)
    loaded = [m["name"] for m in node.get("loaded_models", [])]
    return html.Div(
        [
            html.Div(
                [
                    html.Strong(nid, **testid("node", nid, "name")),
                    badge(node["status"], STATUS_KIND.get(node["status"], "info")),
                ],
                className="card-head",
            ),
            html.Div(node.get("hostname", ""), className="muted"),
            _line("CPU", f"{node.get('cpu_percent', 0):.1f}%", nid, "cpu"),
            _line("Memory", f"{fmt_gb(used / GB)} / {fmt_gb(total / GB)}", nid, "memory"),
            _line("Pressure", node.get("memory_pressure", "normal"), nid, "pressure"),
            _line(
                "Queue",
                f"{node.get('in_flight', 0)} / {node.get('num_parallel', 1)}",
                nid,
                "queue",
            ),
            _line("Loaded", ", ".join(loaded) or "none", nid, "loaded"),
        ],
        className="card node-card",
        **testid("node", nid),
    )


def _line(label: str, value: str, nid: str, field: str) -> html.Div:
    return html.Div(
        [html.Span(label, className="muted"), html.Span(value, **testid("node", nid, field))],
        className="card-line",
    )


def _memory_used_pct(node: Mapping[str, Any]) -> float | None:
    total = node.get("memory_total")
    return 100.0 * (1 - node.get("memory_available", 0) / total) if total else None


def resources_figure(nodes: Sequence[Mapping[str, Any]]) -> go.Figure:
    """CPU % and memory used % per node, side by side."""
    bars: list[tuple[str, Column]] = [
        ("CPU %", lambda n: n.get("cpu_percent", 0.0)),
        ("Memory %", _memory_used_pct),
    ]
    fig = bar_chart(
        nodes, "node_id", bars, "CPU and memory", y_title="%", barmode="group", empty="No nodes"
    )
    if nodes:
        fig.update_layout(yaxis_range=[0, 100])
    return fig


def queue_figure(nodes: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Requests in flight per node, stacked by model, with each node's parallel slots."""
    if not nodes:
        return empty_figure("No nodes")
    names = [n["node_id"] for n in nodes]
    models = sorted({m for n in nodes for m in n.get("in_flight_by_model", {})})
    bars: list[Any] = [
        go.Bar(name=m, x=names, y=[n.get("in_flight_by_model", {}).get(m, 0) for n in nodes])
        for m in models
    ]
    bars.append(
        go.Scatter(
            name="parallel slots",
            x=names,
            y=[n.get("num_parallel", 1) for n in nodes],
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 24},
        )
    )
    fig = go.Figure(bars)
    fig.update_layout(barmode="stack")
    return styled(fig, "Queue depth (in flight)", y_title="requests")


def register(app: Dash, bridge: SyncBridge) -> None:
    @app.callback(
        *(Output(i, "children") for i in STAT_IDS),
        Output("overview-nodes", "children"),
        Output("overview-resources", "figure"),
        Output("overview-queues", "figure"),
        Output("overview-error", "children"),
        Input("overview-tick", "n_intervals"),
    )
    def _update(_n: int | None) -> tuple[Any, ...]:
        return update(bridge)


VIEW = View(slug="", title="Fleet Overview", layout=layout, register=register)
