"""7. Recommendations: the model mix for each node from its hardware and the fleet's
usage; tick models and pull them onto their node from the page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html

from dashboard.bridge import SyncBridge
from dashboard.views.base import View
from dashboard.views.common import badge, fmt_gb, fmt_int, fmt_time, page, table, testid
from dashboard.views.pulls import PullJobs, progress_text

PICK = "rec-pick"
COLUMNS = (
    ("model", "Model"),
    ("size_gb", "Size"),
    ("role", "Role"),
    ("reason", "Why"),
    ("state", "On node"),
    ("requests", "Requests"),
)
FORMATS = {"size_gb": fmt_gb, "requests": fmt_int}


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Recommendations",
        dcc.Interval(id="rec-tick", interval=1000),
        html.Div(
            [
                html.Button("Pull selected", id="rec-pull", className="button primary"),
                html.Button("Recompute", id="rec-refresh", className="button"),
                html.Span(id="rec-generated", className="muted"),
            ],
            className="toolbar",
        ),
        html.Div(id="rec-pull-message", role="status"),
        html.Div(id="rec-pull-status"),
        html.Div(id="rec-nodes", className="cards wide"),
        intro="Models suggested per node from its memory budget and what the fleet asks for.",
    )


def update(bridge: SyncBridge, refresh: bool) -> tuple[Any, ...]:
    report = bridge.call("recommendations", refresh=refresh)
    cached = " (cached)" if report.get("cached") else ""
    generated = f" generated {fmt_time(report.get('generated_at'))} UTC{cached}"
    cards: list[Any] = [node_card(n) for n in report.get("nodes", [])]
    return cards or [html.P("No nodes online.")], generated


def node_card(node: Mapping[str, Any]) -> html.Div:
    nid = node["node_id"]
    rows = [
        {**r, "state": "loaded" if r["loaded"] else "installed" if r["installed"] else "—"}
        for r in node.get("recommended", [])
    ]
    pickable = [r["model"] for r in rows if not r["installed"]]
    return html.Div(
        [
            html.Div(
                [html.Strong(nid), badge(node.get("status", "unknown"), "info")],
                className="card-head",
            ),
            html.Div(
                f"{node.get('hostname', '')} · {fmt_gb(node.get('memory_gb'))} RAM · "
                f"{node.get('cpu_count', '?')} CPUs · model budget {fmt_gb(node.get('budget_gb'))}"
                f" ({fmt_gb(node.get('used_gb'))} used)",
                className="muted",
                **testid("rec-node", nid, "hardware"),
            ),
            table(f"rec-{nid}", COLUMNS, rows, key="model", formats=FORMATS),
            dcc.Checklist(
                id={"type": PICK, "node": nid},
                options=[{"label": f" pull {m}", "value": m} for m in pickable],
                value=[],
                inline=True,
                className="picks",
            )
            if pickable
            else html.P("Everything recommended is installed.", className="muted"),
        ],
        className="card",
        **testid("rec-node", nid),
    )


def selected(
    values: Sequence[Sequence[str] | None], ids: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """(node, model) pairs ticked across every node's checklist."""
    return [(i["node"], m) for i, v in zip(ids, values, strict=True) for m in (v or [])]


def start_pulls(jobs: PullJobs, picks: Sequence[tuple[str, str]]) -> str:
    if not picks:
        return "Tick the models to pull first."
    started = [f"{m} on {n}" for n, m in picks if jobs.start(n, m)]
    return f"Pulling {', '.join(started)}" if started else "Those pulls are already running."


def pull_status(jobs: PullJobs) -> Any:
    entries = jobs.snapshot()
    if not entries:
        return None
    rows = [{**e, "id": f"{e['node']}/{e['model']}", "progress": progress_text(e)} for e in entries]
    columns = (("node", "Node"), ("model", "Model"), ("progress", "Progress"))
    return table("rec-pull", columns, rows, key="id")


def register(app: Dash, bridge: SyncBridge) -> None:
    jobs = PullJobs(bridge)

    @app.callback(
        Output("rec-nodes", "children"),
        Output("rec-generated", "children"),
        Input("rec-refresh", "n_clicks"),
    )
    def _update(_clicks: int | None) -> tuple[Any, ...]:
        return update(bridge, refresh=ctx.triggered_id == "rec-refresh")

    @app.callback(
        Output("rec-pull-message", "children"),
        Input("rec-pull", "n_clicks"),
        State({"type": PICK, "node": ALL}, "value"),
        State({"type": PICK, "node": ALL}, "id"),
        prevent_initial_call=True,
    )
    def _pull(_clicks: int | None, values: list[list[str]], ids: list[dict[str, Any]]) -> str:
        return start_pulls(jobs, selected(values, ids))

    @app.callback(Output("rec-pull-status", "children"), Input("rec-tick", "n_intervals"))
    def _progress(_n: int | None) -> Any:
        return pull_status(jobs)


VIEW = View(
    slug="recommendations",
    title="Recommendations",
    layout=layout,
    register=register,
    mutations=("rec-pull-message.children",),
)
