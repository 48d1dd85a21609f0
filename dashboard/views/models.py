"""3. Model Insights: per-model latency, tokens/s and usage, the token-distribution
doughnut, and a daily breakdown of the model whose row was clicked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html

from dashboard.bridge import SyncBridge
from dashboard.views.base import View
from dashboard.views.common import (
    TRAFFIC_FORMATS,
    bar_chart,
    empty_figure,
    fmt_rate,
    graph,
    page,
    range_selector,
    styled,
    table,
    traffic_columns,
    update_on_range,
)

ROW = "models-row"
COLUMNS = (
    ("model", "Model"),
    *traffic_columns(
        "requests",
        "error_rate",
        "avg_latency_s",
        "p95_latency_s",
        "avg_ttft_s",
        "tokens_per_s",
        "prompt_tokens",
        "completion_tokens",
    ),
    ("nodes", "Nodes"),
)
DAILY_COLUMNS = (
    ("day", "Day"),
    *traffic_columns(
        "requests",
        "errors",
        "avg_latency_s",
        "p95_latency_s",
        "tokens_per_s",
        "prompt_tokens",
        "completion_tokens",
    ),
)


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Model Insights",
        range_selector("models-range"),
        dcc.Store(id="models-selected", data=query.get("model")),
        html.Div([graph("models-latency-chart"), graph("models-speed-chart")], className="grid2"),
        html.Div(
            [graph("models-tokens-doughnut"), html.Div(id="models-table", className="scroll")],
            className="grid2",
        ),
        html.H3(id="models-daily-title"),
        graph("models-daily-chart"),
        html.Div(id="models-daily-table", className="scroll"),
        intro="Click a model's row for its daily breakdown.",
    )


def update(bridge: SyncBridge, hours: int) -> tuple[Any, ...]:
    rows = bridge.call("models", hours=int(hours or 24))
    return latency_figure(rows), speed_figure(rows), tokens_doughnut(rows), models_table(rows)


def models_table(rows: Sequence[Mapping[str, Any]]) -> html.Table:
    return table(
        ROW,
        COLUMNS,
        rows,
        key="model",
        formats=TRAFFIC_FORMATS,
        row_props=lambda r: {"id": {"type": ROW, "model": r["model"]}, "className": "clickable"},
    )


def chosen_model(
    triggered: Mapping[str, Any] | None,
    clicked: bool,
    ids: Sequence[Mapping[str, Any]],
    current: str | None,
) -> str | None:
    """The model to break down: the clicked row, else the current one, else the busiest."""
    if triggered is not None and clicked:
        return str(triggered["model"])
    models = [i["model"] for i in ids]
    if current in models:
        return current
    return models[0] if models else current


def daily(bridge: SyncBridge, model: str | None) -> tuple[Any, ...]:
    if not model:
        return "Daily breakdown", empty_figure("Click a model"), None
    rows = bridge.call("model_daily", model, days=7)
    body = table("models-daily", DAILY_COLUMNS, rows, key="day", formats=TRAFFIC_FORMATS)
    return f"Daily breakdown: {model}", daily_figure(model, rows), body


def latency_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    bars = [
        ("avg", "avg_latency_s"),
        ("p95", "p95_latency_s"),
        ("time to first token", "avg_ttft_s"),
    ]
    return bar_chart(rows, "model", bars, "Latency per model", y_title="seconds", barmode="group")


def speed_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    if not rows:
        return empty_figure()
    fig = go.Figure(
        [
            go.Bar(
                name="tokens/s",
                x=[r["model"] for r in rows],
                y=[r["tokens_per_s"] for r in rows],
                text=[fmt_rate(r["tokens_per_s"], "") for r in rows],
            )
        ]
    )
    return styled(fig, "Generation speed per model", y_title="tokens/s")


def tokens_doughnut(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Share of all tokens (prompt + completion) per model."""
    used = [r for r in rows if r.get("total_tokens")]
    if not used:
        return empty_figure("No tokens yet")
    fig = go.Figure(
        go.Pie(
            labels=[r["model"] for r in used],
            values=[r["total_tokens"] for r in used],
            hole=0.55,
            sort=False,
        )
    )
    return styled(fig, "Token distribution")


def daily_figure(model: str, rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    if not rows:
        return empty_figure()
    days = [r["day"] for r in rows]
    fig = go.Figure(
        [
            go.Bar(name="requests", x=days, y=[r["requests"] for r in rows]),
            go.Scatter(
                name="avg latency (s)",
                x=days,
                y=[r["avg_latency_s"] for r in rows],
                yaxis="y2",
                mode="lines+markers",
            ),
        ]
    )
    fig.update_layout(
        yaxis2={"overlaying": "y", "side": "right", "title": "seconds", "rangemode": "tozero"}
    )
    return styled(fig, f"{model} per day", y_title="requests")


def register(app: Dash, bridge: SyncBridge) -> None:
    charts = ("models-latency-chart", "models-speed-chart", "models-tokens-doughnut")
    outputs = [*(Output(i, "figure") for i in charts), Output("models-table", "children")]
    update_on_range(app, bridge, "models-range", outputs, update)

    @app.callback(
        Output("models-selected", "data"),
        Input({"type": ROW, "model": ALL}, "n_clicks"),
        State({"type": ROW, "model": ALL}, "id"),
        State("models-selected", "data"),
    )
    def _choose(clicks: list[int | None], ids: list[dict[str, Any]], current: str | None) -> Any:
        clicked = bool(ctx.triggered and ctx.triggered[0].get("value"))
        trig = ctx.triggered_id if isinstance(ctx.triggered_id, Mapping) else None
        return chosen_model(trig, clicked, ids, current)

    @app.callback(
        Output("models-daily-title", "children"),
        Output("models-daily-chart", "figure"),
        Output("models-daily-table", "children"),
        Input("models-selected", "data"),
    )
    def _daily(model: str | None) -> tuple[Any, ...]:
        return daily(bridge, model)


VIEW = View(slug="models", title="Model Insights", layout=layout, register=register)
