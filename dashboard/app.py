"""The Dash dashboard, served at ``/dashboard`` by the same FastAPI ingress as the API.

``build_dash_app(service)`` makes the Dash app (Flask underneath) whose pages are the
views in :mod:`dashboard.views`, navigated with ``dcc.Location``: ``/dashboard/`` is the
Fleet Overview, ``/dashboard/trends``, ``/models``, ``/apps``, ``/benchmarks``,
``/health``, ``/recommendations``, ``/settings`` and ``/traces?id=<request id>`` the rest.

``mount_dashboard(fastapi_app, service)`` mounts it through ``a2wsgi.WSGIMiddleware``.
The mount leaves ``/dashboard/api/*`` and ``/dashboard/events`` to the JSON API router,
whichever order the two are added in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from a2wsgi import WSGIMiddleware
from dash import Dash, Input, Output, dcc, html
from fastapi import FastAPI
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Scope

from dashboard.bridge import LoopCapture, SyncBridge
from dashboard.views import View, all_views

ASSETS = Path(__file__).with_name("assets")
DEFAULT_PATH = "/dashboard"
API_PATHS = ("/api", "/events")  # under the dashboard path, served by the JSON API router


def build_dash_app(
    service: Any,
    *,
    prefix: str = DEFAULT_PATH + "/",
    routes_prefix: str = "/",
    bridge: SyncBridge | None = None,
) -> Dash:
    """The dashboard over ``service`` (a ``DashboardService``).

    ``prefix`` is the URL path browsers use; ``routes_prefix`` the path Flask sees, which
    is ``/`` when the app is mounted under ``prefix`` (the mount strips it). Standalone
    (``app.run()``), pass ``routes_prefix=prefix``.
    """
    bridge = bridge or SyncBridge(service)
    app = Dash(
        __name__,
        requests_pathname_prefix=prefix,
        routes_pathname_prefix=routes_prefix,
        assets_folder=str(ASSETS),
        title="herd dashboard",
        update_title="",
        serve_locally=True,
    )
    views = all_views()
    app.layout = shell(app, views)
    every_page = html.Div([shell(app, views), *(v.layout({}) for v in views)])
    app.validation_layout = every_page  # type: ignore[assignment]

    @app.callback(
        Output("page", "children"),
        Output("nav", "children"),
        Input("url", "pathname"),
        Input("url", "search"),
    )
    def _route(pathname: str | None, search: str | None) -> tuple[Any, Any]:
        return route(app, views, pathname, search)

    for view in views:
        view.register(app, bridge)
    return app


def shell(app: Dash, views: tuple[View, ...]) -> html.Div:
    return html.Div(
        [
            dcc.Location(id="url", refresh=False),
            html.Header(
                [
                    html.A("herd", href=app.get_relative_path("/"), className="brand"),
                    html.Nav(nav_links(app, views, ""), id="nav"),
                ],
                className="top",
            ),
            html.Main(id="page"),
        ],
        className="app",
    )


def nav_links(app: Dash, views: tuple[View, ...], active: str | None) -> list[Any]:
    return [
        dcc.Link(
            v.title,
            href=app.get_relative_path("/" + v.slug),
            className="nav-link active" if v.slug == active else "nav-link",
            id=f"nav-{v.slug or 'overview'}",
        )
        for v in views
    ]


def slug_of(app: Dash, pathname: str | None) -> str | None:
    """The view slug of a browser path, None when the path is outside the dashboard."""
    if pathname is None:
        return ""
    try:
        return str(app.strip_relative_path(pathname) or "").strip("/")
    except Exception:
        return None


def route(
    app: Dash, views: tuple[View, ...], pathname: str | None, search: str | None
) -> tuple[Any, Any]:
    """The page and the navigation for a browser URL."""
    slug = slug_of(app, pathname)
    query = dict(parse_qsl((search or "").lstrip("?")))
    view = next((v for v in views if v.slug == slug), None)
    if view is None:
        missing = html.Section(
            [html.H2("Not found"), html.P(f"No dashboard page at {pathname}.")], className="view"
        )
        return missing, nav_links(app, views, None)
    return view.layout(query), nav_links(app, views, view.slug)


class DashboardMount(Mount):
    """A mount of the Dash app that leaves the JSON API's paths to other routes."""

    def __init__(self, path: str, app: ASGIApp, reserved: tuple[str, ...]) -> None:
        super().__init__(path, app=app)
        self.reserved = reserved

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] in ("http", "websocket"):
            path = _route_path(scope)
            if any(path == r or path.startswith(r + "/") for r in self.reserved):
                return Match.NONE, {}
        return super().matches(scope)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def mount_dashboard(fastapi_app: FastAPI, service: Any, *, path: str = DEFAULT_PATH) -> Dash:
    """Serve the dashboard at ``path`` (``/dashboard``) of ``fastapi_app``; returns it.

    Dash callbacks run in a2wsgi's worker threads; their service calls run on the
    FastAPI event loop through a :class:`~dashboard.bridge.SyncBridge`.
    """
    path = "/" + path.strip("/")
    bridge = SyncBridge(service)
    dash_app = build_dash_app(service, prefix=path + "/", bridge=bridge)
    asgi = LoopCapture(WSGIMiddleware(dash_app.server), bridge)  # type: ignore[arg-type]
    reserved = tuple(path + p for p in API_PATHS)
    fastapi_app.router.routes.append(DashboardMount(path, asgi, reserved))
    return dash_app
