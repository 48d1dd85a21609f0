"""The dashboard JSON API over a real SQLite trace store and an in-memory fleet."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_dashboard_queries import NOW, SAMPLE

from dashboard.api import build_dashboard_router, sse_events
from dashboard.fleet import StaticFleet
from dashboard.service import DashboardService
from herd.errors import BadRequest
from herd.traces.store import TraceStore

GB = 1024**3


def node(node_id: str, **kw: Any) -> dict[str, Any]:
    base = {
        "node_id": node_id,
        "hostname": f"{node_id}.local",
        "status": "online",
        "backend": "ollama",
        "backend_ok": True,
        "backend_version": "0.9.0",
        "herd_version": "0.1.0",
        "cpu_count": 8,
        "cpu_percent": 10.0,
        "memory_total": 32 * GB,
        "memory_available": 20 * GB,
        "memory_pressure": "normal",
        "num_parallel": 2,
        "in_flight": 0,
        "models": ["tiny:1b"],
        "loaded_models": [{"name": "tiny:1b", "size": GB, "context_length": 4096}],
    }
    return base | kw


STATUS = {
    "nodes": [
        node("alpha", is_router=True),
        node("beta", memory_total=16 * GB),
        node("gamma", status="offline", models=["coder:1b"], loaded_models=[]),
    ],
    "queue": {"waiting": 0, "in_flight": 0},
    "counters": {"requests": 6},
    "events": [],
    "time": NOW,
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TraceStore]:
    s = TraceStore(f"sqlite:///{tmp_path / 'herd.db'}")
    s.write_batch(SAMPLE)
    yield s
    s.close()


@pytest.fixture
def fleet() -> StaticFleet:
    return StaticFleet(STATUS, settings={"Server": {"FLEET_PORT": 11435}})


@pytest.fixture
def service(store: TraceStore, fleet: StaticFleet) -> DashboardService:
    return DashboardService(store, fleet, clock=lambda: NOW)


@pytest.fixture
def client(service: DashboardService) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(build_dashboard_router(service))
    with TestClient(app) as c:
        yield c


def test_overview_trends_models_usage_apps(client: TestClient) -> None:
    o = client.get("/dashboard/api/overview", params={"hours": 24}).json()
    assert (o["hours"], o["requests"], o["errors"], o["completion_tokens"]) == (24, 6, 2, 123)
    trends = client.get("/dashboard/api/trends?hours=48").json()["trends"]
    assert len(trends) == 48 and sum(t["requests"] for t in trends) == 7  # "old" is 48 h ago
    models = client.get("/dashboard/api/models").json()["models"]
    assert [m["model"] for m in models] == ["tiny:1b", "coder:1b", "ghost:1b"]
    daily = client.get("/dashboard/api/models", params={"model": "tiny:1b", "days": 7}).json()
    assert sum(d["requests"] for d in daily["daily"]) == 5
    usage = client.get("/dashboard/api/usage").json()
    assert {r["node_id"] for r in usage["by_node_model"]} == {"alpha", "beta", "gamma"}
    apps = client.get("/dashboard/api/apps").json()["apps"]
    assert [a["tag"] for a in apps] == ["app-a", "app-b", None, "prod"]
    apps_daily = client.get("/dashboard/api/apps/daily?days=7").json()["apps"]
    assert sum(a["requests"] for a in apps_daily) == 6


def test_traces_list_and_detail(client: TestClient) -> None:
    page = client.get("/dashboard/api/traces", params={"tag": "app-a", "hours": 24}).json()
    assert [t["request_id"] for t in page["items"]] == ["a1", "a2"]
    errors = client.get("/dashboard/api/traces?status=error").json()
    assert [t["request_id"] for t in errors["items"]] == ["a3"]
    one = client.get("/dashboard/api/traces/a1").json()
    assert [c["node_id"] for c in one["candidates"]] == ["alpha", "beta"]
    assert one["candidates"][0]["winner"] is True
    missing = client.get("/dashboard/api/traces/nope")
    assert missing.status_code == 404 and "error" in missing.json()
    obs = client.get("/dashboard/api/latency?node=alpha").json()["observations"]
    assert [o["latency_s"] for o in obs] == [1.0]


@pytest.mark.parametrize(
    "url",
    [
        "/dashboard/api/trends?hours=0",
        "/dashboard/api/trends?hours=abc",
        "/dashboard/api/overview?hours=721",
        "/dashboard/api/apps/daily?days=91",
        "/dashboard/api/models?model=",
        "/dashboard/api/traces?status=bogus",
        "/dashboard/api/traces?limit=0",
        "/dashboard/api/traces?offset=-1",
        "/dashboard/api/benchmarks/notanumber",
        "/dashboard/events?interval=0",
    ],
)
def test_bad_parameters_get_422_json(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 422
    assert r.json()["detail"]


def test_benchmarks_save_list_detail(client: TestClient) -> None:
    run = {
        "name": "nightly",
        "started_at": NOW - 60,
        "finished_at": NOW,
        "params": {"concurrency": 8},
        "results": {"requests_per_s": 4.2, "per_node": {"alpha": {"requests": 30}}},
    }
    created = client.post("/dashboard/api/benchmarks", json=run)
    assert created.status_code == 201
    run_id = created.json()["id"]
    listed = client.get("/dashboard/api/benchmarks").json()["benchmarks"]
    assert [(b["id"], b["summary"]) for b in listed] == [(run_id, {"requests_per_s": 4.2})]
    detail = client.get(f"/dashboard/api/benchmarks/{run_id}").json()
    assert detail["results"]["per_node"]["alpha"]["requests"] == 30
    assert detail["duration_s"] == 60.0
    assert client.get("/dashboard/api/benchmarks/999").status_code == 404
    for bad in ({"results": 5}, {"started_at": "yesterday"}, {"surprise": 1}):
        r = client.post("/dashboard/api/benchmarks", json=bad)
        assert r.status_code == 400 and r.json()["error"], bad
    assert client.post("/dashboard/api/benchmarks", json=[1, 2]).status_code == 422


def test_health_flags_the_offline_node(client: TestClient) -> None:
    health = client.get("/dashboard/api/health").json()
    assert health["status"] == "warning"
    by_id = {c["id"]: c for c in health["checks"]}
    assert by_id["offline_nodes"]["severity"] == "warning"
    assert by_id["offline_nodes"]["details"]["nodes"] == ["gamma"]
    assert by_id["version_mismatch"]["severity"] == "ok"
    assert health["checks"][0]["id"] == "offline_nodes"  # worst first


def test_recommendations_are_cached(client: TestClient) -> None:
    first = client.get("/dashboard/api/recommendations").json()
    assert first["cached"] is False
    assert [n["node_id"] for n in first["nodes"]] == ["alpha", "beta"]
    alpha = first["nodes"][0]
    assert alpha["recommended"][0]["model"] == "tiny:1b"  # the fleet's most used model
    assert alpha["recommended"][0]["installed"] is True
    assert alpha["used_gb"] <= alpha["budget_gb"]
    assert client.get("/dashboard/api/recommendations").json()["cached"] is True
    assert client.get("/dashboard/api/recommendations?refresh=true").json()["cached"] is False


def test_settings_read_and_toggle(client: TestClient) -> None:
    s = client.get("/dashboard/api/settings").json()
    assert s["toggles"] == {"auto_pull": True, "vram_fallback": True}
    assert s["config"] == {"Server": {"FLEET_PORT": 11435}}
    assert [(n["node_id"], n["is_router"]) for n in s["nodes"]] == [
        ("alpha", True),
        ("beta", False),
        ("gamma", False),
    ]
    assert s["versions_consistent"] is True
    changed = client.post("/dashboard/api/settings", json={"auto_pull": False}).json()
    assert changed["toggles"] == {"auto_pull": False, "vram_fallback": True}
    assert client.post("/dashboard/api/settings", json={"bogus": True}).status_code == 422
    assert client.post("/dashboard/api/settings", json={"auto_pull": "yes"}).status_code == 422
    empty = client.post("/dashboard/api/settings", json={})
    assert empty.status_code == 400 and "error" in empty.json()


def test_pull_streams_ndjson_progress(client: TestClient, fleet: StaticFleet) -> None:
    r = client.post("/dashboard/api/pull", json={"model": "qwen3:8b", "node": "beta"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in r.text.splitlines()]
    assert events[-1] == {"status": "success", "node": "beta"}
    assert [e["completed"] for e in events[:-1]] == [0, 50, 100]
    failed = client.post("/dashboard/api/pull", json={"model": "qwen3:8b", "node": "zeta"})
    last = json.loads(failed.text.splitlines()[-1])
    assert last["status"] == "error" and "zeta" in last["error"]
    assert client.post("/dashboard/api/pull", json={"model": ""}).status_code == 422


def test_model_management_and_delete(client: TestClient) -> None:
    mm = client.get("/dashboard/api/model-management").json()
    alpha = next(n for n in mm["nodes"] if n["node_id"] == "alpha")
    tiny = alpha["models"][0]
    assert (tiny["name"], tiny["loaded"], tiny["requests"], tiny["size"]) == (
        "tiny:1b", True, 4, GB,
    )  # fmt: skip  # a1, a3, a6 today and "old" two days ago
    assert tiny["last_used"] == NOW - 100
    deleted = client.post("/dashboard/api/delete", json={"model": "tiny:1b", "node": "beta"})
    assert deleted.json() == {"deleted": ["beta"], "errors": {}}


def test_a_failing_fleet_is_a_503_json_error(store: TraceStore) -> None:
    class Down(StaticFleet):
        async def status(self) -> dict[str, Any]:
            raise TimeoutError("router did not answer")

    app = FastAPI()
    app.include_router(build_dashboard_router(DashboardService(store, Down())))
    with TestClient(app) as c:
        r = c.get("/dashboard/api/health")
    assert r.status_code == 503
    assert "router did not answer" in r.json()["error"]


def test_service_rejects_bad_arguments(service: DashboardService) -> None:
    with pytest.raises(BadRequest):
        service.traces(status="weird")
    with pytest.raises(BadRequest):
        service.model_daily("  ")
    with pytest.raises(BadRequest):
        service.trends(hours=0)


async def test_sse_stops_when_the_client_leaves(service: DashboardService) -> None:
    polls = 0

    async def disconnected() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3  # connected for the first frames, then gone

    frames = [f async for f in sse_events(service, disconnected, interval=0.01)]
    assert frames[0] == "retry: 10\n\n"
    fleet_frames = [f for f in frames if f.startswith("event: fleet")]
    assert fleet_frames
    data = json.loads(fleet_frames[0].split("data: ", 1)[1])
    assert [n["node_id"] for n in data["nodes"]] == ["alpha", "beta", "gamma"]
    assert data["overview"]["requests"] == 5  # the last hour


def test_sse_over_a_real_server(
    service: DashboardService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dashboard.api")
    app = FastAPI()
    app.include_router(build_dashboard_router(service))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            threading.Event().wait(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/dashboard/events?interval=0.05"
        frames = []
        with httpx.stream("GET", url, timeout=10) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    frames.append(json.loads(line[6:]))
                if len(frames) == 2:
                    break
        assert all(f["queue"] == {"waiting": 0, "in_flight": 0} for f in frames)
        while "dashboard events stream closed" not in caplog.text:  # server noticed
            assert time.monotonic() < deadline, "the event stream kept running"
            threading.Event().wait(0.01)
    finally:
        server.should_exit = True
        thread.join(10)
