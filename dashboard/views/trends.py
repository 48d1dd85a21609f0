"""2. Trends: requests per hour, average latency, prompt and completion token throughput,
over a selectable range from 24 hours to 7 days."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Output, html

from dashboard.bridge import SyncBridge
from dashboard.views.base import View
from dashboard.views.common import (
    Column,
    bar_chart,
    empty_figure,
    fmt_int,
    fmt_pct,
    fmt_seconds,
    graph,
    page,
    range_selector,
    stats_row,
    styled,
    update_on_range,
)

STATS = (
    ("trends-requests", "Requests"),
    ("trends-error-rate", "Error rate"),
    ("trends-latency", "Avg latency"),
    ("trends-prompt-tokens", "Prompt tokens"),
    ("trends-completion-tokens", "Completion tokens"),
)
STAT_IDS = tuple(id_ for id_, _ in STATS)


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Trends",
        range_selector("trends-range"),
        stats_row(STATS),
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
    bars: list[tuple[str, Column]] = [
        ("ok", lambda r: r["requests"] - r["errors"]),
        ("errors", "errors"),
    ]
    return bar_chart(rows, "label", bars, "Requests per hour", y_title="requests", barmode="stack")


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
    bars = [("prompt", "prompt_tokens"), ("completion", "completion_tokens")]
    title = "Token throughput per hour"
    return bar_chart(rows, "label", bars, title, y_title="tokens", barmode="stack")


def register(app: Dash, bridge: SyncBridge) -> None:
    charts = ("trends-requests-chart", "trends-latency-chart", "trends-tokens-chart")
    outputs = [*(Output(i, "children") for i in STAT_IDS), *(Output(i, "figure") for i in charts)]
    update_on_range(app, bridge, "trends-range", outputs, update)


VIEW = View(slug="trends", title="Trends", layout=layout, register=register)
