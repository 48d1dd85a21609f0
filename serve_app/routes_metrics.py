"""``GET /metrics``: the fleet's Prometheus metrics, on the endpoint port.

The RouterActor keeps them (:mod:`herd.metrics`): every replica's traces and routing
reports reach it, so any replica answers with the whole fleet's numbers and Prometheus
needs one scrape target however many Serve replicas run. Ray's own metrics
(``ray.util.metrics``) would need Ray's dashboard agent on every node, which herd's Ray
nodes run without (``--include-dashboard=false``), and a per-replica registry behind
Serve's proxy would answer a different replica on each scrape.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from herd.errors import NotFound
from herd.metrics import CONTENT_TYPE
from serve_app.service import HerdService


def add_metrics_routes(app: FastAPI, svc: HerdService) -> None:
    # Who may call: the admin token or FLEET_METRICS_TOKEN (a token for /metrics only),
    # anyone when the endpoint listens on loopback only (herd.guard.access "metrics").
    # Bounds: one router call within FLEET_ACTOR_CALL_TIMEOUT (503 when the router does
    # not answer); the answer's size is bounded by the label caps of herd.metrics.labels
    # (64 model names, 256 nodes, "other" beyond), whatever clients send.
    @app.get("/metrics")
    async def metrics() -> Response:
        if not svc.settings.metrics:
            raise NotFound("metrics are off (FLEET_METRICS=false)")
        body: bytes = await svc.dispatcher.call_router("metrics")
        return Response(body, media_type=CONTENT_TYPE)
