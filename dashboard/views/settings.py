"""8. Settings: the runtime toggles (auto-pull, VRAM fallback), the read-only
configuration grouped by category, and every node with its versions (the router's
node wears a Router badge)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dash import Dash, Input, Output, dcc, html, no_update

from dashboard.bridge import SyncBridge
from dashboard.views.base import View
from dashboard.views.common import badge, error_note, page, table, testid

TOGGLES = (
    ("auto_pull", "Auto-pull: pull a requested model onto a node when no node has it"),
    (
        "vram_fallback",
        "VRAM fallback: serve a loaded model of the same family when memory is short",
    ),
)
NODE_COLUMNS = (
    ("node", "Node"),
    ("hostname", "Host"),
    ("status", "Status"),
    ("herd_version", "herd"),
    ("backend", "Backend"),
    ("backend_version", "Backend version"),
)


def layout(query: Mapping[str, str]) -> html.Section:
    return page(
        "Settings",
        dcc.Interval(id="settings-tick", interval=30_000),
        html.H3("Runtime toggles"),
        dcc.Checklist(
            id="settings-toggles",
            options=[{"label": f" {text}", "value": key} for key, text in TOGGLES],
            value=[],
            className="toggles",
        ),
        html.Div(id="settings-saved", role="status", **testid("settings-saved")),
        html.P(
            [
                "Changing a toggle needs the admin token (`herd admin-token`): ",
                html.A("log in", href="/dashboard/login"),
                ".",
            ],
            className="hint",
        ),
        html.H3("Nodes"),
        html.Div(id="settings-versions"),
        html.Div(id="settings-nodes", className="scroll"),
        html.H3("Configuration"),
        html.Div(id="settings-config", className="config"),
    )


def enabled(toggles: Mapping[str, bool]) -> list[str]:
    return [key for key, _ in TOGGLES if toggles.get(key)]


def load(bridge: SyncBridge) -> tuple[Any, ...]:
    """Toggle values, the version banner, the node table and the config tables."""
    current = bridge.call("settings")
    return (
        enabled(current["toggles"]),
        versions_banner(current.get("versions_consistent", True)),
        nodes_table(current.get("nodes", [])),
        config_tables(current.get("config", {})),
    )


def changes(wanted: Sequence[str] | None, toggles: Mapping[str, bool]) -> dict[str, bool]:
    """The toggles whose ticked state differs from the service's."""
    ticked = set(wanted or [])
    return {key: key in ticked for key, _ in TOGGLES if (key in ticked) != bool(toggles.get(key))}


def apply(bridge: SyncBridge, wanted: Sequence[str] | None) -> Any:
    """Send changed toggles to the service; returns the confirmation text."""
    try:
        diff = changes(wanted, bridge.call("settings")["toggles"])
        if not diff:
            return no_update
        after = bridge.call("set_settings", diff)["toggles"]
    except Exception as exc:
        return error_note(f"Could not change settings: {exc}")
    return "Saved: " + ", ".join(f"{k} = {'on' if after[k] else 'off'}" for k in diff)


def versions_banner(consistent: bool) -> html.Div:
    if consistent:
        return html.Div(badge("all nodes run the same versions", "ok"))
    return html.Div(badge("version mismatch between nodes: see Health", "warning"))


def nodes_table(nodes: Sequence[Mapping[str, Any]]) -> html.Table:
    rows = []
    for n in nodes:
        name: Any = n["node_id"]
        if n.get("is_router"):
            name = html.Span([n["node_id"], " ", badge("Router", "router")])
        rows.append({**n, "node": name})
    return table("settings-node", NODE_COLUMNS, rows, key="node_id", formats={"node": lambda v: v})


def config_tables(config: Mapping[str, Mapping[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for category, values in config.items():
        rows = [{"key": k, "value": _value(v)} for k, v in values.items()]
        out.append(
            html.Div(
                [
                    html.H4(category),
                    table(
                        f"settings-config-{category}",
                        (("key", "Setting"), ("value", "Value")),
                        rows,
                        key="key",
                    ),
                ],
                className="config-group",
            )
        )
    return out


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def register(app: Dash, bridge: SyncBridge) -> None:
    @app.callback(
        Output("settings-toggles", "value"),
        Output("settings-versions", "children"),
        Output("settings-nodes", "children"),
        Output("settings-config", "children"),
        Input("settings-tick", "n_intervals"),
    )
    def _load(_n: int | None) -> tuple[Any, ...]:
        return load(bridge)

    @app.callback(
        Output("settings-saved", "children"),
        Input("settings-toggles", "value"),
        prevent_initial_call=True,
    )
    def _apply(wanted: list[str] | None) -> Any:
        return apply(bridge, wanted)


VIEW = View(
    slug="settings",
    title="Settings",
    layout=layout,
    register=register,
    mutations=("settings-saved.children",),
)
