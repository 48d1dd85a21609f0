"""The Health view's capacity panel: per node that learns its owner's week
(``FLEET_NODE_ENABLE_CAPACITY_LEARNING``), a heat map of the 168 slots (availability,
green = spare), the slot of "now" marked, and the owner's signals as the node reads them.

Refreshed with the Health view's tick, from ``/fleet/status`` (``service.live``), whose
nodes carry ``capacity`` (``herd.capacity.report.capacity_status``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html

from dashboard.bridge import SyncBridge
from dashboard.views.common import badge, error_note, fmt_gb, styled, testid

HOURS = [f"{h:02d}" for h in range(24)]


def week_figure(node_id: str, cap: Mapping[str, Any]) -> go.Figure:
    """The 7 x 24 heat map of the node's learned availability (blank: not learned yet)."""
    days = list(cap.get("days") or ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    grid = cap.get("week") or [[None] * 24 for _ in days]
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            x=HOURS,
            y=days,
            zmin=0.0,
            zmax=1.0,
            colorscale="RdYlGn",
            colorbar={"title": "spare"},
            hovertemplate="%{y} %{x}h: %{z:.0%} available<extra></extra>",
        )
    )
    slot = int(cap.get("slot") or 0)
    fig.add_trace(
        go.Scatter(
            x=[HOURS[slot % 24]],
            y=[days[slot // 24 % len(days)]],
            mode="markers",
            marker={"symbol": "square-open", "size": 18, "color": "#222", "line": {"width": 2}},
            name="now",
            hoverinfo="skip",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return styled(fig, f"{node_id}: the owner's week", height=300)


def _signals(cap: Mapping[str, Any]) -> str:
    parts = [f"workload {cap.get('workload') or '?'}", f"owner CPU {cap.get('owner_cpu', 0):.0%}"]
    if cap.get("on_battery") is not None:
        level = cap.get("battery_percent")
        power = "on battery" if cap["on_battery"] else "on AC"
        parts.append(power if level is None else f"{power} ({level:.0f}%)")
    if cap.get("throttled") is not None:
        parts.append("throttled" if cap["throttled"] else "not throttled")
    if cap.get("user_idle_s") is not None:
        parts.append(f"user idle {cap['user_idle_s']:.0f} s")
    return ", ".join(parts)


def _state(cap: Mapping[str, Any]) -> html.Span:
    if cap.get("paused"):
        return badge(f"paused: {cap.get('pause_reason') or 'capacity learning'}", "critical")
    now, nxt = cap.get("availability"), cap.get("availability_next")
    text = f"available {now or 0.0:.0%}, next hour " + ("?" if nxt is None else f"{nxt:.0%}")
    return badge(text, "ok" if (now or 0.0) >= 0.5 else "warning")


def capacity_cards(nodes: Sequence[Mapping[str, Any]]) -> list[Any]:
    """One card per learning node; a note when none learns."""
    cards: list[Any] = []
    for node in nodes:
        cap = node.get("capacity")
        if not cap:
            continue
        node_id = str(node.get("node_id"))
        cards.append(
            html.Div(
                [
                    html.Div([html.Strong(node_id), html.Span(_state(cap))], className="card-head"),
                    html.P(
                        f"{_signals(cap)}; memory ceiling {fmt_gb(cap.get('memory_ceiling'))}",
                        **testid("capacity", node_id, "signals"),
                    ),
                    html.Div(
                        dcc.Graph(
                            figure=week_figure(node_id, cap), config={"displayModeBar": False}
                        ),
                        **testid("capacity", node_id, "week"),
                    ),
                ],
                className="card",
                **testid("capacity", node_id),
            )
        )
    if not cards:
        return [html.P("No node learns its owner's week (FLEET_NODE_ENABLE_CAPACITY_LEARNING).")]
    return [html.H3("Owner capacity"), *cards]


def capacity_panel() -> html.Div:
    return html.Div(id="health-capacity", className="cards")


def register_capacity(app: Dash, bridge: SyncBridge) -> None:
    @app.callback(Output("health-capacity", "children"), Input("health-tick", "n_intervals"))
    def _update(_n: int | None) -> list[Any]:
        try:
            status = bridge.call("live")
        except Exception as exc:
            return [error_note(f"Fleet status failed: {exc}")]
        return capacity_cards(status.get("nodes", []))
