"""`herd deploy`, `herd status` and `herd drain` as a user runs them, against the live fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd.sim.profile import MIB, SimModel
from herd.sim.testing import fast_profile
from launch.localray import wait_until

pytestmark = pytest.mark.integration


def _herd(
    fleet: Any, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **fleet.cluster.auth_env(), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "launch.cli", *args, "--address", fleet.cluster.address],
        capture_output=True,
        text=True,
        timeout=180,
        env=full_env,
    )


def test_deploy_status_and_drain_a_new_node(fleet: Any, tmp_path: Path) -> None:
    # solo:1b exists only on delta, so where it is served says what routing did.
    profile = fast_profile(name="delta", models=[SimModel(name="solo:1b", size=100 * MIB)])
    path = tmp_path / "delta.json"
    path.write_text(profile.model_dump_json())
    url = fleet.start_emulator("delta", str(path))
    env = {
        "FLEET_NODE_OLLAMA_HOST": url,
        "FLEET_NODE_LLAMACPP": "off",
        "FLEET_HEARTBEAT_INTERVAL": "0.25",
        "FLEET_HEARTBEAT_TIMEOUT": "1",
        "FLEET_HEARTBEAT_OFFLINE": "2",
    }
    beta_ray_node = fleet.ray_node_id("beta")
    args = ("deploy", "--node-name", "delta", "--ray-node-id", beta_ray_node, "--no-head")
    try:
        for _ in range(2):  # idempotent: the second run replaces the first cleanly
            done = _herd(fleet, *args, env=env)
            assert done.returncode == 0, done.stderr
            assert "node delta deployed" in done.stdout
            wait_until(lambda: "delta" in fleet.online(), 20, "delta online")

        r = httpx.post(
            f"{fleet.endpoint}/api/generate",
            json={"model": "solo:1b", "prompt": "hi", "stream": False},
            timeout=30,
        )
        assert r.status_code == 200 and r.headers["x-herd-node"] == "delta"

        status = _herd(fleet, "status")
        assert status.returncode == 0, status.stderr
        assert "delta" in status.stdout and "NODE" in status.stdout
        as_json = json.loads(_herd(fleet, "status", "--json").stdout)
        assert any(n["node_id"] == "delta" for n in as_json["nodes"])

        drained = subprocess.run(
            [
                sys.executable,
                "-m",
                "launch.cli",
                "drain",
                "delta",
                "--timeout",
                "10",
                "--address",
                fleet.cluster.address,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **fleet.cluster.auth_env()},
        )
        assert drained.returncode == 0 and "drained" in drained.stdout, drained.stderr
        wait_until(
            lambda: (fleet.node_status("delta") or {}).get("draining") is True, 10, "delta draining"
        )
        r = httpx.post(
            f"{fleet.endpoint}/api/generate",
            json={"model": "solo:1b", "prompt": "hi", "stream": False},
            timeout=30,
        )
        assert r.status_code == 503  # the only node with solo:1b takes no new work
    finally:
        _remove_node(fleet, "delta")
        fleet.stop_emulator("delta")


def _remove_node(fleet: Any, name: str) -> None:
    import ray

    from actors import NAMESPACE, ROUTER_NAME, node_actor_name
    from actors.naming import kill_named

    kill_named(node_actor_name(name), NAMESPACE, graceful="shutdown")
    router = ray.get_actor(ROUTER_NAME, namespace=NAMESPACE)
    ray.get(router.forget_node.remote(name), timeout=10)
