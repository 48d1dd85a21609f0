"""9. Trace: for any request, why its node won — every candidate's score broken down by
signal, and the nodes eliminated before scoring with the reason.

Open ``traces?id=<request id>`` (the ``X-Herd-Request-Id`` header of a response) or click
a request in the recent list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html

from dashboard.bridge import SyncBridge
from dashboard.views.base import View
from dashboard.views.common import (
    badge,
    empty_figure,
    fmt_int,
    fmt_score,
    fmt_seconds,
    fmt_time,
    graph,
    page,
    styled,
    table,
    testid,
)

STATUS_KIND = {"ok": "ok", "error": "critical", "rejected": "warning", "disconnected": "info"}
STATUS_OPTIONS = [
    {"label": s, "value": s} for s in ("all", "ok", "error", "rejected", "disconnected")
]
RECENT_COLUMNS = (
    ("link", "Request"),
    ("time", "Time (UTC)"),
    ("served_model", "Model"),
    ("node_id", "Node"),
    ("status", "Status"),
    ("latency_s", "Latency"),
    ("tags", "Tags"),
)


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Request trace",
        html.Div(
            [
                dcc.Input(
                    id="trace-id",
                    value=query.get("id", ""),
                    placeholder="request id (X-Herd-Request-Id)",
                    debounce=True,
                    className="wide-input",
                ),
                dcc.Dropdown(
                    id="trace-status", options=STATUS_OPTIONS, value="all", clearable=False
                ),
            ],
            className="toolbar",
        ),
        html.Div(id="trace-summary"),
        html.Div([graph("trace-scores-chart"), html.Div(id="trace-eliminated")], className="grid2"),
        html.Div(id="trace-candidates", className="scroll"),
        html.H3("Recent requests"),
        html.Div(id="trace-recent", className="scroll"),
        intro="Why the router sent a request where it did: every candidate's score by signal.",
    )


def update(bridge: SyncBridge, request_id: str | None, status: str | None) -> tuple[Any, ...]:
    recent = bridge.call("traces", status=None if status in (None, "all") else status, limit=50)[
        "items"
    ]
    rid = (request_id or "").strip() or (recent[0]["request_id"] if recent else "")
    record = bridge.call("trace", rid) if rid else None
    if record is None:
        missing = html.P(f"No trace for request {rid!r}." if rid else "No requests yet.")
        return missing, empty_figure("No trace"), None, None, recent_table(recent)
    return (
        summary(record),
        scores_figure(record.get("candidates", [])),
        eliminated_list(record.get("eliminated", {})),
        candidates_table(record.get("candidates", [])),
        recent_table(recent),
    )


def summary(record: Mapping[str, Any]) -> html.Dl:
    won = record.get("node_id")
    served = record.get("served_model") or record.get("requested_model")
    tokens_in = fmt_int(record.get("prompt_tokens"))
    tokens_out = fmt_int(record.get("completion_tokens"))
    fields: list[tuple[str, Any, str]] = [
        ("Request", record["request_id"], "id"),
        ("Time (UTC)", fmt_time(record.get("time")), "time"),
        ("Status", badge(record["status"], STATUS_KIND.get(record["status"], "info")), "status"),
        ("Winner", won or "no node", "winner"),
        ("Score", fmt_score(record.get("score")), "score"),
        ("Model", f"{record.get('requested_model')} → {served}", "model"),
        ("Latency", fmt_seconds(record.get("latency_s")), "latency"),
        ("First token", fmt_seconds(record.get("ttft_s")), "ttft"),
        (
            "Tokens",
            f"{tokens_in} in / {tokens_out} out",
            "tokens",
        ),
        ("Retries", fmt_int(record.get("retries")), "retries"),
        ("Fallback", "yes" if record.get("fallback_used") else "no", "fallback"),
        ("Tags", ", ".join(record.get("tags") or []) or "—", "tags"),
        (
            "Client / dialect",
            f"{record.get('client') or '—'} / {record.get('dialect') or '—'}",
            "client",
        ),
    ]
    if record.get("error"):
        fields.append(("Error", record["error"], "error"))
    return html.Dl(
        [
            part
            for label, value, key in fields
            for part in (html.Dt(label), html.Dd(value, **testid("trace", key)))
        ],
        className="summary",
    )


def signals(candidates: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every signal named in any candidate's breakdown, in first-seen order."""
    seen: list[str] = []
    for cand in candidates:
        seen += [s for s in cand.get("breakdown", {}) if s not in seen]
    return seen


def candidates_table(candidates: Sequence[Mapping[str, Any]]) -> html.Table:
    names = signals(candidates)
    rows = [
        {
            **{s: c.get("breakdown", {}).get(s) for s in names},
            "node_id": c["node_id"],
            "total": c["total"],
            "winner": "winner" if c.get("winner") else "",
        }
        for c in candidates
    ]
    columns = [("node_id", "Node"), ("total", "Total"), ("winner", ""), *((s, s) for s in names)]
    formats = {s: fmt_score for s in [*names, "total"]}
    return table("trace-candidate", columns, rows, key="node_id", formats=formats)


def scores_figure(candidates: Sequence[Mapping[str, Any]]) -> go.Figure:
    """One horizontal bar per candidate, split into its signals (negative ones go left)."""
    if not candidates:
        return empty_figure("No candidate was scored")
    nodes = [("★ " if c.get("winner") else "") + c["node_id"] for c in candidates]
    fig = go.Figure(
        [
            go.Bar(
                name=s,
                y=nodes,
                x=[c.get("breakdown", {}).get(s, 0.0) for c in candidates],
                orientation="h",
            )
            for s in signals(candidates)
        ]
    )
    fig.update_layout(barmode="relative", yaxis={"autorange": "reversed"})
    return styled(fig, "Score by signal", y_title="", height=120 + 40 * len(candidates))


def eliminated_list(eliminated: Mapping[str, str]) -> html.Div:
    if not eliminated:
        return html.Div([html.H4("Eliminated"), html.P("No node was eliminated.")])
    items = [
        html.Li([html.Strong(node), f": {reason}"], **testid("trace-eliminated", node))
        for node, reason in sorted(eliminated.items())
    ]
    return html.Div([html.H4("Eliminated"), html.Ul(items)])


def recent_table(items: Sequence[Mapping[str, Any]]) -> html.Table:
    rows = [
        {**t, "link": dcc.Link(t["request_id"][:12], href=f"?id={t['request_id']}")} for t in items
    ]
    formats = {
        "link": lambda v: v,
        "time": fmt_time,
        "latency_s": fmt_seconds,
        "tags": lambda v: ", ".join(v or []) or "—",
    }
    return table("trace-recent", RECENT_COLUMNS, rows, key="request_id", formats=formats)


def register(app: Dash, bridge: SyncBridge) -> None:
    @app.callback(
        Output("trace-summary", "children"),
        Output("trace-scores-chart", "figure"),
        Output("trace-eliminated", "children"),
        Output("trace-candidates", "children"),
        Output("trace-recent", "children"),
        Input("trace-id", "value"),
        Input("trace-status", "value"),
    )
    def _update(request_id: str | None, status: str | None) -> tuple[Any, ...]:
        return update(bridge, request_id, status)


VIEW = View(slug="traces", title="Trace", layout=layout, register=register)
