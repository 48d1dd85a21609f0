"""The dashboard's JSON API and live event stream, over a ``DashboardService``.

``build_dashboard_router(service)`` returns a FastAPI ``APIRouter`` with the seed's paths:

========================================  ===============================================
``GET  /dashboard/api/overview?hours=24``  summary totals
``GET  /dashboard/api/trends?hours=24``    hourly requests, latency, tokens (1..720 h)
``GET  /dashboard/api/models?hours=24``    per-model stats; ``?model=M&days=7``: its days
``GET  /dashboard/api/usage?hours=24``     per node and model, and per day
``GET  /dashboard/api/apps?hours=24``      per tag; ``/apps/daily?days=7`` per tag and day
``GET  /dashboard/api/traces``             ``model, node, status, tag, hours, limit, offset``
``GET  /dashboard/api/traces/{id}``        one trace with every candidate's scores
``GET  /dashboard/api/latency``            latency observations (``node, model, hours``)
``GET|POST /dashboard/api/benchmarks``     run history / save a run (201 + ``{"id"}``)
``GET  /dashboard/api/benchmarks/{id}``    one run with its full results
``GET  /dashboard/api/health``             automated health checks
``GET  /dashboard/api/recommendations``    model mix per node (cached 5 min; ``?refresh``)
``GET|POST /dashboard/api/settings``       config, toggles, nodes / set auto_pull,
                                           vram_fallback (``{"auto_pull": true}``)
``POST /dashboard/api/pull``               ``{"model", "node"?}`` -> NDJSON progress
``GET  /dashboard/api/model-management``   per-node models with sizes and usage
``POST /dashboard/api/delete``             ``{"model", "node"?}``
``GET  /dashboard/events``                 Server-Sent Events: ``event: fleet`` with
                                           ``service.live()`` every ``interval`` s (2)
========================================  ===============================================

``/dashboard/events`` is bounded per replica: an ``interval`` below
``FLEET_EVENTS_MIN_INTERVAL`` is raised to it (the stream's ``retry:`` line says the
interval it runs at), and beyond ``FLEET_MAX_EVENT_STREAMS`` open streams a new one is
answered 429 ``{"error"}`` with ``Retry-After``.

Bad parameters get 422 (FastAPI's validation body) or 400 ``{"error": "..."}``; a
missing trace or run 404 ``{"error"}``; a fleet that does not answer 503 ``{"error"}``.
No handler lets an exception become a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from dashboard.service import MAX_DAYS, MAX_HOURS, MAX_LIMIT, DashboardService
from herd.convert.errors import error_body
from herd.errors import HerdError
from herd.settings import Settings
from herd.traces.records import TRACE_STATUSES

log = logging.getLogger("dashboard.api")

Hours = Annotated[float, Query(ge=1, le=MAX_HOURS, description="time range in hours")]
Days = Annotated[float, Query(ge=1, le=MAX_DAYS, description="time range in days")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Status = Annotated[str | None, Query(pattern="^(" + "|".join(TRACE_STATUSES) + ")$")]


def _error(status: int, message: str) -> JSONResponse:
    """The dashboard API's errors are the Ollama dialect's (``{"error": message}``)."""
    return JSONResponse(error_body("ollama", HerdError(message)), status_code=status)


class _GuardedRoute(APIRoute):
    """Turns every exception a handler raises into a JSON error (never a bare 500)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (RequestValidationError, HTTPException):
                raise
            except HerdError as exc:
                status = exc.status if 400 <= exc.status < 500 else 503
                return _error(status, exc.message)
            except (ValueError, LookupError) as exc:
                return _error(400, str(exc))
            except Exception as exc:
                log.warning("dashboard API %s failed", request.url.path, exc_info=True)
                return _error(503, f"fleet unavailable: {exc or type(exc).__name__}")

        return guarded


class ModelTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    node: str | None = Field(default=None, max_length=256)


class Toggles(BaseModel):
    model_config = ConfigDict(extra="forbid")
    auto_pull: StrictBool | None = None
    vram_fallback: StrictBool | None = None


async def sse_events(
    service: DashboardService,
    disconnected: Callable[[], Awaitable[bool]],
    interval: float = 2.0,
) -> AsyncIterator[str]:
    """``event: fleet`` frames of ``service.live()`` until ``disconnected()`` says so."""
    try:
        yield f"retry: {int(interval * 1000)}\n\n"
        while not await disconnected():
            try:
                data: dict[str, Any] = await service.live()
                yield f"event: fleet\ndata: {json.dumps(data, default=str)}\n\n"
            except Exception as exc:
                yield f"event: error\ndata: {json.dumps({'error': str(exc)})}\n\n"
            # Look for a departed client while waiting, so the stream ends within 0.25 s.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + interval
            while (left := deadline - loop.time()) > 0:
                await asyncio.sleep(min(0.25, left))
                if await disconnected():
                    return
    finally:
        log.debug("dashboard events stream closed")


STREAMS_RETRY_AFTER_S = 5


