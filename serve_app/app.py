"""The Serve deployment: one FastAPI app per replica, built after the constructor.

Routes are plain closures over a :class:`~serve_app.service.HerdService` created in
the replica (``__serve_build_asgi_app__``), so nothing request-related is pickled.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from ray import serve

from herd.logs import configure_logging
from herd.settings import Settings
from serve_app.routes import build_app
from serve_app.service import HerdService

log = logging.getLogger("herd.serve")

APP_NAME = "herd"


@serve.ingress()
class HerdIngress:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings)
        self.settings = settings
        self.service = HerdService(settings)

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = build_app(self.service, behind_serve=True)
        add_dashboard(app, self.service)
        return app


def add_dashboard(app: FastAPI, svc: HerdService) -> None:
    """The dashboard's JSON API and Dash views, same origin as the inference API. They
    read traces from the database the RouterActor writes (``FLEET_DATABASE_URL``)."""
    from dashboard.api import build_dashboard_router
    from dashboard.app import mount_dashboard
    from dashboard.service import DashboardService
    from herd.traces.store import TraceStore
    from serve_app.dashboard_fleet import RayFleet

    service = DashboardService(TraceStore.from_settings(svc.settings), RayFleet(svc))
    app.include_router(build_dashboard_router(service, svc.settings))
    mount_dashboard(app, service)


# Ray's own resource on the head node, the machine the RouterActor is pinned to.
HEAD_RESOURCE = "node:__internal_head__"


def ingress_actor_options(settings: Settings) -> dict[str, Any]:
    """The ingress replicas' Ray options: on the head, whatever the trace store. With
    SQLite (a file on the head, written by the RouterActor there) a replica elsewhere
    would read an empty database of its own machine; and with a database server the other
    boxes may still hold herd's node part alone, without Serve, FastAPI or the dashboard
    (the ``[head]`` extra: README, "Installing on each box")."""
    return {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}}


def deploy_serve(settings: Settings, replicas: int = 1) -> str:
    """Start Serve on the head (HTTP on FLEET_HOST:FLEET_PORT) and deploy the ingress."""
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": settings.host, "port": settings.port},
    )
    deployment: Any = serve.deployment(
        HerdIngress,
        name="HerdIngress",
        num_replicas=replicas,
        ray_actor_options=ingress_actor_options(settings),
        max_ongoing_requests=10_000,
    )
    serve.run(deployment.bind(settings), name=APP_NAME, route_prefix="/", blocking=False)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}"
