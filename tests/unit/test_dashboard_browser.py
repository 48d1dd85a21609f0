"""The dashboard in real headless Chromium, without Ray.

The FastAPI app (JSON API router + the mounted Dash app) runs under uvicorn over a
SQLite store filled through a real ``TraceWriter`` with ``tests/dashboard_data.py``'s
traces, and a ``StaticFleet``. Every view is opened in Debian's Chromium and must show
numbers worked out from that data; a screenshot of each lands in the test's tmp dir and
in ``.artifacts/dashboard/unit/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dashboard_data as data
import httpx
import pytest
from dashboard_browser import (
    browser_fixtures,
    expect_contains,
    expect_text,
    open_view,
    screenshot,
    serve,
)
from fastapi import FastAPI
from playwright.sync_api import expect

from dashboard.api import build_dashboard_router
from dashboard.app import mount_dashboard
from dashboard.fleet import StaticFleet
from dashboard.service import DashboardService
from dashboard.views.common import fmt_score
from herd.traces.store import TraceStore
from herd.traces.writer import TraceWriter


@dataclass
class Site:
    base: str
    service: DashboardService
    fleet: StaticFleet
    benchmark_id: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("dashboard")
    now = time.time()
    store = TraceStore(f"sqlite:///{tmp / 'herd.db'}")
    writer = TraceWriter(store, tmp / "spool", max_delay=0.05)
    writer.submit(data.traces(now))
    assert writer.flush(timeout=30)
    fleet = StaticFleet(
        data.fleet_status(now),
        settings={"Server": {"FLEET_PORT": 11435}, "Heartbeats": {"FLEET_HEARTBEAT_TIMEOUT": 15}},
        toggles={"auto_pull": True, "vram_fallback": False},
    )
    service = DashboardService(store, fleet)
    run_id = service.add_benchmark(data.benchmark_run(now))["id"]
    app = FastAPI()
    mount_dashboard(app, service)  # before the API router: the API must still be reachable
    app.include_router(build_dashboard_router(service))
    try:
        with serve(app) as base:
            yield Site(base, service, fleet, run_id)
    finally:
        writer.close()
        store.close()


browser, page, shots = browser_fixtures(after="site", artifacts="unit")


def test_the_json_api_and_events_stay_reachable_beside_the_dash_app(site: Site) -> None:
    overview = httpx.get(f"{site.base}/dashboard/api/overview", timeout=10)
    assert overview.status_code == 200
    assert overview.json()["requests"] == data.RECENT_COUNT
    assert httpx.get(f"{site.base}/dashboard/api/traces/win-1", timeout=10).json()["node_id"] == (
        "alpha"
    )
    with httpx.stream("GET", f"{site.base}/dashboard/events?interval=0.2", timeout=10) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        for line in events.iter_lines():
            if line.startswith("event:"):
                assert line == "event: fleet"
                break
    html = httpx.get(f"{site.base}/dashboard/", timeout=10)
    assert html.status_code == 200 and "herd dashboard" in html.text


def test_fleet_overview(site: Site, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, site.base, "", "Fleet Overview")
    expect_text(page, "overview-nodes-online", "2 / 3")
    expect_text(page, "overview-in-flight", "1")
    expect_text(page, "overview-waiting", "2")
    expect_text(page, "overview-requests-1h", "5")
    expect_text(page, "overview-latency-1h", "400 ms")
    expect_text(page, "node-alpha-cpu", "12.5%")
    expect_text(page, "node-alpha-memory", "24.0 GB / 64.0 GB")
    expect_text(page, "node-beta-loaded", "tiny:1b")
    expect_contains(page, "node-gamma", "offline")
    expect(page.locator("#overview-resources .main-svg").first).to_be_visible()
    screenshot(page, "1-overview", *shots)


def test_trends_and_the_range_selector(site: Site, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, site.base, "", "Fleet Overview")
    page.locator("#nav-trends").click()  # client-side navigation
    expect(page.locator("main h2")).to_have_text("Trends")
    assert page.url.endswith("/dashboard/trends")
    expect_text(page, "trends-requests", str(data.RECENT_COUNT))
    expect_text(page, "trends-prompt-tokens", "65")
    expect_text(page, "trends-completion-tokens", "180")
    screenshot(page, "2-trends", *shots)
    page.get_by_label("48 h").check()
    expect_text(page, "trends-requests", str(data.RECENT_COUNT + 1))  # old-1, 30 h ago


def test_model_insights_and_a_row_click(site: Site, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, site.base, "models", "Model Insights")
    expect_text(page, "models-row-gemma3:270m-requests", "5")
    expect_text(page, "models-row-gemma3:270m-avg_latency_s", "400 ms")
    expect_text(page, "models-row-tiny:1b-avg_latency_s", "2.00 s")  # ok ones: 1.5, 2.5
    expect(page.locator("#models-tokens-doughnut")).to_contain_text("61.2%")  # 150 of 245
    expect(page.locator("#models-daily-title")).to_have_text("Daily breakdown: gemma3:270m")
    page.get_by_test_id("models-row-tiny:1b").click()
    expect(page.locator("#models-daily-title")).to_have_text("Daily breakdown: tiny:1b")
    screenshot(page, "3-models", *shots)


def test_apps(site: Site, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, site.base, "apps", "Apps")
    expect_text(page, "apps-row-app-x-requests", "5")
    expect_text(page, "apps-row-app-x-avg_latency_s", "400 ms")
    expect_text(page, "apps-row-app-y-error_rate", "33.3%")
    expect_text(page, "apps-row-app-y-completion_tokens", "80")
    expect(page.locator("#apps-daily-chart")).to_contain_text("app-x")
    screenshot(page, "4-apps", *shots)


def test_benchmarks(site: Site, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, site.base, "benchmarks", "Benchmarks")
    run = site.benchmark_id
    expect_text(page, f"benchmarks-row-{run}-tokens_per_s", "123.4 tok/s")
    expect_text(page, f"benchmarks-row-{run}-latency_p95_s", "900 ms")
    expect_text(page, "benchmarks-node-alpha-tokens_per_s", "80.25")
    expect_text(page, "benchmarks-model-gemma3:270m-requests", "150")
    screenshot(page, "5-benchmarks", *shots)


def test_health(site: Site, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, site.base, "health", "Health")
    expect_text(page, "health-check-offline_nodes-severity", "warning")
    expect_contains(page, "health-check-offline_nodes-title", "1 node(s) offline")
    expect_contains(page, "health-check-offline_nodes-action", "What to do")
    checks = httpx.get(f"{site.base}/dashboard/api/health", timeout=10).json()["checks"]
    expect(page.locator("#health-checks > .check")).to_have_count(len(checks))
    screenshot(page, "6-health", *shots)


def test_recommendations_pull_from_the_page(
    site: Site, page: Any, shots: tuple[Path, Path]
) -> None:
    open_view(page, site.base, "recommendations", "Recommendations")
    expect_contains(page, "rec-node-alpha-hardware", "64.0 GB RAM")
    screenshot(page, "7-recommendations", *shots)
    box = page.locator(".picks input[type=checkbox]").first
    model = box.get_attribute("value")
    assert model
    box.check()
    page.locator("#rec-pull").click()
    progress = page.locator("[data-testid$='/" + model + "-progress']").first
    expect(progress).to_have_text("success")
    node = progress.get_attribute("data-testid").removeprefix("rec-pull-").split("/")[0]
    pulled = next(n for n in site.fleet._status["nodes"] if n["node_id"] == node)
    assert model in pulled["models"]


def test_settings_toggle_really_changes_the_fleet(
    site: Site, page: Any, shots: tuple[Path, Path]
) -> None:
    open_view(page, site.base, "settings", "Settings")
    expect_text(page, "settings-node-alpha-node", "alpha Router")
    expect_text(page, "settings-node-gamma-herd_version", "0.0.9")
    expect_text(page, "settings-config-Server-FLEET_PORT-value", "11435")
    toggle = page.locator("#settings-toggles input[value=vram_fallback]")
    expect(toggle).not_to_be_checked()
    screenshot(page, "8-settings", *shots)
    toggle.check()
    expect_text(page, "settings-saved", "Saved: vram_fallback = on")
    after = httpx.get(f"{site.base}/dashboard/api/settings", timeout=10).json()["toggles"]
    assert after == {"auto_pull": True, "vram_fallback": True}
    toggle.uncheck()
    expect_text(page, "settings-saved", "Saved: vram_fallback = off")


def test_trace_shows_why_the_node_won(site: Site, page: Any, shots: tuple[Path, Path]) -> None:
    open_view(page, site.base, "traces", "Request trace", query="?id=win-1")
    expect_text(page, "trace-winner", "alpha")
    expect_text(page, "trace-score", fmt_score(data.WIN_SCORE))
    expect_text(page, "trace-candidate-alpha-total", fmt_score(data.WIN_SCORE))
    expect_text(page, "trace-candidate-beta-total", fmt_score(data.BETA_SCORE))
    expect_text(page, "trace-candidate-beta-memory_fit", "25.0")
    expect_text(page, "trace-eliminated-gamma", "gamma: node is offline")
    expect(page.locator("#trace-scores-chart")).to_contain_text("memory_fit")
    screenshot(page, "9-trace", *shots)
    page.get_by_test_id("trace-recent-fail-1-link").get_by_role("link").click()
    expect_text(page, "trace-id", "fail-1")
    expect_contains(page, "trace-error", "backend failed")
