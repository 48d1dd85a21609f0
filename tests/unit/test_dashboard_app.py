"""The Dash app's routing and wiring, its mount inside FastAPI next to the JSON API, and
the sync bridge Dash callbacks use to reach the service."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dashboard_data as data
import pytest
from dash import Dash, html
from dash_tree import text, walk
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Match

from dashboard.api import build_dashboard_router
from dashboard.app import DashboardMount, build_dash_app, mount_dashboard, route
from dashboard.bridge import SyncBridge
from dashboard.fleet import StaticFleet
from dashboard.service import DashboardService
from dashboard.views import all_views
from herd.traces.store import TraceStore

NOW = 1_700_013_600.0
TITLES = {
    "": "Fleet Overview",
    "trends": "Trends",
    "models": "Model Insights",
    "apps": "Apps",
    "benchmarks": "Benchmarks",
    "health": "Health",
    "recommendations": "Recommendations",
    "settings": "Settings",
    "traces": "Request trace",
}


@pytest.fixture
def fleet() -> StaticFleet:
    return StaticFleet(data.fleet_status(NOW), toggles={"auto_pull": True, "vram_fallback": False})


@pytest.fixture
def service(tmp_path: Path, fleet: StaticFleet) -> Iterator[DashboardService]:
    store = TraceStore(f"sqlite:///{tmp_path / 'herd.db'}")
    store.write_batch(data.traces(NOW))
    yield DashboardService(store, fleet, clock=lambda: NOW)
    store.close()


@pytest.fixture
def dash_app(service: DashboardService) -> Dash:
    return build_dash_app(service)


# --- routing and wiring -----------------------------------------------------------------------
def test_every_view_has_its_own_path_and_heading(dash_app: Dash) -> None:
    views = all_views()
    assert {v.slug: v.title for v in views}.keys() == TITLES.keys()
    for slug, heading in TITLES.items():
        page, nav = route(dash_app, views, f"/dashboard/{slug}", "")
        assert text(page.children[0]) == heading
        active = [link for link in nav if "active" in link.className]
        assert [link.href for link in active] == [f"/dashboard/{slug}"]


def test_unknown_paths_and_the_trace_query(dash_app: Dash) -> None:
    views = all_views()
    page, nav = route(dash_app, views, "/dashboard/nope", "")
    assert text(page.children[0]) == "Not found"
    assert not any("active" in link.className for link in nav)
    page, _ = route(dash_app, views, "/elsewhere", "")
    assert text(page.children[0]) == "Not found"
    page, _ = route(dash_app, views, "/dashboard/traces", "?id=win-1")
    (box,) = [c for c in walk(page) if getattr(c, "id", None) == "trace-id"]
    assert box.value == "win-1"
    page, _ = route(dash_app, views, "/dashboard/models", "?model=tiny%3A1b")
    (store,) = [c for c in walk(page) if getattr(c, "id", None) == "models-selected"]
    assert store.data == "tiny:1b"


def _ids(tree: Any) -> list[str]:
    return [c.id for c in walk(tree) if isinstance(getattr(c, "id", None), str)]


def test_layout_ids_are_unique_and_every_callback_targets_one(dash_app: Dash) -> None:
    full = dash_app.validation_layout
    assert isinstance(full, html.Div)
    ids = _ids(full.children[1:])  # the nine views (the shell repeats in the real layout)
    assert len(ids) == len(set(ids)), "duplicate component ids across views"
    known = set(_ids(full))
    for key, spec in dash_app.callback_map.items():
        deps = [*spec["inputs"], *spec["state"]]
        outputs = [o.strip(".") for o in key.split("...")]
        for dep in deps:
            if not dep["id"].startswith("{"):  # pattern-matching ids live in rendered rows
                assert dep["id"] in known, f"callback input {dep['id']} is on no page"
        for out in outputs:
            assert out.rsplit(".", 1)[0] in known, f"callback output {out} is on no page"


def test_the_mutating_outputs_the_guard_knows_are_real_callbacks(dash_app: Dash) -> None:
    """The ingress's guard asks for the admin token by callback output: a renamed
    output must fail here, not silently open a mutation."""
    from dashboard.views import mutating_outputs
    from herd.guard.access import dash_callback_access

    outputs = {o.strip(".") for key in dash_app.callback_map for o in key.split("...")}
    assert mutating_outputs() == {"settings-saved.children", "rec-pull-message.children"}
    assert mutating_outputs() <= outputs
    for out in mutating_outputs():
        body = json.dumps({"output": out}).encode()
        assert dash_callback_access(body, mutating_outputs()) == "admin"


# --- the mount inside FastAPI -----------------------------------------------------------------
def _matching(app: FastAPI, path: str) -> Any:
    scope = {"type": "http", "path": path, "root_path": "", "method": "GET"}
    return next(r for r in app.router.routes if r.matches(scope)[0] is Match.FULL)


@pytest.mark.parametrize("dashboard_first", [True, False])
def test_mount_leaves_the_json_api_and_events_to_their_router(
    service: DashboardService, dashboard_first: bool
) -> None:
    app = FastAPI()
    if dashboard_first:
        mount_dashboard(app, service)
        app.include_router(build_dashboard_router(service))
    else:
        app.include_router(build_dashboard_router(service))
        mount_dashboard(app, service)
    assert not isinstance(_matching(app, "/dashboard/events"), DashboardMount)
    assert not isinstance(_matching(app, "/dashboard/api/overview"), DashboardMount)
    assert isinstance(_matching(app, "/dashboard/trends"), DashboardMount)
    assert isinstance(_matching(app, "/dashboard/apis"), DashboardMount)  # only /api itself
    with TestClient(app) as client:
        overview = client.get("/dashboard/api/overview", params={"hours": 24})
        assert overview.status_code == 200
        assert overview.json()["requests"] == data.RECENT_COUNT
        assert client.get("/dashboard/api/nope").status_code == 404  # not a Dash page
        page = client.get("/dashboard/")
        assert page.status_code == 200
        assert "<title>herd dashboard</title>" in page.text
        assert "/dashboard/_dash-component-suites/" in page.text
        deep = client.get("/dashboard/traces", params={"id": "win-1"})
        assert deep.status_code == 200 and "herd dashboard" in deep.text
        bare = client.get("/dashboard", follow_redirects=False)
        assert bare.status_code in (307, 308) and bare.headers["location"].endswith("/dashboard/")
        assert client.get("/dashboard/assets/herd.css").status_code == 200
        layout = client.get("/dashboard/_dash-layout")
        assert layout.status_code == 200 and '"id":"url"' in layout.text.replace(" ", "")


def _callback_key(app: Dash, output: str) -> str:
    return next(k for k in app.callback_map if output in k)


def test_a_callback_over_http_runs_async_service_calls_on_the_server_loop(
    service: DashboardService, fleet: StaticFleet
) -> None:
    app = FastAPI()
    app.include_router(build_dashboard_router(service))
    dash_app = mount_dashboard(app, service)
    body = {
        "output": _callback_key(dash_app, "settings-saved.children"),
        "outputs": {"id": "settings-saved", "property": "children"},
        "inputs": [{"id": "settings-toggles", "property": "value", "value": ["vram_fallback"]}],
        "changedPropIds": ["settings-toggles.value"],
        "state": [],
    }
    with TestClient(app) as client:
        reply = client.post("/dashboard/_dash-update-component", json=body)
        assert reply.status_code == 200, reply.text
        shown = reply.json()["response"]["settings-saved"]["children"]
        assert shown == "Saved: auto_pull = off, vram_fallback = on"
        assert client.get("/dashboard/api/settings").json()["toggles"] == {
            "auto_pull": False,
            "vram_fallback": True,
        }
    assert json.loads(json.dumps(fleet._toggles)) == {"auto_pull": False, "vram_fallback": True}


def test_a_trends_callback_over_http_shows_the_stored_count(service: DashboardService) -> None:
    app = FastAPI()
    dash_app = mount_dashboard(app, service)
    key = _callback_key(dash_app, "trends-requests.children")
    outputs = [
        {"id": o.strip(".").rsplit(".", 1)[0], "property": o.strip(".").rsplit(".", 1)[1]}
        for o in key.split("...")
    ]
    body = {
        "output": key,
        "outputs": outputs,
        "inputs": [{"id": "trends-range", "property": "value", "value": 24}],
        "changedPropIds": ["trends-range.value"],
        "state": [],
    }
    with TestClient(app) as client:
        reply = client.post("/dashboard/_dash-update-component", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["response"]["trends-requests"]["children"] == str(data.RECENT_COUNT)


# --- the sync bridge --------------------------------------------------------------------------
class _Service:
    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []

    def plain(self, x: int) -> int:
        return x + 1

    async def coro(self, x: int) -> int:
        self.loops.append(asyncio.get_running_loop())
        return x * 2

    async def boom(self) -> None:
        raise ValueError("bad")


def test_bridge_passes_sync_results_and_runs_coroutines_on_a_private_loop() -> None:
    svc = _Service()
    bridge = SyncBridge(svc)
    try:
        assert bridge.call("plain", 1) == 2
        assert bridge.call("coro", 4) == 8
        assert bridge.call("coro", x=5) == 10
        assert svc.loops[0] is svc.loops[1]  # one loop for loop-bound resources
        with pytest.raises(ValueError, match="bad"):
            bridge.call("boom")
    finally:
        bridge.close()
    assert svc.loops[0].is_closed()


def test_bridge_uses_the_attached_server_loop_from_worker_threads() -> None:
    svc = _Service()
    bridge = SyncBridge(svc)
    results: list[int] = []

    async def server() -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        bridge.attach(loop)
        worker = threading.Thread(target=lambda: results.append(bridge.call("coro", 21)))
        worker.start()
        await asyncio.to_thread(worker.join, 10)
        with pytest.raises(RuntimeError, match="block the event loop"):
            bridge.call("coro", 1)
        return loop

    loop = asyncio.run(server())
    assert results == [42]
    assert svc.loops == [loop]
    # the attached loop is gone: the bridge falls back to its own
    assert bridge.call("coro", 2) == 4
    assert svc.loops[-1] is not loop
    bridge.close()
