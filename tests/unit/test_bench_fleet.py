"""Smoke test of bench/fleet.py: a tiny config, in-process emulators, every policy.

Checks the shape and sanity of the results, never their speed (speed is the bench's job).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    monkeypatch.syspath_prepend(str(BENCH))
    names = ("fleet", "_simfleet_workloads", "_simfleet_profiles", "_simfleet_run")
    return {name: importlib.import_module(name) for name in names}


async def test_tiny_run_has_one_sane_row_per_policy_and_workload(
    bench: dict[str, ModuleType],
) -> None:
    fleet = bench["fleet"]
    workloads = ("steady", "node-death")
    config = fleet.BenchConfig(
        workloads=workloads,
        policies=bench["_simfleet_run"].POLICIES,
        seed=3,
        requests=10,
        time_scale=50.0,
        host="inproc",
    )
    doc: dict[str, Any] = await fleet.run_bench(config)

    assert doc["bench"] == "fleet"
    policies = doc["policies"]
    assert policies, "at least the router's default policy runs"
    assert set(policies) | set(doc["skipped_policies"]) == set(config.policies)
    rows = doc["rows"]
    assert sorted((r["workload"], r["policy"]) for r in rows) == sorted(
        (w, p) for w in workloads for p in policies
    )
    for row in rows:
        assert row["issued"] == 10
        assert row["completed"] + row["failed"] == row["issued"]
        assert row["completed"] > 0
        assert row["p95_s"] >= row["p50_s"] > 0
        assert row["p95_ttft_s"] > 0
        assert row["cold_loads"] >= 0 and row["req_per_s"] > 0
        assert sum(row["served_by"].values()) == row["completed"]
    death = [r for r in rows if r["workload"] == "node-death"]
    dead = bench["_simfleet_workloads"].build_workload("node-death", 3, 10).death_node
    for row in death:  # the dead node serves nothing once it is gone; others take over
        assert set(row["served_by"]) - {dead}

    table = fleet.format_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[0].split()[:2] == ["workload", "policy"]

    for row in rows:  # the service-time floor and how far each policy is from it
        assert 0 < row["floor_p50_s"] <= row["floor_p95_s"]
        assert row["p95_x_floor"] == pytest.approx(row["p95_s"] / row["floor_p95_s"], rel=2e-3)
    summary = doc["summary"]
    assert sorted((s["workload"], s["policy"]) for s in summary) == sorted(
        (w, p) for w in workloads for p in policies
    )
    for workload in workloads:
        ranks = sorted(s["rank"] for s in summary if s["workload"] == workload)
        assert ranks == list(range(1, len(policies) + 1))


def test_workloads_are_reproducible(bench: dict[str, ModuleType]) -> None:
    build = bench["_simfleet_workloads"].build_workload
    for name in bench["_simfleet_workloads"].WORKLOADS:
        a, b, other = build(name, 7, 30), build(name, 7, 30), build(name, 8, 30)
        assert a == b
        assert a.requests != other.requests
        assert len(a.requests) == 30
        times = [r.arrival_s for r in a.requests]
        assert times == sorted(times)
    death = build("node-death", 7, 30)
    assert death.death_node and 0 < (death.death_at_s or 0) < death.span_s


def test_each_node_gets_its_device_slots_and_memory(bench: dict[str, ModuleType]) -> None:
    run = bench["_simfleet_run"]
    settings = run.router_settings("score", 20.0)
    assert settings.heartbeat_interval == pytest.approx(5.0 / 20)
    for profile in bench["_simfleet_profiles"].fleet_profiles(20.0):
        node = run.node_settings(settings, profile).node
        assert (node.name, node.num_parallel, node.memory_bytes) == (
            profile.name,
            profile.num_parallel,
            profile.memory_bytes,
        )


async def test_owner_busy_runs_with_the_features_off_and_on(bench: dict[str, ModuleType]) -> None:
    fleet = bench["fleet"]
    config = fleet.BenchConfig(
        workloads=("owner-busy",),
        policies=("expected_latency",),
        seed=2,
        requests=16,
        time_scale=50.0,
        host="inproc",
    )
    doc: dict[str, Any] = await fleet.run_bench(config)
    rows = {row["features"]: row for row in doc["rows"]}
    assert set(rows) == {"off", "on"}
    for row in rows.values():
        assert row["workload"] == "owner-busy" and row["issued"] == 16
        assert row["completed"] + row["failed"] == row["issued"]
        assert 0 <= row["call_hits"] <= row["owner_hits"] <= row["completed"]
    summary = {(s["policy"], s["features"]) for s in doc["summary"]}
    assert summary == {("expected_latency", "off"), ("expected_latency", "on")}
    workload = bench["_simfleet_workloads"].build_workload("owner-busy", 2, 16)
    assert workload.owner_phases and workload.flaky_phases
    assert all(0 <= p.start_s < p.end_s <= workload.span_s for p in workload.owner_phases)
