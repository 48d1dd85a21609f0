"""The ``herd`` command as a user meets it (subprocesses) and the status table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from herd.domain import LoadedModel, ModelOnDisk, NodeHeartbeat
from herd.routing.core import RouterCore
from herd.settings import load_settings
from launch.localray import free_port
from launch.status_table import render_status

REPO_ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3


def run_herd(
    *args: str, tmp: Path, env: dict[str, str] | None = None, timeout: float = 15
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLEET_", "RAY_ADDRESS")) and k != "PYTHONPATH"
    }
    clean["PYTHONPATH"] = str(REPO_ROOT)
    clean["FLEET_DATA_DIR"] = str(tmp / "data")
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "launch.cli", *args],
        cwd=REPO_ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_deploy_without_a_cluster_fails_fast_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # bound and released: nothing listens there
    result = run_herd("deploy", "--address", f"127.0.0.1:{port}", tmp=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no Ray cluster" in lines[0] and "reachable" in lines[0]
    assert f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in result.stderr


def test_invalid_setting_names_the_variable(tmp_path: Path) -> None:
    result = run_herd("status", tmp=tmp_path, env={"FLEET_PORT": "abc"})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "FLEET_PORT" in lines[0] and "abc" in lines[0]
    assert result.stdout == ""


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = run_herd("--help", tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("deploy", "status", "demo", "stop", "drain", "sim-node"):
        assert command in result.stdout


# --- render_status -------------------------------------------------------------------


def _node(node_id: str, **over: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "node_id": node_id,
        "status": "online",
        "backend": "ollama",
        "backend_ok": True,
        "draining": False,
        "cpu_percent": 12.4,
        "memory_total": 16 * GIB,
        "memory_available": 8 * GIB,
        "in_flight": 0,
        "models": ["tiny:1b", "coder:1b"],
        "loaded_models": [{"name": "tiny:1b"}],
    }
    node.update(over)
    return node


def _cells(line: str, starts: list[int]) -> list[str]:
    ends = [*starts[1:], None]
    return [line[a:b].strip() for a, b in zip(starts, ends, strict=True)]


HEADER = ["NODE", "STATUS", "BACKEND", "CPU", "MEM FREE", "IN-FLIGHT", "MODELS", "LOADED"]


def test_render_status_table() -> None:
    status = {
        "nodes": [
            _node("mac-studio", in_flight=3, loaded_models=[{"name": "a:1b"}, {"name": "b:1b"}]),
            _node(
                "pc",
                status="degraded",
                draining=True,
                backend_ok=False,
                cpu_percent=99.6,
                memory_total=64 * GIB,
                memory_available=int(1.25 * GIB),
                loaded_models=[],
            ),
        ],
        "queue": {"waiting": 2, "in_flight": 3},
    }
    text = render_status(status)
    lines = text.splitlines()
    assert lines[0].split() == [
        "NODE",
        "STATUS",
        "BACKEND",
        "CPU",
        "MEM",
        "FREE",
        "IN-FLIGHT",
        "MODELS",
        "LOADED",
    ]
    starts = [lines[0].index(h) for h in HEADER]
    assert _cells(lines[1], starts) == [
        "mac-studio",
        "online",
        "ollama",
        "12%",
        "8.0/16.0G",
        "3",
        "2",
        "a:1b, b:1b",
    ]
    assert _cells(lines[2], starts) == [
        "pc",
        "degraded (draining)",
        "ollama (down)",
        "100%",
        "1.2/64.0G",
        "0",
        "2",
        "-",
    ]
    assert lines[3] == ""
    assert lines[4] == "2 node(s); in flight 3, waiting 2"
    assert len(lines) == 5


def test_render_status_of_an_empty_fleet() -> None:
    lines = render_status({"nodes": [], "queue": {}}).splitlines()
    assert lines[0].split()[0] == "NODE"
    assert lines[-1] == "0 node(s); in flight 0, waiting 0"


@pytest.mark.parametrize("draining", [False, True])
def test_render_status_of_a_router_status(draining: bool) -> None:
    core = RouterCore(load_settings(), clock=lambda: 1000.0)
    core.heartbeat(
        NodeHeartbeat(
            node_id="laptop",
            hostname="laptop",
            backend="llamacpp",
            backend_ok=True,
            cpu_percent=3.0,
            memory_total=8 * GIB,
            memory_available=2 * GIB,
            models=(ModelOnDisk("gemma3:270m"),),
            loaded=(LoadedModel("gemma3:270m"),),
            draining=draining,
        )
    )
    lines = render_status(core.status()).splitlines()
    starts = [lines[0].index(h) for h in HEADER]
    status = "online (draining)" if draining else "online"
    assert _cells(lines[1], starts) == [
        "laptop",
        status,
        "llamacpp",
        "3%",
        "2.0/8.0G",
        "0",
        "1",
        "gemma3:270m",
    ]
    assert lines[-1] == "1 node(s); in flight 0, waiting 0"
