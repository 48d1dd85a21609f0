"""4. Apps: per-tag request volume, latency, tokens and error rate, and daily trends.

Tags come from ``metadata.tags`` in the request body or the ``X-Herd-Tags`` header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, html

from dashboard.bridge import SyncBridge
from dashboard.views import View
from dashboard.views.common import (
    empty_figure,
    fmt_int,
    fmt_pct,
    fmt_seconds,
    graph,
    page,
    range_selector,
    styled,
    table,
)

UNTAGGED = "(untagged)"
COLUMNS = (
    ("tag", "App (tag)"),
    ("requests", "Requests"),
    ("errors", "Errors"),
    ("error_rate", "Error rate"),
    ("avg_latency_s", "Avg latency"),
    ("p95_latency_s", "p95 latency"),
    ("prompt_tokens", "Prompt tokens"),
    ("completion_tokens", "Completion tokens"),
    ("models", "Models"),
)
FORMATS = {
    "requests": fmt_int,
    "errors": fmt_int,
    "error_rate": fmt_pct,
    "avg_latency_s": fmt_seconds,
    "p95_latency_s": fmt_seconds,
    "prompt_tokens": fmt_int,
    "completion_tokens": fmt_int,
}


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
        table("apps-row", COLUMNS, rows, key="tag", formats=FORMATS),
        _bar(rows, "requests", "Requests per app", "requests"),
        latency_figure(rows),
        tokens_figure(rows),
        _bar(rows, "error_rate", "Error rate per app", "fraction"),
        daily_figure(daily_rows),
    )


def _bar(rows: Sequence[Mapping[str, Any]], field: str, title: str, unit: str) -> go.Figure:
    if not rows:
        return empty_figure()
    fig = go.Figure(go.Bar(x=[r["tag"] for r in rows], y=[r[field] for r in rows], name=field))
    return styled(fig, title, y_title=unit)


def latency_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    if not rows:
        return empty_figure()
    tags = [r["tag"] for r in rows]
    fig = go.Figure(
        [
            go.Bar(name="avg", x=tags, y=[r["avg_latency_s"] for r in rows]),
            go.Bar(name="p95", x=tags, y=[r["p95_latency_s"] for r in rows]),
        ]
    )
    fig.update_layout(barmode="group")
    return styled(fig, "Latency per app", y_title="seconds")


def tokens_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    if not rows:
        return empty_figure()
    tags = [r["tag"] for r in rows]
    fig = go.Figure(
        [
            go.Bar(name="prompt", x=tags, y=[r["prompt_tokens"] for r in rows]),
            go.Bar(name="completion", x=tags, y=[r["completion_tokens"] for r in rows]),
        ]
    )
    fig.update_layout(barmode="stack")
    return styled(fig, "Tokens per app", y_title="tokens")


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
    @app.callback(
        Output("apps-table", "children"),
        Output("apps-volume-chart", "figure"),
        Output("apps-latency-chart", "figure"),
        Output("apps-tokens-chart", "figure"),
        Output("apps-errors-chart", "figure"),
        Output("apps-daily-chart", "figure"),
        Input("apps-range", "value"),
    )
    def _update(hours: int) -> tuple[Any, ...]:
        return update(bridge, hours)


VIEW = View(slug="apps", title="Apps", layout=layout, register=register)
