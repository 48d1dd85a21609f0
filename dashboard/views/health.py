"""6. Health: every automated check with what it found, why it matters and what to do.

Re-checked every 15 seconds and on the "Check now" button.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import Dash, Input, Output, dcc, html

from dashboard.bridge import SyncBridge
from dashboard.views.base import View
from dashboard.views.capacity import capacity_panel, register_capacity
from dashboard.views.common import badge, error_note, fmt_time, page, testid

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2, "ok": 3}
OVERALL_KIND = {"healthy": "ok", "warning": "warning", "critical": "critical"}


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Health",
        dcc.Interval(id="health-tick", interval=15_000),
        html.Div(
            [
                html.Span("Fleet health: "),
                html.Span(id="health-status", **testid("health-status")),
                html.Span(id="health-checked-at", className="muted"),
                html.Button("Check now", id="health-refresh", className="button"),
            ],
            className="toolbar",
        ),
        html.Div(id="health-checks", className="checks"),
        capacity_panel(),  # the owner's week per node that learns it
    )


def update(bridge: SyncBridge) -> tuple[Any, ...]:
    try:
        report = bridge.call("health")
    except Exception as exc:
        return badge("unknown", "info"), "", error_note(f"Health check failed: {exc}")
    checks = sorted(report["checks"], key=lambda c: SEVERITY_ORDER.get(c["severity"], 9))
    status = report["status"]
    return (
        badge(status, OVERALL_KIND.get(status, "info")),
        f" checked {fmt_time(report.get('checked_at'))} UTC",
        [check_card(c) for c in checks],
    )


def check_card(check: Mapping[str, Any]) -> html.Div:
    cid = check["id"]
    details = check.get("details") or {}
    parts: list[Any] = [
        html.Div(
            [
                html.Strong(check["title"], **testid("health-check", cid, "title")),
                html.Span(
                    badge(check["severity"], check["severity"]),
                    **testid("health-check", cid, "severity"),
                ),
            ],
            className="card-head",
        ),
        html.P(check["explanation"], **testid("health-check", cid, "explanation")),
    ]
    if check.get("action"):
        parts.append(
            html.P(
                [html.Strong("What to do: "), check["action"]],
                className="action",
                **testid("health-check", cid, "action"),
            )
        )
    if details:
        parts.append(
            html.Details(
                [
                    html.Summary("Details"),
                    html.Ul([html.Li(f"{k}: {_detail(v)}") for k, v in details.items()]),
                ]
            )
        )
    return html.Div(
        parts, className=f"card check check-{check['severity']}", **testid("health-check", cid)
    )


def _detail(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def register(app: Dash, bridge: SyncBridge) -> None:
    @app.callback(
        Output("health-status", "children"),
        Output("health-checked-at", "children"),
        Output("health-checks", "children"),
        Input("health-tick", "n_intervals"),
        Input("health-refresh", "n_clicks"),
    )
    def _update(_n: int | None, _clicks: int | None) -> tuple[Any, ...]:
        return update(bridge)

    register_capacity(app, bridge)


VIEW = View(slug="health", title="Health", layout=layout, register=register)
