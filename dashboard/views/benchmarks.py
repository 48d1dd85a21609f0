"""5. Benchmarks: capacity over time, per-run throughput and latency percentiles, and the
per-model and per-node breakdown of a chosen run (runs are saved with
``POST /dashboard/api/benchmarks`` or by the scripts in ``bench/``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html

from dashboard.bridge import SyncBridge
from dashboard.views.base import View
from dashboard.views.common import (
    empty_figure,
    fmt_int,
    fmt_rate,
    fmt_seconds,
    fmt_time,
    graph,
    page,
    styled,
    table,
)

RUN_COLUMNS = (
    ("id", "Run"),
    ("name", "Name"),
    ("started_at", "Started (UTC)"),
    ("duration_s", "Duration"),
    ("requests", "Requests"),
    ("requests_per_s", "Requests/s"),
    ("tokens_per_s", "Tokens/s"),
    ("latency_p50_s", "p50"),
    ("latency_p95_s", "p95"),
    ("latency_p99_s", "p99"),
    ("errors", "Errors"),
)
RUN_FORMATS = {
    "started_at": fmt_time,
    "duration_s": fmt_seconds,
    "requests": fmt_int,
    "requests_per_s": lambda v: fmt_rate(v, "req/s"),
    "tokens_per_s": fmt_rate,
    "latency_p50_s": fmt_seconds,
    "latency_p95_s": fmt_seconds,
    "latency_p99_s": fmt_seconds,
    "errors": fmt_int,
}
PERCENTILES = (("latency_p50_s", "p50"), ("latency_p95_s", "p95"), ("latency_p99_s", "p99"))
SPEED_KEYS = ("tokens_per_s", "requests_per_s", "requests")


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Benchmarks",
        dcc.Interval(id="benchmarks-tick", interval=30_000),
        html.Div(id="benchmarks-table", className="scroll"),
        graph("benchmarks-capacity-chart"),
        html.Div(
            [graph("benchmarks-throughput-chart"), graph("benchmarks-latency-chart")],
            className="grid2",
        ),
        html.H3("Run breakdown"),
        dcc.Dropdown(id="benchmarks-run", clearable=False, placeholder="Choose a run"),
        html.Div(
            [graph("benchmarks-model-chart"), graph("benchmarks-node-chart")], className="grid2"
        ),
        html.Div(
            [html.Div(id="benchmarks-model-table"), html.Div(id="benchmarks-node-table")],
            className="grid2",
        ),
    )


def flatten(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Runs with their summary numbers lifted to the top level, for tables and charts."""
    return [
        {**run.get("summary", {}), **{k: v for k, v in run.items() if k != "summary"}}
        for run in runs
    ]


def run_label(run: Mapping[str, Any]) -> str:
    return f"#{run['id']} {run.get('name') or 'run'} ({fmt_time(run.get('started_at'))})"


def update(bridge: SyncBridge, current: int | None) -> tuple[Any, ...]:
    runs = flatten(bridge.call("benchmarks", limit=50))
    options = [{"label": run_label(r), "value": r["id"]} for r in runs]
    ids = [r["id"] for r in runs]
    chosen = current if current in ids else (ids[0] if ids else None)
    return (
        table("benchmarks-row", RUN_COLUMNS, runs, key="id", formats=RUN_FORMATS),
        capacity_figure(runs),
        throughput_figure(runs),
        percentiles_figure(runs),
        options,
        chosen,
    )


def breakdown(bridge: SyncBridge, run_id: int | None) -> tuple[Any, ...]:
    run = bridge.call("benchmark", run_id) if run_id is not None else None
    results = (run or {}).get("results", {})
    per_model = results.get("per_model") or {}
    per_node = results.get("per_node") or {}
    return (
        breakdown_figure(per_model, "Per model"),
        breakdown_table("benchmarks-model", "Model", per_model),
        breakdown_figure(per_node, "Per node"),
        breakdown_table("benchmarks-node", "Node", per_node),
    )


