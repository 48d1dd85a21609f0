"""2. Trends: requests per hour, average latency, prompt and completion token throughput,
over a selectable range from 24 hours to 7 days."""

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
    stat,
    stats_row,
    styled,
)

STAT_IDS = (
    "trends-requests",
    "trends-error-rate",
    "trends-latency",
    "trends-prompt-tokens",
    "trends-completion-tokens",
)


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Trends",
        range_selector("trends-range"),
        stats_row(
            stat("trends-requests", "Requests"),
            stat("trends-error-rate", "Error rate"),
            stat("trends-latency", "Avg latency"),
            stat("trends-prompt-tokens", "Prompt tokens"),
            stat("trends-completion-tokens", "Completion tokens"),
        ),
        graph("trends-requests-chart"),
        html.Div([graph("trends-latency-chart"), graph("trends-tokens-chart")], className="grid2"),
    )


def update(bridge: SyncBridge, hours: int) -> tuple[Any, ...]:
    hours = int(hours or 24)
    totals = bridge.call("overview", hours=hours)
    rows = bridge.call("trends", hours=hours)
    return (
        fmt_int(totals["requests"]),
        fmt_pct(totals["error_rate"]),
        fmt_seconds(totals["avg_latency_s"]),
        fmt_int(totals["prompt_tokens"]),
        fmt_int(totals["completion_tokens"]),
        requests_figure(rows),
        latency_figure(rows),
        tokens_figure(rows),
    )


def _labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [r["label"] for r in rows]


def requests_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Requests per hour, errors stacked on successes."""
    if not rows:
        return empty_figure()
    ok = [r["requests"] - r["errors"] for r in rows]
    fig = go.Figure(
        [
            go.Bar(name="ok", x=_labels(rows), y=ok),
            go.Bar(name="errors", x=_labels(rows), y=[r["errors"] for r in rows]),
        ]
    )
    fig.update_layout(barmode="stack")
    return styled(fig, "Requests per hour", y_title="requests")


def latency_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Average latency and time to first token per hour (gaps where no request ran)."""
    if not rows:
        return empty_figure()
    fig = go.Figure(
        [
            go.Scatter(
                name="avg latency",
                x=_labels(rows),
                y=[r["avg_latency_s"] for r in rows],
                mode="lines+markers",
            ),
            go.Scatter(
                name="avg time to first token",
                x=_labels(rows),
                y=[r["avg_ttft_s"] for r in rows],
                mode="lines+markers",
            ),
        ]
    )
    return styled(fig, "Average latency", y_title="seconds")


def tokens_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Prompt and completion tokens per hour."""
    if not rows:
        return empty_figure()
    fig = go.Figure(
        [
            go.Bar(name="prompt", x=_labels(rows), y=[r["prompt_tokens"] for r in rows]),
            go.Bar(name="completion", x=_labels(rows), y=[r["completion_tokens"] for r in rows]),
        ]
    )
    fig.update_layout(barmode="stack")
    return styled(fig, "Token throughput per hour", y_title="tokens")


def register(app: Dash, bridge: SyncBridge) -> None:
    @app.callback(
        *(Output(i, "children") for i in STAT_IDS),
        Output("trends-requests-chart", "figure"),
        Output("trends-latency-chart", "figure"),
        Output("trends-tokens-chart", "figure"),
        Input("trends-range", "value"),
    )
    def _update(hours: int) -> tuple[Any, ...]:
        return update(bridge, hours)


VIEW = View(slug="trends", title="Trends", layout=layout, register=register)
