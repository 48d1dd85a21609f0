"""Health checks (pure), recommendations (pure) and the settings grouping."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.fleet import group_settings
from dashboard.health import CHECKS, Thresholds, run_checks
from dashboard.recommend import estimate_size_gb, recommend
from herd.settings import load_settings

GB = 1024**3
NOW = 1_700_000_000.0


def node(node_id: str, **kw: Any) -> dict[str, Any]:
    base = {
        "node_id": node_id,
        "hostname": node_id,
        "status": "online",
        "backend_ok": True,
        "backend_version": "0.9.0",
        "herd_version": "0.1.0",
        "cpu_count": 8,
        "memory_total": 32 * GB,
        "memory_available": 16 * GB,
        "memory_pressure": "normal",
        "num_parallel": 2,
        "in_flight": 0,
        "models": [],
        "loaded_models": [],
    }
    return base | kw


def healthy_status() -> dict[str, Any]:
    return {
        "nodes": [node("a"), node("b")],
        "queue": {"waiting": 0, "in_flight": 0},
        "counters": {},
        "events": [],
    }


def traffic(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "requests": 100,
        "errors": 0,
        "timeouts": 0,
        "retries": 0,
        "rejected_503": 0,
        "disconnected": 0,
        "fallbacks": 0,
        "nodes": {},
        "cold_loads": {},
    }
    return base | kw


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def test_a_healthy_fleet_passes_every_check() -> None:
    report = run_checks(healthy_status(), traffic(), NOW)
    assert report["status"] == "healthy"
    assert len(report["checks"]) == len(CHECKS) >= 11
    assert {c["severity"] for c in report["checks"]} == {"ok"}
    for check in report["checks"]:
        assert check["title"] and check["explanation"] and check["action"]


def check_of(status: dict[str, Any], t: dict[str, Any], cid: str) -> dict[str, Any]:
    return by_id(run_checks(status, t, NOW))[cid]


def test_offline_and_degraded_nodes() -> None:
    status = healthy_status()
    status["nodes"][1]["status"] = "offline"
    c = check_of(status, traffic(), "offline_nodes")
    assert (c["severity"], c["details"]["nodes"]) == ("warning", ["b"])
    status["nodes"][0]["status"] = "offline"
    assert check_of(status, traffic(), "offline_nodes")["severity"] == "critical"
    status = healthy_status()
    status["nodes"][0]["status"] = "degraded"
    assert check_of(status, traffic(), "degraded_nodes")["details"]["nodes"] == ["a"]


def test_no_nodes_is_critical() -> None:
    report = run_checks({"nodes": []}, traffic(requests=0), NOW)
    assert report["status"] == "critical"
    assert report["checks"][0]["id"] == "no_nodes"


def test_backend_down() -> None:
    status = healthy_status()
    status["nodes"][0]["backend_ok"] = False
    assert check_of(status, traffic(), "backend_down")["severity"] == "critical"


@pytest.mark.parametrize(
    ("pressure", "available", "severity"),
    [("critical", 16, "critical"), ("warn", 16, "warning"), ("normal", 1, "warning")],
)
def test_memory_pressure(pressure: str, available: int, severity: str) -> None:
    status = healthy_status()
    status["nodes"][0].update(memory_pressure=pressure, memory_available=available * GB)
    assert check_of(status, traffic(), "memory_pressure")["severity"] == severity


def test_thrashing_from_cold_loads() -> None:
    calm = traffic(cold_loads={"a": {"m1": 1, "m2": 1}})
    assert check_of(healthy_status(), calm, "model_thrashing")["severity"] == "ok"
    same_model = traffic(cold_loads={"a": {"m1": 3}})
    assert check_of(healthy_status(), same_model, "model_thrashing")["severity"] == "warning"
    many = traffic(cold_loads={"b": {f"m{i}": 1 for i in range(5)}})
    assert check_of(healthy_status(), many, "model_thrashing")["details"]["cold_loads"] == {
        "b": {f"m{i}": 1 for i in range(5)}
    }


def test_timeouts() -> None:
    few = traffic(timeouts=2, nodes={"a": {"requests": 50, "errors": 2, "timeouts": 2}})
    c = check_of(healthy_status(), few, "timeouts")
    assert (c["severity"], c["details"]["nodes"]) == ("warning", {"a": 2})
    assert check_of(healthy_status(), traffic(timeouts=20), "timeouts")["severity"] == "critical"


def test_error_rates() -> None:
    assert check_of(healthy_status(), traffic(errors=4), "error_rate")["severity"] == "ok"
    assert check_of(healthy_status(), traffic(errors=10), "error_rate")["severity"] == "warning"
    assert check_of(healthy_status(), traffic(errors=30), "error_rate")["severity"] == "critical"
    # Too little traffic to judge the fleet, but one node failing most of its requests shows.
    one_bad = traffic(requests=6, errors=5, nodes={"b": {"requests": 6, "errors": 5}})
    c = check_of(healthy_status(), one_bad, "error_rate")
    assert c["severity"] == "critical" and c["details"]["nodes"] == {"b": 0.8333}


def test_retries_and_disconnects() -> None:
    assert check_of(healthy_status(), traffic(retries=20), "retries")["severity"] == "warning"
    c = check_of(healthy_status(), traffic(disconnected=15), "client_disconnects")
    assert c["severity"] == "info"


def test_version_mismatch() -> None:
    status = healthy_status()
    status["nodes"][1]["herd_version"] = "0.2.0"
    c = check_of(status, traffic(), "version_mismatch")
    assert c["severity"] == "warning"
    assert c["details"]["herd_versions"] == {"a": "0.1.0", "b": "0.2.0"}
    status = healthy_status()
    status["nodes"][1]["backend_version"] = "0.5.0"
    assert check_of(status, traffic(), "version_mismatch")["severity"] == "info"


def test_router_events_zombies_and_context_protection() -> None:
    status = healthy_status()
    status["counters"] = {"reaped": 2}
    status["events"] = [
        {"kind": "zombie_reaped", "node_id": "a", "model": "m"},
        {"kind": "zombie_reaped", "node_id": "b", "model": "m"},
        {"kind": "context_protection", "model": "big:70b", "action": "stripped"},
        {"kind": "prewarm", "node_id": "a", "model": "m"},
    ]
    zombies = check_of(status, traffic(), "zombie_reaper")
    assert (zombies["severity"], zombies["details"]["nodes"]) == ("warning", ["a", "b"])
    context = check_of(status, traffic(), "context_protection")
    assert (context["severity"], context["details"]["models"]) == ("info", ["big:70b"])


def test_queue_saturation() -> None:
    status = healthy_status()
    for n in status["nodes"]:
        n["in_flight"] = 2
    assert check_of(status, traffic(), "queue_saturation")["severity"] == "warning"
    status["queue"]["waiting"] = 3
    c = check_of(status, traffic(rejected_503=4), "queue_saturation")
    assert c["severity"] == "critical"
    assert c["details"] == {"waiting": 3, "in_flight": 4, "capacity": 4, "rejected_503": 4}


def test_thresholds_are_tunable() -> None:
    strict = Thresholds(error_rate_warn=0.01)
    report = run_checks(healthy_status(), traffic(errors=2), NOW, strict)
    assert by_id(report)["error_rate"]["severity"] == "warning"


# --- recommendations --------------------------------------------------------------------------
def test_recommendations_fit_each_node_and_follow_usage() -> None:
    status = {
        "nodes": [
            node("studio", memory_total=192 * GB, cpu_count=24, models=["qwen3:8b"],
                 loaded_models=[{"name": "qwen3:8b", "size": 5 * GB}]),
            node("laptop", memory_total=8 * GB, cpu_count=4),
            node("gone", status="offline"),
        ]
    }  # fmt: skip
    usage = {"qwen3:8b": 40, "llama3.3:70b": 5, "unknown:3b": 2}
    report = recommend(status, usage, NOW)
    assert [n["node_id"] for n in report["nodes"]] == ["studio", "laptop"]
    studio, laptop = report["nodes"]
    names = [r["model"] for r in studio["recommended"]]
    assert names[:3] == ["qwen3:8b", "llama3.3:70b", "unknown:3b"]  # usage order first
    assert studio["recommended"][0]["installed"] and studio["recommended"][0]["loaded"]
    assert {r["role"] for r in studio["recommended"]} >= {
        "general",
        "coding",
        "reasoning",
        "embedding",
    }
    for n in (studio, laptop):
        assert sum(r["size_gb"] for r in n["recommended"]) <= n["budget_gb"]
    # The laptop gets small models only, never the 70B.
    assert all(r["size_gb"] <= 8 for r in laptop["recommended"])
    assert "llama3.3:70b" not in [r["model"] for r in laptop["recommended"]]


def test_size_estimate_from_the_tag() -> None:
    assert estimate_size_gb("mystery:7b") == pytest.approx(4.5)
    assert estimate_size_gb("tiny:270m") == pytest.approx(0.5, abs=0.05)
    assert estimate_size_gb("no-size") == 4.0


# --- settings grouping ----------------------------------------------------------------------
def test_group_settings_masks_secrets_and_groups(tmp_path: Any) -> None:
    settings = load_settings(
        data_dir=tmp_path, database_url="postgresql+psycopg://herd:s3cret@db:5432/herd"
    )
    groups = group_settings(settings)
    assert groups["Server"]["FLEET_PORT"] == 11435
    assert groups["Heartbeats"]["FLEET_HEARTBEAT_TIMEOUT"] == 15.0
    assert groups["Storage and logs"]["FLEET_DATABASE_URL"] == (
        "postgresql+psycopg://herd:***@db:5432/herd"
    )
    assert groups["Storage and logs"]["FLEET_DATA_DIR"] == str(tmp_path)
    assert groups["Node"]["FLEET_NODE_OLLAMA_HOST"] == "http://localhost:11434"
    assert "s3cret" not in repr(groups)


def test_trace_store_backlog_after_database_failures() -> None:
    status = healthy_status()
    status["traces"] = {"failures": 0, "crashes": 0, "committed": [3, 10], "end": [3, 10]}
    assert check_of(status, traffic(), "trace_store")["severity"] == "ok"
    status["traces"] = {"failures": 4, "crashes": 0, "committed": [3, 10], "end": [3, 900]}
    assert check_of(status, traffic(), "trace_store")["severity"] == "warning"


def test_trace_store_quarantined_traces() -> None:
    status = healthy_status()
    status["traces"] = {"failures": 0, "quarantined": 2, "committed": [3, 10], "end": [3, 10],
                        "quarantine_file": "/data/traces/spool/quarantine.jsonl"}  # fmt: skip
    check = check_of(status, traffic(), "trace_store")
    assert check["severity"] == "warning" and check["title"] == "2 trace(s) quarantined"
    assert check["details"]["file"] == "/data/traces/spool/quarantine.jsonl"


def test_failure_memory_pairs_cooling_down() -> None:
    status = healthy_status()
    assert check_of(status, traffic(), "failure_memory")["severity"] == "ok"
    reason = "cooling down after 3 failures: llama runner process has terminated"
    cooling = {
        "model": "tiny:1b",
        "state": "cooling_down",
        "failures": 3,
        "trips": 1,
        "cooldown_left_s": 7.5,
        "last_error": "llama runner process has terminated",
        "reason": reason,
    }
    admitted = cooling | {"model": "coder:1b", "state": "admitted", "reason": None, "trips": 0}
    status["nodes"][0]["failures"] = [cooling, admitted]
    status["counters"] = {"cooled_down": 2, "readmitted": 1}
    check = check_of(status, traffic(), "failure_memory")
    assert (check["severity"], check["title"]) == ("warning", "1 node/model pair(s) cooling down")
    assert check["details"]["pairs"] == [{"node_id": "a", **cooling}]
    assert check["details"]["cooled_down"] == 2
    assert run_checks(status, traffic(), NOW)["status"] == "warning"
    status["nodes"][0]["failures"] = [admitted]  # readmitted since: only the history is left
    check = check_of(status, traffic(), "failure_memory")
    assert check["severity"] == "info" and check["details"] == {"cooled_down": 2, "readmitted": 1}