def capacity_figure(runs: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Fleet capacity over time: each run's tokens/s and requests/s, oldest first."""
    if not runs:
        return empty_figure("No benchmark runs yet")
    ordered = sorted(runs, key=lambda r: r["started_at"])
    when = [fmt_time(r["started_at"]) for r in ordered]
    fig = go.Figure(
        [
            go.Scatter(
                name="tokens/s",
                x=when,
                y=[r.get("tokens_per_s") for r in ordered],
                mode="lines+markers",
            ),
            go.Scatter(
                name="requests/s",
                x=when,
                y=[r.get("requests_per_s") for r in ordered],
                mode="lines+markers",
                line={"dash": "dot"},
                yaxis="y2",
            ),
        ]
    )
    fig.update_layout(
        yaxis={"rangemode": "tozero"},
        yaxis2={"overlaying": "y", "side": "right", "title": "requests/s", "rangemode": "tozero"},
    )
    return styled(fig, "Capacity over time", y_title="tokens/s")


def throughput_figure(runs: Sequence[Mapping[str, Any]]) -> go.Figure:
    if not runs:
        return empty_figure()
    fig = go.Figure(
        go.Bar(
            name="tokens/s",
            x=[f"#{r['id']}" for r in runs],
            y=[r.get("tokens_per_s") for r in runs],
        )
    )
    return styled(fig, "Throughput per run", y_title="tokens/s")


def percentiles_figure(runs: Sequence[Mapping[str, Any]]) -> go.Figure:
    if not runs:
        return empty_figure()
    names = [f"#{r['id']}" for r in runs]
    fig = go.Figure(
        [go.Bar(name=label, x=names, y=[r.get(key) for r in runs]) for key, label in PERCENTILES]
    )
    fig.update_layout(barmode="group")
    return styled(fig, "Latency percentiles per run", y_title="seconds")


def speed_key(entries: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The first of tokens/s, requests/s, requests that the breakdown entries carry."""
    for key in SPEED_KEYS:
        if any(isinstance(e.get(key), int | float) for e in entries.values()):
            return key
    return None


def breakdown_figure(entries: Mapping[str, Mapping[str, Any]], title: str) -> go.Figure:
    key = speed_key(entries)
    if not entries or key is None:
        return empty_figure(f"{title}: no data in this run")
    names = list(entries)
    fig = go.Figure(go.Bar(name=key, x=names, y=[entries[n].get(key) for n in names]))
    return styled(fig, f"{title}: {key.replace('_', ' ')}", y_title=key)


def breakdown_table(name: str, title: str, entries: Mapping[str, Mapping[str, Any]]) -> html.Table:
    keys: list[str] = []
    for entry in entries.values():
        keys += [k for k, v in entry.items() if k not in keys and not isinstance(v, dict | list)]
    rows = [{"name": n, **e} for n, e in entries.items()]
    columns = [("name", title), *((k, k.replace("_", " ")) for k in keys)]
    return table(name, columns, rows, key="name")


def register(app: Dash, bridge: SyncBridge) -> None:
    @app.callback(
        Output("benchmarks-table", "children"),
        Output("benchmarks-capacity-chart", "figure"),
        Output("benchmarks-throughput-chart", "figure"),
        Output("benchmarks-latency-chart", "figure"),
        Output("benchmarks-run", "options"),
        Output("benchmarks-run", "value"),
        Input("benchmarks-tick", "n_intervals"),
        State("benchmarks-run", "value"),
    )
    def _update(_n: int | None, current: int | None) -> tuple[Any, ...]:
        return update(bridge, current)

    @app.callback(
        Output("benchmarks-model-chart", "figure"),
        Output("benchmarks-model-table", "children"),
        Output("benchmarks-node-chart", "figure"),
        Output("benchmarks-node-table", "children"),
        Input("benchmarks-run", "value"),
    )
    def _breakdown(run_id: int | None) -> tuple[Any, ...]:
        return breakdown(bridge, run_id)


VIEW = View(slug="benchmarks", title="Benchmarks", layout=layout, register=register)