class EventStreams:
    """How many ``/dashboard/events`` streams are open on this replica, at most ``cap``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0


class _CappedEventStream(StreamingResponse):
    """An SSE response that holds one of ``streams``' places while it is being sent (the
    place is freed however the response ends: done, client gone, cancelled), or answers
    429 when none is free. Taking the place here, not in the route, means a response
    that is never sent never holds one."""

    def __init__(self, streams: EventStreams, body: AsyncIterator[str], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self.streams = streams

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        streams = self.streams
        if streams.open >= streams.cap:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            busy = _error(429, f"too many event streams: at most {streams.cap} per replica")
            busy.headers["Retry-After"] = str(STREAMS_RETRY_AFTER_S)
            await busy(scope, receive, send)
            return
        streams.open += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            streams.open -= 1


async def _ndjson(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for event in events:
        yield (json.dumps(event, default=str) + "\n").encode()


def _add_window_route(
    router: APIRouter, path: str, answer: Callable[[float], Any], key: str | None = None
) -> None:
    """``GET path?hours=24``: ``{"hours": ...}`` plus ``answer(hours)``, merged in when
    ``key`` is None, else under ``key``."""

    def endpoint(hours: Hours = 24) -> dict[str, Any]:
        found = answer(hours)
        return {"hours": hours, **found} if key is None else {"hours": hours, key: found}

    router.add_api_route(path, endpoint, methods=["GET"], name=path.rsplit("/", 1)[-1])


def build_dashboard_router(
    service: DashboardService, fleet_settings: Settings | None = None
) -> APIRouter:
    """The API over ``service``; ``fleet_settings`` bound the event streams
    (``FLEET_EVENTS_MIN_INTERVAL``, ``FLEET_MAX_EVENT_STREAMS``; their defaults when None)."""
    router = APIRouter(route_class=_GuardedRoute)
    api = "/dashboard/api"
    bounds = fleet_settings or Settings.model_construct()
    min_interval = bounds.events_min_interval
    streams = EventStreams(bounds.max_event_streams)

    _add_window_route(router, f"{api}/overview", service.overview)
    _add_window_route(router, f"{api}/trends", service.trends, "trends")

    @router.get(f"{api}/models")
    def models(
        hours: Hours = 24,
        model: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
        days: Days = 7,
    ) -> dict[str, Any]:
        if model is not None:
            return {"model": model, "days": days, "daily": service.model_daily(model, days)}
        return {"hours": hours, "models": service.models(hours)}

    _add_window_route(router, f"{api}/usage", service.usage)
    _add_window_route(router, f"{api}/apps", service.apps, "apps")

    @router.get(f"{api}/apps/daily")
    def apps_daily(days: Days = 7) -> dict[str, Any]:
        return {"days": days, "apps": service.apps_daily(days)}

    @router.get(f"{api}/traces")
    def traces(
        model: str | None = None,
        node: str | None = None,
        status: Status = None,
        tag: str | None = None,
        hours: Annotated[float | None, Query(ge=1, le=MAX_HOURS)] = None,
        limit: Limit = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        return service.traces(model, node, status, tag, hours, limit, offset)

    @router.get(f"{api}/traces/{{request_id}}", response_model=None)
    def trace(request_id: str) -> dict[str, Any] | JSONResponse:
        found = service.trace(request_id)
        return found if found is not None else _error(404, f"no trace {request_id!r}")

    @router.get(f"{api}/latency")
    def latency(
        node: str | None = None, model: str | None = None, hours: Hours = 24, limit: Limit = 1000
    ) -> dict[str, Any]:
        return {"hours": hours, "observations": service.latency(node, model, hours, limit)}

    @router.get(f"{api}/benchmarks")
    def benchmarks(limit: Limit = 50) -> dict[str, Any]:
        return {"benchmarks": service.benchmarks(limit)}

    @router.post(f"{api}/benchmarks", status_code=201)
    def add_benchmark(run: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return service.add_benchmark(run)

    @router.get(f"{api}/benchmarks/{{run_id}}", response_model=None)
    def benchmark(run_id: int) -> dict[str, Any] | JSONResponse:
        found = service.benchmark(run_id)
        return found if found is not None else _error(404, f"no benchmark run {run_id}")

    @router.get(f"{api}/health")
    async def health() -> dict[str, Any]:
        return await service.health()

    @router.get(f"{api}/recommendations")
    async def recommendations(refresh: bool = False) -> dict[str, Any]:
        return await service.recommendations(refresh)

    @router.get(f"{api}/settings")
    async def settings() -> dict[str, Any]:
        return await service.settings()

    @router.post(f"{api}/settings")
    async def set_settings(toggles: Toggles) -> dict[str, Any]:
        return await service.set_settings(toggles.model_dump(exclude_none=True))

    @router.post(f"{api}/pull")
    async def pull(target: ModelTarget) -> StreamingResponse:
        events = service.pull(target.model, target.node)
        return StreamingResponse(_ndjson(events), media_type="application/x-ndjson")

    @router.get(f"{api}/model-management")
    async def model_management(days: Days = 30) -> dict[str, Any]:
        return await service.model_management(days)

    @router.post(f"{api}/delete")
    async def delete(target: ModelTarget) -> dict[str, Any]:
        return await service.delete(target.model, target.node)

    @router.get("/dashboard/events")
    async def events(
        request: Request, interval: Annotated[float, Query(gt=0, le=60)] = 2.0
    ) -> StreamingResponse:
        return _CappedEventStream(
            streams,
            sse_events(service, request.is_disconnected, max(interval, min_interval)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
