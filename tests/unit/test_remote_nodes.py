"""Remote nodes (herd add-node): the arguments, the registry, and what such a node
reports (its Ollama's models and load; no CPU or disk of the machine hosting its actor)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_node_agent import make_settings

from herd.errors import ConfigError
from herd.node.agent import NodeAgent
from herd.settings import load_settings
from herd.sim import start_emulator
from herd.sim.testing import MIB, fast_profile
from launch.remote_nodes import (
    REGISTRY_FILE,
    Registry,
    RemoteNode,
    check_remote,
    probe_ollama,
    remote_settings,
)
from launch.status_table import render_status


def test_arguments_are_checked() -> None:
    node = check_remote("gaming-pc", "http://192.168.1.20:11434/", 24, 2)
    assert node == RemoteNode("gaming-pc", "http://192.168.1.20:11434", 24 * 1024**3, 2)
    for name, url, memory, parallel, words in [
        ("bad name!", "http://h:1", None, 1, "node name"),
        ("pc", "192.168.1.20:11434", None, 1, "give its URL"),
        ("pc", "ftp://h:1", None, 1, "give its URL"),
        ("pc", "http://h:1/api", None, 1, "no path"),
        ("pc", "http://user:pw@h:1", None, 1, "no path"),
        ("pc", "http://h:1", 0, 1, "--memory"),
        ("pc", "http://h:1", None, 65, "--parallel"),
    ]:
        with pytest.raises(ConfigError, match=words):
            check_remote(name, url, memory, parallel)


def test_registry_remembers_replaces_and_forgets(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    assert reg.load() == {}
    reg.put(check_remote("pc", "http://10.0.0.2:11434", None, 1))
    reg.put(check_remote("mini", "http://10.0.0.3:11434", 8, 1))
    reg.put(check_remote("pc", "http://10.0.0.9:11434", None, 4))  # replaced
    again = Registry(tmp_path).load()
    assert sorted(again) == ["mini", "pc"] and again["pc"].num_parallel == 4
    body = json.loads((tmp_path / REGISTRY_FILE).read_text())
    assert [n["name"] for n in body["nodes"]] == ["mini", "pc"]  # readable, sorted
    assert reg.remove("pc") and not reg.remove("pc")
    assert list(Registry(tmp_path).load()) == ["mini"]
    (tmp_path / REGISTRY_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not a remote-node list"):
        reg.load()


def test_remote_settings_turn_local_parts_off(tmp_path: Path) -> None:
    base = load_settings(data_dir=tmp_path)
    node = check_remote("pc", "http://10.0.0.2:11434", 16, 3)
    s = remote_settings(base, node).node
    assert (s.name, s.ollama_host, s.remote, s.llamacpp, s.engines) == (
        "pc",
        "http://10.0.0.2:11434",
        True,
        "off",
        "off",
    )
    assert (s.num_parallel, s.memory_bytes) == (3, 16 * 1024**3)


async def test_a_remote_node_reports_its_ollama_not_this_machine(tmp_path: Path) -> None:
    emulator = await start_emulator(fast_profile(preload=["tiny:1b"]))
    node = check_remote("pc", emulator.url, 2, 2)
    settings = remote_settings(make_settings(emulator.url, tmp_path), node)
    agent = NodeAgent(settings, node_id="pc")
    try:
        assert await asyncio.to_thread(probe_ollama, emulator.url) != ""  # the CLI's check
        await agent.start()
        hb = await agent.heartbeat()
        assert hb.remote and hb.hostname == "127.0.0.1"
        assert hb.cpu_percent == 0.0 and hb.disk_free is None and hb.num_parallel == 2
        assert hb.memory_total == 2048 * MIB  # --memory, minus what is loaded
        assert hb.memory_available == hb.memory_total - sum(m.size for m in hb.loaded)
        assert [m.name for m in hb.loaded] == ["tiny:1b"]
    finally:
        await agent.stop()
        await emulator.stop()
    with pytest.raises(ConfigError, match="no Ollama answers"):
        probe_ollama(emulator.url, timeout=1)


def test_status_table_marks_remote_nodes() -> None:
    node = {
        "node_id": "pc",
        "status": "online",
        "backend": "ollama",
        "backend_ok": True,
        "remote": True,
        "cpu_percent": 0.0,
        "memory_available": 0,
        "memory_total": 0,
        "in_flight": 0,
    }
    assert "ollama (remote)" in render_status({"nodes": [node]})
