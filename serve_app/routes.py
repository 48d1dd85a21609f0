"""The HTTP app: every route module, one error mapper per dialect, request tracing, the
guard and the hang-up watch.

Routes live per area: ``routes_ollama`` (Ollama inference), ``routes_openai`` (OpenAI
chat and completions), ``routes_responses`` (OpenAI Responses), ``routes_anthropic``
(Anthropic Messages), ``routes_models`` (models in both dialects: tags, ps, show, pull,
delete, ``/v1/models``), ``routes_media`` (images and speech-to-text in both dialects),
``routes_login`` (the dashboard's login) and the ``/fleet/*`` routes and probes here.
``build_app`` is where anything else gets mounted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from herd import __version__
from herd.errors import HerdError
from serve_app.errors import (
    herd_error_handler,
    http_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from serve_app.guard import GuardMiddleware
from serve_app.hangup import HangupMiddleware
from serve_app.routes_anthropic import add_anthropic_routes
from serve_app.routes_login import add_login_routes
from serve_app.routes_media import add_media_routes
from serve_app.routes_metrics import add_metrics_routes
from serve_app.routes_models import add_model_routes
from serve_app.routes_ollama import OLLAMA_COMPAT_VERSION, add_ollama_routes
from serve_app.routes_openai import add_openai_routes
from serve_app.routes_rerank import add_rerank_routes
from serve_app.routes_responses import add_responses_routes
from serve_app.service import HerdService, json_response
from serve_app.tracing import TraceMiddleware

__all__ = ["OLLAMA_COMPAT_VERSION", "add_fleet_routes", "build_app"]


def readiness(status: dict[str, Any]) -> str | None:
    """Why the fleet cannot take requests (None: it can): no node online, or a trace
    store that does not take writes."""
    online = [n for n in status.get("nodes", ()) if n.get("status") == "online"]
    if not online:
        return "no node is online"
    traces = status.get("traces") or {}
    if traces and not traces.get("alive", True):
        return "the trace writer is not running"
    if traces.get("last_error"):
        return f"the trace store refuses writes: {traces['last_error']}"
    return None


def add_fleet_routes(app: FastAPI, svc: HerdService) -> None:
    @app.get("/fleet/status")
    async def fleet_status() -> Response:
        return json_response(await svc.fleet_status())

    # Probes. Who may call: anyone (public; they say nothing beyond ready or not and a
    # reason). Bounds: /healthz does no work; /readyz one router call, bounded by
    # FLEET_ACTOR_CALL_TIMEOUT.
    @app.get("/healthz")
    @app.head("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    @app.head("/readyz")
    async def readyz() -> Response:
        try:
            async with asyncio.timeout(svc.settings.actor_call_timeout):
                status = await svc.fleet_status()
        except (HerdError, TimeoutError) as exc:
            reason = getattr(exc, "message", None) or "the router did not answer in time"
            return json_response({"status": "not ready", "reason": f"router: {reason}"}, 503)
        reason = readiness(status)
        if reason is not None:
            return json_response({"status": "not ready", "reason": reason}, 503)
        online = sum(1 for n in status["nodes"] if n.get("status") == "online")
        return json_response({"status": "ready", "nodes_online": online})


def build_app(svc: HerdService, behind_serve: bool = False) -> FastAPI:
    """The API app. ``behind_serve``: Ray Serve's own request-id layer already echoes
    ``X-Request-Id`` (and makes one up when the client sent none), so the trace middleware
    then sets only ``X-Herd-Request-Id``."""
    app = FastAPI(
        title="herd",
        version=__version__,
        docs_url="/fleet/docs",
        redoc_url=None,
        openapi_url="/fleet/openapi.json",
    )
    app.add_exception_handler(HerdError, herd_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    add_ollama_routes(app, svc)
    add_model_routes(app, svc)
    add_openai_routes(app, svc)
    add_rerank_routes(app, svc)
    add_anthropic_routes(app, svc)
    add_responses_routes(app, svc)
    add_media_routes(app, svc)
    add_fleet_routes(app, svc)
    add_login_routes(app, svc)
    add_metrics_routes(app, svc)
    # Host, Origin, body size and credentials, before any route (serve_app/guard.py).
    app.add_middleware(GuardMiddleware, policy=lambda: svc.guard_policy)
    # A client that hangs up cancels its request at once (serve_app/hangup.py).
    app.add_middleware(HangupMiddleware)
    # Every inference request gets a trace, rejected and abandoned ones included; added
    # last, so it is the outermost layer and traces the guard's refusals too.
    app.add_middleware(
        TraceMiddleware, shipper=lambda: svc.dispatcher.traces, echo_request_id=not behind_serve
    )
    return app
