"""Capacity learning where it meets routing: a paused node is eliminated with the
learner's reason, expected latency values a node its owner is about to reclaim less for
a long request, the workload fingerprint, and the node's week in ``/fleet/status``,
``herd status`` and the dashboard; the NodeAgent fills the heartbeat when it is on."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dash_tree import by_testid, text
from test_scoring import GIB, NOW, W, node, snap

from dashboard.views.capacity import capacity_cards, week_figure
from herd.backends.ollama import OllamaBackend
from herd.capacity.fingerprint import Signature, classify
from herd.capacity.learner import MEETING, capacity_paths
from herd.capacity.report import capacity_status, week_grid
from herd.capacity.week import SLOTS, UNKNOWN
from herd.domain import CapacityReport, NodeView
from herd.node.agent import NodeAgent
from herd.routing.core import RouterCore
from herd.scoring import RouteQuery
from herd.scoring.eliminate import PAUSED, eliminate, paused_by_capacity_learning
from herd.scoring.estimate import estimate
from herd.scoring.fleet_context import build_context
from herd.scoring.policies import expected_latency
from herd.settings import load_settings
from herd.sim import RunningEmulator, start_emulator
from herd.sim.testing import fast_profile
from launch.status_table import render_status

M = "m:1b"
EL = dataclasses.replace(W, policy="expected_latency")


def paused_node(node_id: str, reason: str) -> NodeView:
    view = node(node_id, models=(M,), loaded=(M,), paused=True)
    hb = dataclasses.replace(view.heartbeat, pause_reason=reason)
    return dataclasses.replace(view, heartbeat=hb)


# --- elimination ---------------------------------------------------------------------------
def test_a_paused_node_is_eliminated_with_the_learners_reason() -> None:
    s = snap(paused_node("laptop", MEETING), node("desk", models=(M,)))
    q = RouteQuery(M)
    ctx = build_context(s, q, W)
    survivors, reasons = eliminate(s.nodes, q, ctx, NOW, W)
    assert [n.node_id for n in survivors] == ["desk"]
    assert reasons == {"laptop": "owner in a meeting"}
    one_by_one = paused_by_capacity_learning(s.nodes[0], q, ctx, NOW, W)
    assert one_by_one == "owner in a meeting"
    assert paused_by_capacity_learning(paused_node("old", ""), q, ctx, NOW, W) == PAUSED
    ranking = expected_latency(s, q, NOW, EL)
    assert ranking.eliminated == {"laptop": "owner in a meeting"}


# --- expected latency ------------------------------------------------------------------------
def learning(node_id: str, now_a: float | None, next_a: float | None) -> NodeView:
    return node(node_id, models=(M,), loaded=(M,), availability=now_a, availability_next=next_a)


def test_a_node_about_to_be_reclaimed_is_worth_less_for_a_long_request_only() -> None:
    steady, leaving = learning("steady", 1.0, 1.0), learning("leaving", 1.0, 0.0)
    short, long = RouteQuery(M, num_predict=50), RouteQuery(M, num_predict=200_000)
    for q, worse in ((short, 1e-3), (long, 1.0)):
        ctx = build_context(snap(steady, leaving), q, EL)
        a, b = estimate(steady, q, ctx, NOW, EL), estimate(leaving, q, ctx, NOW, EL)
        assert a.reclaim_s == 0.0 and "reclaim_s" not in a.breakdown()
        assert b.reclaim_s > 0.0 and b.breakdown()["reclaim_s"] == b.reclaim_s
        assert b.total_s - a.total_s == pytest.approx(b.reclaim_s)
        assert (b.reclaim_s / a.total_s < worse) if worse < 1 else (b.reclaim_s / a.total_s > 0.1)
    ranking = expected_latency(snap(leaving, steady), long, NOW, EL)
    assert ranking.candidates[0].node_id == "steady"


def test_the_owners_share_now_stretches_the_service_time() -> None:
    q = RouteQuery(M, num_predict=100)
    free, busy = learning("free", 1.0, None), learning("busy", 0.25, None)
    off = learning("off", None, None)  # a node that does not learn
    ctx = build_context(snap(free, busy, off), q, EL)
    a, b = estimate(free, q, ctx, NOW, EL), estimate(busy, q, ctx, NOW, EL)
    assert b.generate_s == pytest.approx(a.generate_s * 4.0)  # a quarter of the device
    gone = learning("gone", 0.0, None)  # the owner takes everything: at most ten times
    assert estimate(gone, q, ctx, NOW, EL).generate_s == pytest.approx(a.generate_s * 10.0)
    assert estimate(off, q, ctx, NOW, EL) == a  # as before capacity learning
    assert expected_latency(snap(busy, free), q, NOW, EL).candidates[0].node_id == "free"


# --- fingerprinting ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("window", "intensity"),
    [
        ([Signature(0.01, 0.2)] * 6, "idle"),
        ([Signature(0.03, 0.2)] * 5 + [Signature(0.15, 0.2)], "light"),  # a click, a tab
        ([Signature(0.3, 0.3), Signature(0.5, 0.3)] * 3, "moderate"),  # a build
        ([Signature(0.02, 0.2, io_bytes_s=80e6)] * 6, "moderate"),  # copying files
        ([Signature(0.05, 0.2 + 0.02 * i) for i in range(6)], "moderate"),  # memory growing
        ([Signature(0.8, 0.4)] * 6, "heavy"),  # sustained compute
        ([Signature(0.2, 0.4, gpu=0.9)] * 6, "heavy"),  # a game
        ([Signature(0.01, 0.2)] * 5 + [Signature(0.95, 0.2)], "heavy"),  # counts at once
        ([], "idle"),
    ],
)
def test_workload_intensity_from_resource_shapes(window: list[Signature], intensity: str) -> None:
    assert classify(window) == intensity


# --- status, herd status, dashboard -------------------------------------------------------------
def week_bytes() -> bytes:
    week = bytearray([UNKNOWN] * SLOTS)
    week[10] = 30  # Monday 10h: the owner is busy
    week[5 * 24 + 10] = 97
    return bytes(week)


def learning_heartbeat(paused: bool = False) -> Any:
    base = node("laptop", models=(M,), memory_total=16 * GIB, memory_available=8 * GIB)
    report = CapacityReport(week=week_bytes(), slot=10, workload="moderate", owner_cpu=0.4)
    return dataclasses.replace(
        base.heartbeat,
        paused=paused,
        pause_reason=MEETING if paused else "",
        availability=0.0 if paused else 0.55,
        availability_next=0.3,
        memory_ceiling=4 * GIB,
        capacity=report,
    )


def test_status_carries_the_week_and_herd_status_shows_it() -> None:
    core = RouterCore(load_settings(), clock=lambda: NOW)
    core.heartbeat(learning_heartbeat())
    core.heartbeat(node("desk").heartbeat)
    by_id = {n["node_id"]: n for n in core.status()["nodes"]}
    cap = by_id["laptop"]["capacity"]
    assert by_id["desk"]["capacity"] is None
    assert cap["availability"] == 0.55 and cap["availability_next"] == 0.3
    assert cap["week"][0][10] == 0.3 and cap["week"][5][10] == 0.97 and cap["week"][0][0] is None
    assert cap["days"][0] == "Mon" and len(cap["week"]) == 7
    lines = render_status(core.status()).splitlines()
    assert "AVAIL" in lines[0].split()
    assert "0.55->0.30" in next(line for line in lines if line.startswith("laptop"))
    core.heartbeat(learning_heartbeat(paused=True))
    table = render_status(core.status())
    assert "paused: owner in a meeting" in table
    assert "AVAIL" not in render_status({"nodes": [by_id["desk"]], "queue": {}})


def test_week_grid_of_an_empty_week() -> None:
    assert week_grid(b"") == [[None] * 24 for _ in range(7)]


def test_dashboard_week_heat_map_and_card() -> None:
    hb = learning_heartbeat()
    cap = capacity_status(hb)
    assert cap is not None
    status_node = {"node_id": "laptop", "capacity": cap}
    fig = week_figure("laptop", cap)
    heat = fig.data[0]
    assert heat.type == "heatmap" and len(heat.z) == 7 and len(heat.z[0]) == 24
    assert heat.z[0][10] == 0.3 and heat.y[0] == "Mon"
    assert fig.data[1].x == ("10",) and fig.data[1].y == ("Mon",)  # now: Monday 10h
    cards = capacity_cards([status_node, {"node_id": "desk", "capacity": None}])
    laptop = by_testid(cards, "capacity-laptop")
    assert "available 55%, next hour 30%" in text(laptop)
    assert "workload moderate" in text(by_testid(cards, "capacity-laptop-signals"))
    by_testid(cards, "capacity-laptop-week")
    assert "No node learns" in text(capacity_cards([]))


# --- the NodeAgent hook ----------------------------------------------------------------------
@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    emulator = await start_emulator(fast_profile(name="emu", preload=["tiny:1b"]))
    yield emulator
    await emulator.stop()


def agent_for(emu: RunningEmulator, tmp: Path, learn: bool) -> NodeAgent:
    settings = load_settings(
        data_dir=tmp,
        node={
            "ollama_host": emu.url,
            "llamacpp": "off",
            "engines": "off",
            "memory_bytes": 1024**3,
            "enable_capacity_learning": learn,
        },
    )
    return NodeAgent(settings, node_id="n1", backend=OllamaBackend(emu.url))


async def test_the_agent_fills_the_heartbeat_when_learning(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    agent = agent_for(emu, tmp_path, learn=True)
    await agent.start()
    try:
        hb = await agent.heartbeat()
        assert hb.capacity is not None and len(hb.capacity.week) == SLOTS
        assert hb.availability is not None and not hb.paused
        assert 0 < hb.memory_ceiling <= 1024**3  # within the node's budget
        _, flag = capacity_paths(agent.settings, "n1")
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()  # the owner joins a meeting
        hb = await agent.heartbeat()
        assert hb.paused and hb.pause_reason == MEETING and hb.availability == 0.0
        flag.unlink()
        assert not (await agent.heartbeat()).paused
    finally:
        await agent.stop()
    week, _ = capacity_paths(agent.settings, "n1")
    assert week.exists()  # saved at stop: the next start goes on learning


async def test_the_agent_leaves_the_fields_empty_when_not_learning(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    agent = agent_for(emu, tmp_path, learn=False)
    await agent.start()
    try:
        hb = await agent.heartbeat()
    finally:
        await agent.stop()
    assert hb.capacity is None and hb.availability is None and hb.memory_ceiling == 0
    assert not (tmp_path / "capacity").exists()
