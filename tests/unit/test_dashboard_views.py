"""The dashboard views' callbacks and figure builders, called directly with a real
``DashboardService`` over a SQLite ``TraceStore`` holding ``tests/dashboard_data.py``'s
traces and a ``StaticFleet``. Every number checked is worked out from that data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from statistics import mean
from typing import Any

import dashboard_data as data
import pytest
from dash import no_update
from dash_tree import by_testid, cell, rows, text

from dashboard.bridge import SyncBridge
from dashboard.fleet import StaticFleet
from dashboard.service import DashboardService
from dashboard.views import (
    apps,
    benchmarks,
    health,
    models,
    overview,
    recommendations,
    settings,
    trace,
    trends,
)
from dashboard.views.common import fmt_int, fmt_rate, fmt_score, fmt_seconds
from dashboard.views.pulls import PullJobs
from herd.traces.store import TraceStore

NOW = 1_700_013_600.0  # 2023-11-15 02:00 UTC


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def fleet() -> StaticFleet:
    return StaticFleet(
        data.fleet_status(NOW),
        settings={"Server": {"FLEET_PORT": 11435}, "Heartbeats": {"FLEET_HEARTBEAT_TIMEOUT": 15}},
        toggles={"auto_pull": True, "vram_fallback": False},
    )


@pytest.fixture
def service(tmp_path: Path, fleet: StaticFleet) -> Iterator[DashboardService]:
    store = TraceStore(f"sqlite:///{tmp_path / 'herd.db'}")
    store.write_batch(data.traces(NOW))
    svc = DashboardService(store, fleet, clock=lambda: NOW)
    svc.add_benchmark(data.benchmark_run(NOW))
    yield svc
    store.close()


@pytest.fixture
def bridge(service: DashboardService) -> Iterator[SyncBridge]:
    b = SyncBridge(service)
    yield b
    b.close()


# --- 1. Fleet Overview ----------------------------------------------------------------------
def test_overview_shows_live_nodes_queues_and_the_last_hour(bridge: SyncBridge) -> None:
    out = overview.update(bridge)
    stats = dict(zip(overview.STAT_IDS, out[: len(overview.STAT_IDS)], strict=True))
    cards, resources, queues, error = out[len(overview.STAT_IDS) :]
    assert stats["overview-nodes-online"] == "2 / 3"
    assert stats["overview-in-flight"] == "1"
    assert stats["overview-waiting"] == "2"
    assert stats["overview-requests-1h"] == "5"  # the five win-* requests
    assert stats["overview-latency-1h"] == "400 ms"
    speeds = [20 / (lat - 0.05) for lat in data.WIN_LATENCIES]
    assert stats["overview-tokens-per-s-1h"] == fmt_rate(mean(speeds))
    assert cell(cards, "node-alpha-cpu") == "12.5%"
    assert cell(cards, "node-alpha-memory") == "24.0 GB / 64.0 GB"
    assert cell(cards, "node-alpha-queue") == "1 / 4"
    assert cell(cards, "node-beta-loaded") == "tiny:1b"
    assert cell(cards, "node-gamma-loaded") == "none"
    assert "offline" in text(by_testid(cards, "node-gamma"))
    assert error is None
    cpu, memory = resources.data
    assert list(cpu.x) == ["alpha", "beta", "gamma"]
    assert list(cpu.y) == [12.5, 55.0, 10.0]
    assert memory.y[0] == pytest.approx(37.5)
    gemma = next(t for t in queues.data if t.name == "gemma3:270m")
    assert list(gemma.y) == [1, 0, 0]


def test_overview_reports_an_unreachable_fleet_instead_of_failing(
    bridge: SyncBridge, fleet: StaticFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> dict[str, Any]:
        raise ConnectionError("router unavailable")

    monkeypatch.setattr(fleet, "status", down)
    out = overview.update(bridge)
    assert out[0] == "—"
    assert "router unavailable" in text(out[-1])


def test_overview_figures_without_nodes_say_so() -> None:
    for fig in (overview.resources_figure([]), overview.queue_figure([])):
        assert fig.layout.annotations[0].text == "No nodes"


# --- 2. Trends ------------------------------------------------------------------------------
def test_trends_totals_and_hourly_charts_follow_the_range(bridge: SyncBridge) -> None:
    out = trends.update(bridge, 24)
    requests, _error_rate, latency, prompt, completion, by_hour, lat_fig, tok_fig = out
    assert requests == fmt_int(data.RECENT_COUNT)
    assert prompt == "65"  # 5 x 10 + 2 x 5 + 5
    assert completion == "180"  # 5 x 20 + 2 x 40
    ok, errors = by_hour.data
    assert sum(ok.y) + sum(errors.y) == data.RECENT_COUNT
    assert len(ok.x) == 24
    assert sum(tok_fig.data[0].y) == 65
    assert sum(tok_fig.data[1].y) == 180
    assert any(v is not None for v in lat_fig.data[0].y)
    assert latency != "—"
    assert trends.update(bridge, 48)[0] == fmt_int(data.RECENT_COUNT + 1)  # old-1 joins


def test_trends_figures_handle_no_rows() -> None:
    for build in (trends.requests_figure, trends.latency_figure, trends.tokens_figure):
        assert build([]).layout.annotations[0].text == "No data yet"


# --- 3. Model Insights ----------------------------------------------------------------------
def test_models_table_charts_and_doughnut(bridge: SyncBridge) -> None:
    latency_fig, speed_fig, doughnut, table = models.update(bridge, 24)
    assert rows(table, models.ROW) == ["gemma3:270m", "tiny:1b", "ghost:70b"]
    assert cell(table, "models-row-gemma3:270m-requests") == "5"
    assert cell(table, "models-row-gemma3:270m-avg_latency_s") == "400 ms"
    assert cell(table, "models-row-tiny:1b-requests") == "3"
    assert cell(table, "models-row-tiny:1b-nodes") == "beta"
    assert list(latency_fig.data[0].x) == ["gemma3:270m", "tiny:1b", "ghost:70b"]
    assert latency_fig.data[0].y[0] == pytest.approx(0.4)
    assert list(doughnut.data[0].labels) == ["gemma3:270m", "tiny:1b"]
    assert list(doughnut.data[0].values) == [150, 95]  # 5 x 30; 2 x 45 + 5
    assert doughnut.data[0].hole == pytest.approx(0.55)
    assert speed_fig.data[0].y[0] > 0


def test_clicking_a_model_row_chooses_its_daily_breakdown() -> None:
    ids = [{"type": models.ROW, "model": "gemma3:270m"}, {"type": models.ROW, "model": "tiny:1b"}]
    assert models.chosen_model(None, False, ids, None) == "gemma3:270m"  # busiest by default
    assert models.chosen_model(ids[1], True, ids, "gemma3:270m") == "tiny:1b"
    assert models.chosen_model(ids[1], False, ids, "tiny:1b") == "tiny:1b"  # re-render
    assert models.chosen_model(None, False, [], None) is None


def test_model_daily_breakdown(bridge: SyncBridge) -> None:
    title, fig, table = models.daily(bridge, "tiny:1b")
    assert title == "Daily breakdown: tiny:1b"
    days = rows(table, "models-daily")
    assert days[0] == "2023-11-08" and days[-1] == "2023-11-15"  # 7 x 24 h, zero-filled
    assert sum(fig.data[0].y) == 3
    assert models.daily(bridge, None)[1].layout.annotations[0].text == "Click a model"


# --- 4. Apps ----------------------------------------------------------------------------------
def test_apps_per_tag_stats_and_daily_lines(bridge: SyncBridge) -> None:
    table, volume, latency, tokens, errors, daily = apps.update(bridge, 24)
    assert rows(table, "apps-row")[:2] == ["app-x", "app-y"]
    assert cell(table, "apps-row-app-x-requests") == "5"
    assert cell(table, "apps-row-app-x-avg_latency_s") == "400 ms"
    assert cell(table, "apps-row-app-y-errors") == "1"
    assert cell(table, "apps-row-app-y-error_rate") == "33.3%"
    assert cell(table, f"apps-row-{apps.UNTAGGED}-requests") == "1"  # ghost-1
    assert dict(zip(volume.data[0].x, volume.data[0].y, strict=True))["app-x"] == 5
    assert sum(tokens.data[1].y) == 180
    assert {t.name for t in daily.data} == {"app-x", "app-y"}
    assert latency.data[0].y[0] == pytest.approx(0.4)
    assert errors.data[0].y[1] == pytest.approx(1 / 3, abs=1e-3)


# --- 5. Benchmarks ----------------------------------------------------------------------------
def test_benchmarks_runs_capacity_and_breakdowns(bridge: SyncBridge) -> None:
    table, capacity, throughput, percentiles, options, chosen = benchmarks.update(bridge, None)
    run_id = options[0]["value"]
    assert chosen == run_id
    assert cell(table, f"benchmarks-row-{run_id}-tokens_per_s") == "123.4 tok/s"
    assert cell(table, f"benchmarks-row-{run_id}-latency_p99_s") == "1.40 s"
    assert list(capacity.data[0].y) == [123.4]
    assert list(throughput.data[0].y) == [123.4]
    assert [t.y[0] for t in percentiles.data] == [0.4, 0.9, 1.4]
    model_fig, model_table, node_fig, node_table = benchmarks.breakdown(bridge, run_id)
    assert list(node_fig.data[0].x) == ["alpha", "beta"]
    assert list(node_fig.data[0].y) == [80.25, 43.15]
    assert cell(model_table, "benchmarks-model-gemma3:270m-tokens_per_s") == "98.5"
    assert cell(node_table, "benchmarks-node-beta-requests") == "80"
    assert list(model_fig.data[0].y) == [98.5]


def test_benchmarks_without_runs(tmp_path: Path, fleet: StaticFleet) -> None:
    store = TraceStore(f"sqlite:///{tmp_path / 'empty.db'}")
    bridge = SyncBridge(DashboardService(store, fleet, clock=lambda: NOW))
    try:
        out = benchmarks.update(bridge, 7)
        assert out[4] == [] and out[5] is None
        assert out[1].layout.annotations[0].text == "No benchmark runs yet"
        assert (
            benchmarks.breakdown(bridge, None)[0].layout.annotations[0].text.startswith("Per model")
        )
    finally:
        bridge.close()
        store.close()


def test_breakdown_picks_the_speed_it_has() -> None:
    assert benchmarks.speed_key({"a": {"requests": 3}}) == "requests"
    assert benchmarks.speed_key({"a": {"requests_per_s": 1.0, "tokens_per_s": 2.0}}) == (
        "tokens_per_s"
    )
    assert benchmarks.speed_key({"a": {"note": "x"}}) is None


# --- 6. Health --------------------------------------------------------------------------------
def test_health_lists_every_check_with_explanation_and_action(
    bridge: SyncBridge, service: DashboardService
) -> None:
    status, checked_at, cards = health.update(bridge)
    report = bridge.call("health")
    assert text(status) == report["status"]
    assert "2023-11-15 02:00:00" in checked_at
    assert len(cards) == len(report["checks"])
    offline = by_testid(cards, "health-check-offline_nodes")
    assert text(by_testid(offline, "health-check-offline_nodes-severity")) == "warning"
    assert "gamma" in text(offline)
    assert text(by_testid(offline, "health-check-offline_nodes-action")).startswith("What to do")
    for check in report["checks"]:
        card = by_testid(cards, f"health-check-{check['id']}")
        assert check["explanation"] in text(card)
    order = [health.SEVERITY_ORDER[c["severity"]] for c in report["checks"]]
    shown = [
        health.SEVERITY_ORDER[text(by_testid(c, f"{getattr(c, 'data-testid')}-severity"))]
        for c in cards
    ]
    assert shown == sorted(order)


# --- 7. Recommendations -----------------------------------------------------------------------
def test_recommendations_cards_and_pulling_from_the_page(
    bridge: SyncBridge, fleet: StaticFleet
) -> None:
    cards, generated = recommendations.update(bridge, refresh=True)
    report = bridge.call("recommendations")
    assert "2023-11-15 02:00:00" in generated
    online = [n["node_id"] for n in report["nodes"]]
    for nid in online:
        assert "RAM" in cell(cards, f"rec-node-{nid}-hardware")
    pickable = [
        (n["node_id"], r["model"])
        for n in report["nodes"]
        for r in n["recommended"]
        if not r["installed"]
    ]
    assert pickable, "the sample fleet should have something to pull"
    node_id, model = pickable[0]
    picks = recommendations.selected([[model], []], [{"node": node_id}, {"node": "other"}])
    assert picks == [(node_id, model)]
    jobs = PullJobs(bridge)
    assert recommendations.start_pulls(jobs, []) == "Tick the models to pull first."
    assert recommendations.start_pulls(jobs, picks) == f"Pulling {model} on {node_id}"
    jobs.wait(timeout=10)
    status = recommendations.pull_status(jobs)
    assert cell(status, f"rec-pull-{node_id}/{model}-progress") == "success"
    pulled = next(n for n in fleet._status["nodes"] if n["node_id"] == node_id)
    assert model in pulled["models"]


def test_a_failed_pull_shows_its_error(bridge: SyncBridge) -> None:
    jobs = PullJobs(bridge)
    jobs.start("nowhere", "tiny:1b")
    jobs.wait(timeout=10)
    (entry,) = jobs.snapshot()
    assert entry["done"] and entry["status"] == "error"
    assert "nowhere" in entry["error"]


# --- 8. Settings ------------------------------------------------------------------------------
def test_settings_load_toggles_config_and_router_badge(bridge: SyncBridge) -> None:
    toggles, versions, nodes, config = settings.load(bridge)
    assert toggles == ["auto_pull"]
    assert "same versions" in text(versions)
    assert cell(nodes, "settings-node-alpha-node") == "alpha Router"
    assert cell(nodes, "settings-node-beta-node") == "beta"
    assert cell(nodes, "settings-node-gamma-herd_version") == "0.0.9"
    assert cell(config, "settings-config-Server-FLEET_PORT-value") == "11435"
    assert [text(group.children[0]) for group in config] == ["Server", "Heartbeats"]


def test_settings_toggles_really_change_the_fleet(
    bridge: SyncBridge, fleet: StaticFleet, service: DashboardService
) -> None:
    assert settings.apply(bridge, ["auto_pull"]) is no_update  # what the page loaded
    saved = settings.apply(bridge, ["auto_pull", "vram_fallback"])
    assert saved == "Saved: vram_fallback = on"
    assert fleet._toggles == {"auto_pull": True, "vram_fallback": True}
    assert settings.apply(bridge, []) == "Saved: auto_pull = off, vram_fallback = off"
    assert bridge.call("settings")["toggles"] == {"auto_pull": False, "vram_fallback": False}


def test_settings_changes_are_only_the_differences() -> None:
    current = {"auto_pull": True, "vram_fallback": False}
    assert settings.changes(["auto_pull"], current) == {}
    assert settings.changes(None, current) == {"auto_pull": False}
    assert settings.changes(["vram_fallback"], current) == {
        "auto_pull": False,
        "vram_fallback": True,
    }


# --- 9. Trace ---------------------------------------------------------------------------------
def test_trace_explains_why_the_node_won(bridge: SyncBridge) -> None:
    summary, chart, eliminated, candidates, recent = trace.update(bridge, "win-1", "all")
    assert cell(summary, "trace-winner") == "alpha"
    assert cell(summary, "trace-score") == fmt_score(data.WIN_SCORE)
    assert cell(summary, "trace-latency") == fmt_seconds(data.WIN_LATENCIES[0])
    assert cell(summary, "trace-tags") == "app-x"
    assert rows(candidates, "trace-candidate") == ["alpha", "beta"]
    assert cell(candidates, "trace-candidate-alpha-winner") == "winner"
    assert cell(candidates, "trace-candidate-beta-total") == fmt_score(data.BETA_SCORE)
    assert cell(candidates, "trace-candidate-beta-queue_depth") == "-8.8"
    assert cell(eliminated, "trace-eliminated-gamma") == "gamma: node is offline"
    by_signal = {t.name: list(t.x) for t in chart.data}
    assert by_signal["memory_fit"] == [40.0, 25.0]
    assert list(chart.data[0].y) == ["★ alpha", "beta"]
    assert len(rows(recent, "trace-recent")) == data.RECENT_COUNT + 1


def test_trace_of_a_rejected_request_and_unknown_ids(bridge: SyncBridge) -> None:
    summary, chart, eliminated, candidates, _ = trace.update(bridge, "ghost-1", None)
    assert "No data yet" in text(candidates)
    assert cell(summary, "trace-winner") == "no node"
    assert "not found" in cell(summary, "trace-error")
    assert chart.layout.annotations[0].text == "No candidate was scored"
    assert "model not on node" in cell(eliminated, "trace-eliminated-beta")
    missing = trace.update(bridge, "nope", "all")
    assert text(missing[0]) == "No trace for request 'nope'."


def test_trace_defaults_to_the_newest_and_filters_by_status(bridge: SyncBridge) -> None:
    summary, *_, recent = trace.update(bridge, "", "error")
    assert rows(recent, "trace-recent") == ["fail-1"]
    assert cell(summary, "trace-id") == "fail-1"
    newest = trace.update(bridge, None, "all")[0]
    assert cell(newest, "trace-id") == "win-1"
