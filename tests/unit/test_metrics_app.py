"""``GET /metrics`` over the real app (routes, guard, dispatcher, traces) and fake nodes:
traffic from the official clients shows up in the router's metrics, who may read them,
and what happens when metrics are off or the router does not answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import ollama
import pytest
from dispatch_fakes import Fleet, heartbeat, running
from openai import AsyncOpenAI
from test_metrics import samples, value

from herd.metrics import CONTENT_TYPE, FleetMetrics
from herd.routing.events import Event
from serve_app.routes import build_app
from serve_app.service import HerdService

BASE = "http://127.0.0.1:11435"
MODEL = "tiny:1b"
ADMIN = "admin-token-0123456789"
SCRAPER = "metrics-token-0123456789"
KEY = "alice-key-0123456789"


def router_metrics(fleet: Fleet) -> FleetMetrics:
    """The fake router keeps metrics like the RouterActor does (``actors/router.py``)."""
    core, router = fleet.core, fleet.router
    metrics = FleetMetrics(core.status, core.known_model)
    call, report = router.call, router.report

    async def metered_call(method: str, *args: Any) -> Any:
        if method == "metrics" and not router.call_hangs:
            return metrics.exposition()
        result = await call(method, *args)  # hangs like the fake's other calls
        if method == "record_traces":
            metrics.traces(args[0])
        return result

    async def metered_report(source: str, seq: int, events: Sequence[Event]) -> None:
        await report(source, seq, events)
        metrics.events(events)

    router.call = metered_call  # type: ignore[method-assign]
    router.report = metered_report  # type: ignore[method-assign]
    return metrics


@asynccontextmanager
async def herd(**over: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Fleet]]:
    over.setdefault("host", "127.0.0.1")  # loopback only: no token needed
    async with running(heartbeat("alpha", loaded=[MODEL]), **over) as fleet:
        router_metrics(fleet)
        app = build_app(HerdService(fleet.d.settings, fleet.d))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            http.app = app  # type: ignore[attr-defined]
            yield http, fleet


async def scrape(http: httpx.AsyncClient, fleet: Fleet, **headers: str) -> httpx.Response:
    await fleet.d.traces.drain()  # the traces reach the router
    await fleet.d.flush()  # and the report batches
    return await http.get("/metrics", headers=headers)


async def test_traffic_from_the_official_clients_is_counted() -> None:
    async with herd() as (http, fleet):
        app = http.app  # type: ignore[attr-defined]
        sdk_http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
        async with sdk_http:
            client = AsyncOpenAI(
                base_url=BASE + "/v1", api_key="x", http_client=sdk_http, max_retries=0
            )
            for _ in range(3):
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}]
                )
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
            )
            async for _chunk in stream:
                pass
        native = ollama.AsyncClient(host=BASE, transport=httpx.ASGITransport(app=app))
        await native.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(ollama.ResponseError):
            await native.chat(model="nope:1b", messages=[{"role": "user", "content": "hi"}])
        r = await scrape(http, fleet)
        assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPE
        found = samples(r.content)
        ok = {"model": MODEL, "served_model": MODEL, "node": "alpha", "status": "ok"}
        assert value(found, "herd_requests_total", dialect="openai", **ok) == 4
        assert value(found, "herd_requests_total", dialect="ollama", **ok) == 1
        assert value(found, "herd_requests_total", status="rejected", model="other") == 1
        assert value(found, "herd_request_duration_seconds_count", status="ok") == 5
        assert value(found, "herd_time_to_first_token_seconds_count", node="alpha") == 5
        assert value(found, "herd_queue_wait_seconds_count", model=MODEL) == 5
        assert value(found, "herd_node_status", node="alpha", status="online") == 1
        assert "nope" not in r.text


async def test_loopback_endpoint_needs_no_token() -> None:
    async with herd(host="127.0.0.1", admin_token=ADMIN) as (http, fleet):
        assert (await scrape(http, fleet)).status_code == 200


async def test_reachable_endpoint_needs_the_metrics_or_the_admin_token() -> None:
    keys = {"api_keys": f"alice:{KEY}", "metrics_token": SCRAPER}
    async with herd(host="0.0.0.0", admin_token=ADMIN, **keys) as (http, fleet):
        r = await scrape(http, fleet)
        assert r.status_code == 401 and "FLEET_METRICS_TOKEN" in r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert (await scrape(http, fleet, authorization=f"Bearer {KEY}")).status_code == 401
        assert (await scrape(http, fleet, authorization="Bearer wrong")).status_code == 401
        r = await scrape(http, fleet, authorization=f"Bearer {SCRAPER}")
        assert r.status_code == 200 and "herd_build_info" in r.text
        assert (await scrape(http, fleet, authorization=f"Bearer {ADMIN}")).status_code == 200
        # the metrics token reads /metrics and nothing else
        scraper = {"authorization": f"Bearer {SCRAPER}"}
        assert (await http.get("/api/tags", headers=scraper)).status_code == 401
        assert (await http.get("/dashboard/api/status", headers=scraper)).status_code == 401
        assert (await http.post("/api/pull", headers=scraper, json={})).status_code == 401
        assert (await http.post("/metrics", headers=scraper)).status_code == 401  # a write


async def test_without_a_metrics_token_only_the_admin_reads_them() -> None:
    async with herd(host="0.0.0.0", admin_token=ADMIN) as (http, fleet):
        assert (await scrape(http, fleet)).status_code == 401
        assert (await scrape(http, fleet, authorization=f"Bearer {ADMIN}")).status_code == 200


async def test_metrics_off_is_a_404() -> None:
    async with herd(metrics=False) as (http, fleet):
        r = await scrape(http, fleet)
        assert r.status_code == 404 and "FLEET_METRICS" in r.text


async def test_a_silent_router_is_a_503() -> None:
    async with herd(actor_call_timeout=0.2) as (http, fleet):
        fleet.router.call_hangs = True
        r = await http.get("/metrics")
        assert r.status_code == 503 and "router unavailable" in r.text
