"""FLEET_NODE_MEMORY_BYTES: a node reports a memory budget minus its loaded models."""

from __future__ import annotations

from pathlib import Path

from test_node_agent import make_settings

from herd.node.agent import NodeAgent
from herd.sim import start_emulator
from herd.sim.testing import MIB, fast_profile


async def test_budget_replaces_os_memory_and_counts_loaded_models(tmp_path: Path) -> None:
    emulator = await start_emulator(fast_profile(preload=["tiny:1b"]))
    settings = make_settings(emulator.url, tmp_path)
    budget = 1024 * MIB
    settings = settings.model_copy(
        update={"node": settings.node.model_copy(update={"memory_bytes": budget})}
    )
    node = NodeAgent(settings, node_id="n1")
    try:
        await node.start()
        hb = await node.heartbeat()
        loaded = sum(m.size for m in hb.loaded)
        assert loaded > 0
        assert hb.memory_total == budget
        assert hb.memory_available == budget - loaded
        assert hb.memory_pressure == "normal"  # the OS's 1 GiB floor lies outside a budget
    finally:
        await node.stop()
        await emulator.stop()


async def test_without_a_budget_the_os_memory_is_reported(tmp_path: Path) -> None:
    emulator = await start_emulator(fast_profile())
    node = NodeAgent(make_settings(emulator.url, tmp_path), node_id="n1")
    try:
        await node.start()
        hb = await node.heartbeat()
        assert hb.memory_total > 1024 * MIB and 0 < hb.memory_available <= hb.memory_total
    finally:
        await node.stop()
        await emulator.stop()


def test_budget_pressure_is_relative_only() -> None:
    from herd.node.sysmetrics import classify_memory_pressure

    gib = 1024 * MIB
    assert classify_memory_pressure(2 * gib, gib // 2, floor=0) == "normal"  # 25 % free
    assert classify_memory_pressure(2 * gib, gib // 2) == "critical"  # under the OS floor
    assert classify_memory_pressure(100 * gib, 10 * gib, floor=0) == "warn"
    assert classify_memory_pressure(100 * gib, 4 * gib, floor=0) == "critical"
