"""dashboard.queries / queries_traces on a real SQLite file and a real PostgreSQL server,
over a small hand-made set of traces whose every number is worked out below."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard import queries as q
from dashboard import queries_traces as qt
from herd.traces.records import TraceRecord
from herd.traces.store import TraceStore

NOW = 1_700_013_600.0  # 2023-11-15 02:00 UTC, an hour boundary
DAY = 86400.0


def rec(request_id: str, ago: float, **kw: Any) -> TraceRecord:
    kw.setdefault("requested_model", kw.get("served_model") or "tiny:1b")
    return TraceRecord(request_id=request_id, time=NOW - ago, **kw)


SAMPLE = [
    rec(
        "a1", 100, served_model="tiny:1b", node_id="alpha", score=70.0,
        breakdown={"thermal": 50.0, "memory": 20.0},
        candidates=(
            {"node_id": "beta", "total": 50.0, "breakdown": {"thermal": 30.0, "memory": 20.0}},
            {"node_id": "alpha", "total": 70.0, "breakdown": {"thermal": 50.0, "memory": 20.0}},
        ),
        eliminated={"gamma": "model not on node"},
        latency_s=1.0, ttft_s=0.2, prompt_tokens=10, completion_tokens=40, tags=("app-a",),
        client="my-app", dialect="openai", stream=True, finish_reason="stop",
    ),  # tokens/s 40 / 0.8 = 50
    rec(
        "a2", 200, served_model="tiny:1b", node_id="beta", latency_s=3.0, ttft_s=1.0,
        prompt_tokens=20, completion_tokens=20, tags=("app-a", "prod"),
    ),  # tokens/s 10
    rec(
        "a3", 3700, served_model="tiny:1b", node_id="alpha", status="error", http_status=502,
        latency_s=0.5, prompt_tokens=5, error="backend timeout", retries=1, attempts=2,
        tags=("app-b",),
    ),
    rec(
        "a4", 300, requested_model="big:70b", served_model="coder:1b", node_id="gamma",
        fallback_used=True, latency_s=2.0, ttft_s=0.5, load_s=3.0, prompt_tokens=30,
        completion_tokens=60,
    ),  # tokens/s 40
    rec("a5", 400, requested_model="ghost:1b", status="rejected", http_status=404,
        latency_s=0.01, attempts=0, error="model 'ghost:1b' not found"),
    rec(
        "a6", 500, served_model="tiny:1b", node_id="alpha", status="disconnected",
        http_status=499, latency_s=0.3, prompt_tokens=7, completion_tokens=3, tags=("app-b",),
    ),
    rec("old", 2 * DAY, served_model="tiny:1b", node_id="alpha", latency_s=9.0,
        completion_tokens=9, tags=("app-a",)),
]  # fmt: skip

SINCE_24H = NOW - DAY


@pytest.fixture
def db(trace_store: TraceStore) -> TraceStore:
    trace_store.write_batch(SAMPLE)
    return trace_store


def test_overview(db: TraceStore) -> None:
    o = q.overview(db.engine, SINCE_24H, NOW)
    assert (o["requests"], o["ok"], o["errors"], o["rejected"], o["disconnected"]) == (
        6, 3, 2, 1, 1,
    )  # fmt: skip
    assert o["error_rate"] == pytest.approx(2 / 6, abs=1e-4)
    assert o["avg_latency_s"] == pytest.approx(2.0)
    assert o["p50_latency_s"] == pytest.approx(2.0)
    assert o["p95_latency_s"] == pytest.approx(2.9)
    assert o["avg_ttft_s"] == pytest.approx(1.7 / 3, abs=1e-4)
    assert o["tokens_per_s"] == pytest.approx(100 / 3, abs=0.01)
    assert (o["prompt_tokens"], o["completion_tokens"]) == (72, 123)
    assert (o["retries"], o["fallbacks"], o["models"], o["nodes"], o["apps"]) == (1, 1, 2, 3, 3)


def test_overview_of_an_empty_range_is_zeros(db: TraceStore) -> None:
    o = q.overview(db.engine, NOW + 10, NOW + 20)
    assert (o["requests"], o["errors"], o["error_rate"], o["apps"]) == (0, 0, 0.0, 0)
    assert o["avg_latency_s"] is None and o["p95_latency_s"] is None


def test_trends_one_row_per_hour_zero_filled(db: TraceStore) -> None:
    rows = q.trends(db.engine, SINCE_24H, NOW)
    assert len(rows) == 24
    assert rows[-1]["hour"] == NOW - 3600
    assert rows[-1]["label"] == "2023-11-15 01:00"
    last, before = rows[-1], rows[-2]
    assert (last["requests"], last["errors"]) == (5, 1)
    assert last["avg_latency_s"] == pytest.approx(2.0)
    assert (last["prompt_tokens"], last["completion_tokens"]) == (67, 123)
    assert last["tokens_per_s"] == pytest.approx(100 / 3, abs=0.01)
    assert (before["requests"], before["errors"], before["prompt_tokens"]) == (1, 1, 5)
    assert sum(r["requests"] for r in rows) == 6
    assert rows[0]["requests"] == 0 and rows[0]["avg_latency_s"] is None


def test_model_stats(db: TraceStore) -> None:
    models = q.model_stats(db.engine, SINCE_24H, NOW)
    assert [m["model"] for m in models] == ["tiny:1b", "coder:1b", "ghost:1b"]
    tiny, coder, ghost = models
    assert (tiny["requests"], tiny["errors"]) == (4, 1)
    assert tiny["p50_latency_s"] == pytest.approx(2.0)
    assert tiny["p95_latency_s"] == pytest.approx(2.9)
    assert tiny["tokens_per_s"] == pytest.approx(30.0)
    assert (tiny["total_tokens"], coder["total_tokens"], ghost["total_tokens"]) == (105, 90, 0)
    assert tiny["token_share"] == pytest.approx(105 / 195, abs=1e-4)
    assert tiny["nodes"] == ["alpha", "beta"]
    assert ghost["error_rate"] == 1.0 and ghost["nodes"] == []


def test_model_daily_spans_every_utc_day_touching_the_range(db: TraceStore) -> None:
    days = q.model_daily(db.engine, "tiny:1b", NOW - 7 * DAY, NOW)
    assert days[0]["day"] == "2023-11-08" and days[-1]["day"] == "2023-11-15"
    by_day = {d["day"]: d for d in days}
    assert by_day["2023-11-15"]["requests"] == 4
    assert by_day["2023-11-13"]["requests"] == 1
    assert by_day["2023-11-13"]["p95_latency_s"] == pytest.approx(9.0)
    assert by_day["2023-11-14"]["requests"] == 0
    assert sum(d["requests"] for d in days) == 5


def test_usage_per_node_and_model(db: TraceStore) -> None:
    u = q.usage(db.engine, SINCE_24H, NOW)
    pairs = {(r["node_id"], r["model"]): r for r in u["by_node_model"]}
    assert set(pairs) == {("alpha", "tiny:1b"), ("beta", "tiny:1b"), ("gamma", "coder:1b")}
    assert (pairs["alpha", "tiny:1b"]["requests"], pairs["alpha", "tiny:1b"]["errors"]) == (3, 1)
    assert pairs["gamma", "coder:1b"]["completion_tokens"] == 60
    assert {(r["day"], r["node_id"], r["requests"]) for r in u["by_day"]} == {
        ("2023-11-15", "alpha", 3),
        ("2023-11-15", "beta", 1),
        ("2023-11-15", "gamma", 1),
    }


def test_apps_per_tag_with_untagged(db: TraceStore) -> None:
    apps = q.apps(db.engine, SINCE_24H, NOW)
    assert [a["tag"] for a in apps] == ["app-a", "app-b", None, "prod"]
    by_tag = {a["tag"]: a for a in apps}
    assert (by_tag["app-a"]["requests"], by_tag["app-a"]["errors"]) == (2, 0)
    assert by_tag["app-a"]["avg_latency_s"] == pytest.approx(2.0)
    assert by_tag["app-a"]["p95_latency_s"] == pytest.approx(2.9)
    assert by_tag["app-b"]["error_rate"] == 0.5
    assert by_tag["app-b"]["avg_latency_s"] is None
    assert (by_tag[None]["requests"], by_tag[None]["errors"]) == (2, 1)
    assert by_tag[None]["models"] == ["coder:1b", "ghost:1b"]
    assert by_tag["prod"]["completion_tokens"] == 20


def test_apps_daily(db: TraceStore) -> None:
    rows = q.apps_daily(db.engine, NOW - 7 * DAY, NOW)
    assert [(r["day"], r["tag"], r["requests"]) for r in rows] == [
        ("2023-11-13", "app-a", 1),
        ("2023-11-15", "app-a", 2),
        ("2023-11-15", "app-b", 2),
        ("2023-11-15", "prod", 1),
    ]


def test_traces_filters_and_paging(db: TraceStore) -> None:
    def ids(**kw: Any) -> list[str]:
        return [t["request_id"] for t in qt.traces(db.engine, since=SINCE_24H, **kw)["items"]]

    assert ids() == ["a1", "a2", "a4", "a5", "a6", "a3"]
    assert ids(model="tiny:1b") == ["a1", "a2", "a6", "a3"]
    assert ids(model="big:70b") == ["a4"]  # the requested model matches too
    assert ids(node="alpha") == ["a1", "a6", "a3"]
    assert ids(status="error") == ["a3"]
    assert ids(tag="app-a") == ["a1", "a2"]
    page = qt.traces(db.engine, since=SINCE_24H, limit=2, offset=1)
    assert page["total"] == 6 and [t["request_id"] for t in page["items"]] == ["a2", "a4"]
    assert qt.traces(db.engine)["total"] == 7
    first = qt.traces(db.engine, limit=1)["items"][0]
    assert "candidates" not in first and first["tags"] == ["app-a"]
    assert first["tokens_per_s"] == pytest.approx(50.0)


def test_one_trace_has_every_candidate_best_first(db: TraceStore) -> None:
    t = qt.trace(db.engine, "a1")
    assert t is not None
    assert [(c["node_id"], c["total"], c["winner"]) for c in t["candidates"]] == [
        ("alpha", 70.0, True),
        ("beta", 50.0, False),
    ]
    assert t["candidates"][1]["breakdown"] == {"thermal": 30.0, "memory": 20.0}
    assert t["eliminated"] == {"gamma": "model not on node"}
    assert (t["score"], t["client"], t["dialect"], t["stream"]) == (70.0, "my-app", "openai", True)
    assert qt.trace(db.engine, "nope") is None


def test_benchmarks_newest_first_and_detail(db: TraceStore) -> None:
    first = db.add_benchmark(
        {"name": "one", "started_at": NOW - 500, "finished_at": NOW - 400,
         "results": {"requests_per_s": 3.5, "per_model": {"tiny:1b": {"tokens_per_s": 80}}}}
    )  # fmt: skip
    second = db.add_benchmark({"name": "two", "started_at": NOW - 100, "params": {"c": 4}})
    runs = qt.benchmarks(db.engine)
    assert [r["id"] for r in runs] == [second, first]
    assert runs[1]["duration_s"] == pytest.approx(100.0)
    assert runs[1]["summary"] == {"requests_per_s": 3.5}
    assert "results" not in runs[1]
    detail = qt.benchmark(db.engine, first)
    assert detail is not None
    assert detail["results"]["per_model"]["tiny:1b"]["tokens_per_s"] == 80
    assert qt.benchmark(db.engine, 10_000) is None


def test_latency_observations(db: TraceStore) -> None:
    obs = qt.latency_observations(db.engine, SINCE_24H, NOW)
    assert [(o["node_id"], o["model"], o["latency_s"]) for o in obs] == [
        ("alpha", "tiny:1b", 1.0),
        ("beta", "tiny:1b", 3.0),
        ("gamma", "coder:1b", 2.0),
    ]
    assert obs[2]["load_s"] == 3.0 and obs[0]["tokens_per_s"] == pytest.approx(50.0)
    assert [o["latency_s"] for o in qt.latency_observations(db.engine, 0, NOW, node="alpha")] == [
        1.0,
        9.0,
    ]


def test_health_inputs(db: TraceStore) -> None:
    h = qt.health_inputs(db.engine, SINCE_24H, NOW)
    assert (h["requests"], h["errors"], h["timeouts"], h["retries"]) == (6, 2, 1, 1)
    assert (h["disconnected"], h["fallbacks"], h["rejected_503"]) == (1, 1, 0)
    assert h["nodes"]["alpha"] == {
        "requests": 3, "errors": 1, "timeouts": 1, "retries": 1, "cold_loads": 0,
    }  # fmt: skip
    assert h["cold_loads"] == {"gamma": {"coder:1b": 1}}


def test_model_usage(db: TraceStore) -> None:
    u = qt.model_usage(db.engine, SINCE_24H, NOW)
    assert u["alpha"]["tiny:1b"]["requests"] == 3
    assert u["alpha"]["tiny:1b"]["last_used"] == NOW - 100
    assert u["alpha"]["tiny:1b"]["avg_latency_s"] == pytest.approx(1.0)


def test_replaying_a_batch_is_idempotent(db: TraceStore) -> None:
    db.write_batch(SAMPLE)
    db.write_batch(SAMPLE[:3])
    assert db.count_traces() == len(SAMPLE)
    assert q.overview(db.engine, SINCE_24H, NOW)["apps"] == 3
    assert len(qt.latency_observations(db.engine, 0, NOW)) == 4


def test_percentile() -> None:
    assert q.percentile([], 50) is None
    assert q.percentile([4.0], 95) == 4.0
    assert q.percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert q.percentile([3.0, 1.0, 2.0], 100) == 3.0
