"""4. Apps: per-tag request volume, latency, tokens and error rate, and daily trends.

Tags come from ``metadata.tags`` in the request body or the ``X-Herd-Tags`` header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Output, html

from dashboard.bridge import SyncBridge
from dashboard.views.base import View
from dashboard.views.common import (
    TRAFFIC_FORMATS,
    bar_chart,
    empty_figure,
    graph,
    page,
    range_selector,
    styled,
    table,
    traffic_columns,
    update_on_range,
)

UNTAGGED = "(untagged)"
COLUMNS = (
    ("tag", "App (tag)"),
    *traffic_columns(
        "requests",
        "errors",
        "error_rate",
        "avg_latency_s",
        "p95_latency_s",
        "prompt_tokens",
        "completion_tokens",
    ),
    ("models", "Models"),
)


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Apps",
        range_selector("apps-range"),
        html.Div(id="apps-table", className="scroll"),
        html.Div([graph("apps-volume-chart"), graph("apps-latency-chart")], className="grid2"),
        html.Div([graph("apps-tokens-chart"), graph("apps-errors-chart")], className="grid2"),
        graph("apps-daily-chart"),
        intro=(
            "Per-application analytics from request tags: send "
            '"metadata": {"tags": ["my-app"]} in the body or an X-Herd-Tags header.'
        ),
    )


def named(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the untagged bucket given a printable name."""
    return [{**r, "tag": r["tag"] if r["tag"] is not None else UNTAGGED} for r in rows]


def update(bridge: SyncBridge, hours: int) -> tuple[Any, ...]:
    hours = int(hours or 24)
    rows = named(bridge.call("apps", hours=hours))
    days = max(1, min(30, (hours + 23) // 24))
    daily_rows = bridge.call("apps_daily", days=days)
    return (
        table("apps-row", COLUMNS, rows, key="tag", formats=TRAFFIC_FORMATS),
        _bar(rows, "requests", "Requests per app", "requests"),
        latency_figure(rows),
        tokens_figure(rows),
        _bar(rows, "error_rate", "Error rate per app", "fraction"),
        daily_figure(daily_rows),
    )


def _bar(rows: Sequence[Mapping[str, Any]], field: str, title: str, unit: str) -> go.Figure:
    return bar_chart(rows, "tag", [(field, field)], title, y_title=unit)


def latency_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    bars = [("avg", "avg_latency_s"), ("p95", "p95_latency_s")]
    return bar_chart(rows, "tag", bars, "Latency per app", y_title="seconds", barmode="group")


def tokens_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    bars = [("prompt", "prompt_tokens"), ("completion", "completion_tokens")]
    return bar_chart(rows, "tag", bars, "Tokens per app", y_title="tokens", barmode="stack")


def daily_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Requests per day, one bar per tag."""
    if not rows:
        return empty_figure("No tagged requests yet")
    days = sorted({r["day"] for r in rows})
    tags = sorted({r["tag"] for r in rows})
    count = {(r["tag"], r["day"]): r["requests"] for r in rows}
    fig = go.Figure([go.Bar(name=t, x=days, y=[count.get((t, d), 0) for d in days]) for t in tags])
    fig.update_layout(barmode="group", xaxis={"type": "category"})
    return styled(fig, "Daily requests per app", y_title="requests")


def register(app: Dash, bridge: SyncBridge) -> None:
    charts = ("apps-volume-chart", "apps-latency-chart", "apps-tokens-chart", "apps-errors-chart")
    outputs = [
        Output("apps-table", "children"),
        *(Output(i, "figure") for i in (*charts, "apps-daily-chart")),
    ]
    update_on_range(app, bridge, "apps-range", outputs, update)


VIEW = View(slug="apps", title="Apps", layout=layout, register=register)
