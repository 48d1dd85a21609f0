"""A device without Ray joins as a remote node (`herd add-node`): its actor runs on the
head, talks to its Ollama over the network, is routed to like any node, is brought back
by the supervisor, and leaves with `herd remove-node`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from actors import NAMESPACE, node_actor_name
from herd.settings import load_settings
from herd.sim.profile import MIB, SimModel
from herd.sim.testing import fast_profile
from launch.localray import wait_until
from launch.supervise import Supervisor

pytestmark = pytest.mark.integration
# The shared fleet's heartbeat settings (tests/conftest.py): a node beats as its deployer's
# settings say, and the router marks it offline by its own.
BEATS = {
    "FLEET_HEARTBEAT_INTERVAL": "0.25",
    "FLEET_HEARTBEAT_TIMEOUT": "1",
    "FLEET_HEARTBEAT_OFFLINE": "2",
}


def _herd(fleet: Any, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **fleet.cluster.auth_env(), "FLEET_DATA_DIR": str(data_dir), **BEATS}
    cmd = [sys.executable, "-m", "launch.cli", *args, "--address", fleet.cluster.address]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def test_add_node_serves_is_supervised_and_leaves(fleet: Any, tmp_path: Path) -> None:
    profile = fast_profile(name="winbox", models=[SimModel(name="only-win:1b", size=100 * MIB)])
    path = tmp_path / "winbox.json"
    path.write_text(profile.model_dump_json())
    url = fleet.start_emulator("winbox", str(path))
    data = tmp_path / "data"
    try:
        bad = _herd(fleet, data, "add-node", "winbox", "--ollama", "http://127.0.0.1:9")
        assert bad.returncode != 0 and "no Ollama answers at http://127.0.0.1:9" in bad.stderr
        assert "Traceback" not in bad.stderr
        done = _herd(fleet, data, "add-node", "winbox", "--ollama", url, "--memory", "4")
        assert done.returncode == 0, done.stderr
        assert "node winbox added" in done.stdout
        wait_until(lambda: "winbox" in fleet.online(), 60, "winbox online")
        entry = fleet.node_status("winbox")
        assert entry["remote"] is True and entry["memory_total"] == 4 * 1024**3
        assert entry["ray_node_id"] == fleet.head_ray_node_id  # its actor runs on the head
        body = {"model": "only-win:1b", "prompt": "hi", "stream": False}
        r = httpx.post(f"{fleet.endpoint}/api/generate", json=body, timeout=60)
        assert r.status_code == 200 and r.headers["x-herd-node"] == "winbox"
        status = _herd(fleet, data, "status")
        assert "ollama (remote)" in status.stdout, status.stdout

        # Gone for good: the supervisor of the machine that added it deploys it again.
        ray.kill(ray.get_actor(node_actor_name("winbox"), namespace=NAMESPACE), no_restart=True)
        settings = load_settings(data_dir=data, heartbeat_interval=0.25)
        supervisor = Supervisor(
            settings, "alpha", fleet.ray_node_id("alpha"), head=False, say=lambda _: None
        )
        wait_until(lambda: "winbox" not in fleet.online(), 30, "winbox seen gone")
        assert node_actor_name("winbox") in supervisor.check_once()
        wait_until(lambda: "winbox" in fleet.online(), 60, "winbox back")

        gone = _herd(fleet, data, "remove-node", "winbox", "--drain-timeout", "10")
        assert gone.returncode == 0, gone.stderr
        assert "left the fleet" in gone.stdout and "removed from" in gone.stdout
        wait_until(
            lambda: all(n["node_id"] != "winbox" for n in fleet.status()["nodes"]),
            30,
            "winbox gone from the fleet",
        )
        assert node_actor_name("winbox") not in supervisor.check_once()
    finally:
        fleet.stop_emulator("winbox")
