"""Building blocks every view shares: number formats, stat cards, tables, empty figures.

Numbers the browser test reads carry a ``data-testid`` (stat values also carry the same
``id``), so tests find them without depending on the page structure. Formats are plain
functions so the tests can format the numbers they expect the same way.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from dash import Input, Output, dcc, html

if TYPE_CHECKING:
    from dash import Dash

    from dashboard.bridge import SyncBridge

Cell = Callable[[Any], Any]
Row = Mapping[str, Any]
Column = str | Callable[[Row], Any]  # a row's field, or how to compute a value from a row

RANGE_OPTIONS = [
    {"label": "24 h", "value": 24},
    {"label": "48 h", "value": 48},
    {"label": "72 h", "value": 72},
    {"label": "7 d", "value": 168},
]
NONE = "—"
COLORS = ("#2f6fde", "#e07b39", "#3aa66b", "#c9414b", "#8a5cc7", "#7a8b99", "#d4a82c")


# --- number formats ---------------------------------------------------------------------
def fmt_int(value: float | None) -> str:
    return NONE if value is None else f"{round(value):,}"


def fmt_seconds(value: float | None) -> str:
    """Latency: milliseconds under one second, else seconds with two decimals."""
    if value is None:
        return NONE
    if value < 1.0:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def fmt_rate(value: float | None, unit: str = "tok/s") -> str:
    return NONE if value is None else f"{value:,.1f} {unit}"


def fmt_pct(value: float | None) -> str:
    """A 0..1 fraction as a percentage."""
    return NONE if value is None else f"{value * 100:.1f}%"


def fmt_gb(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f} GB"


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return NONE
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_score(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f}"


def testid(*parts: object) -> dict[str, Any]:
    """``data-testid`` keyword for a Dash html component: ``html.Td(x, **testid(...))``."""
    return {"data-testid": "-".join(str(p) for p in parts)}


# --- components ---------------------------------------------------------------------------
def page(title: str, *children: Any, intro: str | None = None) -> html.Section:
    head: list[Any] = [html.H2(title)]
    if intro:
        head.append(html.P(intro, className="intro"))
    return html.Section([*head, *children], className="view")


def stat(id_: str, label: str, value: str = NONE) -> html.Div:
    """A labelled number; the value element has ``id`` and ``data-testid`` = ``id_``."""
    return html.Div(
        [html.Div(label, className="stat-label"), html.Div(value, id=id_, **testid(id_))],
        className="stat",
    )


def stats_row(stats: Sequence[tuple[str, str]]) -> html.Div:
    """A row of :func:`stat` cards, one per ``(id, label)``."""
    return html.Div([stat(id_, label) for id_, label in stats], className="stats")


def graph(id_: str) -> dcc.Graph:
    """A chart whose figure a callback fills in (a blank placeholder until then)."""
    return dcc.Graph(id=id_, figure=_placeholder(), config={"displayModeBar": False})


@functools.cache
def _placeholder() -> dict[str, Any]:
    # Building a plotly Figure costs tens of milliseconds; pages render many placeholders.
    figure: dict[str, Any] = empty_figure("Loading…").to_plotly_json()
    return figure


def range_selector(id_: str, value: int = 24) -> dcc.RadioItems:
    return dcc.RadioItems(
        id=id_, options=RANGE_OPTIONS, value=value, inline=True, className="range"
    )


def update_on_range(
    app: Dash,
    bridge: SyncBridge,
    range_id: str,
    outputs: Sequence[Output],
    update: Callable[[SyncBridge, int], tuple[Any, ...]],
) -> None:
    """A callback filling ``outputs`` with ``update(bridge, hours)`` whenever the
    :func:`range_selector` ``range_id`` changes (and when the page loads)."""

    @app.callback(*outputs, Input(range_id, "value"))
    def _update(hours: int) -> tuple[Any, ...]:
        return update(bridge, hours)


def badge(text: str, kind: str) -> html.Span:
    return html.Span(text, className=f"badge badge-{kind}")


# The traffic numbers the per-app and per-model tables show: column title and format.
TRAFFIC_TITLES = {
    "requests": "Requests",
    "errors": "Errors",
    "error_rate": "Error rate",
    "avg_latency_s": "Avg latency",
    "p95_latency_s": "p95 latency",
    "avg_ttft_s": "Avg TTFT",
    "tokens_per_s": "Tokens/s",
    "prompt_tokens": "Prompt tokens",
    "completion_tokens": "Completion tokens",
}
TRAFFIC_FORMATS: dict[str, Cell] = {
    "requests": fmt_int,
    "errors": fmt_int,
    "error_rate": fmt_pct,
    "avg_latency_s": fmt_seconds,
    "p95_latency_s": fmt_seconds,
    "avg_ttft_s": fmt_seconds,
    "tokens_per_s": fmt_rate,
    "prompt_tokens": fmt_int,
    "completion_tokens": fmt_int,
}


def traffic_columns(*fields: str) -> tuple[tuple[str, str], ...]:
    """``(field, title)`` table columns for traffic numbers (see ``TRAFFIC_TITLES``)."""
    return tuple((f, TRAFFIC_TITLES[f]) for f in fields)


def table(
    name: str,
    columns: Sequence[tuple[str, str]],
    rows: Iterable[Mapping[str, Any]],
    *,
    key: str,
    formats: Mapping[str, Cell] | None = None,
    row_props: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> html.Table:
    """An html table; cell ``(row, col)`` has ``data-testid`` ``name-<row[key]>-<col>``."""
    formats = formats or {}
    head = html.Thead(html.Tr([html.Th(title) for _, title in columns]))
    body = []
    for row in rows:
        ident = row.get(key)
        cells = [
            html.Td(formats.get(col, _plain)(row.get(col)), **testid(name, ident, col))
            for col, _ in columns
        ]
        props = row_props(row) if row_props else {}
        body.append(html.Tr(cells, **testid(name, ident), **props))
    if not body:
        body.append(html.Tr(html.Td("No data yet", colSpan=len(columns), className="empty")))
    return html.Table([head, html.Tbody(body)], className="table", **testid(name))


def _plain(value: Any) -> Any:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or NONE
    return str(value)


def error_note(message: str) -> html.Div:
    return html.Div(message, className="error-note", role="alert")


# --- figures ------------------------------------------------------------------------------
def empty_figure(message: str = "No data yet") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        template="plotly_white",
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": message, "showarrow": False, "font": {"size": 14}}],
        height=280,
        margin={"l": 20, "r": 20, "t": 30, "b": 20},
    )
    return fig


def styled(fig: go.Figure, title: str, *, y_title: str = "", height: int = 320) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0.01, "font": {"size": 15}},
        yaxis_title=y_title,
        height=height,
        margin={"l": 50, "r": 20, "t": 45, "b": 40},
        legend={"orientation": "h", "y": -0.2},
        colorway=list(COLORS),
    )
    return fig


def column(rows: Sequence[Row], col: Column) -> list[Any]:
    """One value per row: ``row[col]`` for a field name, else ``col(row)``."""
    return [row[col] for row in rows] if isinstance(col, str) else [col(row) for row in rows]


def bar_chart(
    rows: Sequence[Row],
    x: Column,
    bars: Sequence[tuple[str, Column]],
    title: str,
    *,
    y_title: str = "",
    barmode: str | None = None,
    empty: str = "No data yet",
) -> go.Figure:
    """One bar trace per ``(name, column)`` of ``bars`` over ``column(rows, x)``, styled;
    ``barmode`` "group" or "stack" for several; an empty figure when there are no rows."""
    if not rows:
        return empty_figure(empty)
    xs = column(rows, x)
    fig = go.Figure([go.Bar(name=name, x=xs, y=column(rows, col)) for name, col in bars])
    if barmode is not None:
        fig.update_layout(barmode=barmode)
    return styled(fig, title, y_title=y_title)


def seconds_or_zero(value: float | None) -> float:
    return 0.0 if value is None else float(value)
