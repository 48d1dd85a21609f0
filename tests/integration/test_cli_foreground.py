"""`herd deploy --foreground` as a service manager runs it: SIGTERM drains the node (its
in-flight request finishes) and the node leaves the fleet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from actors import NAMESPACE, node_actor_name
from herd.sim.profile import MIB, SimModel
from herd.sim.testing import fast_profile
from launch.localray import wait_until

pytestmark = pytest.mark.integration


def _start_epsilon(fleet: Any, tmp_path: Path) -> subprocess.Popen[str]:
    """``herd deploy --foreground`` of an emulated box, epsilon, on beta's Ray node."""
    # solo2:1b exists only on epsilon; 60 tokens at 30 tokens/s: a 2 s answer.
    profile = fast_profile(
        name="epsilon",
        models=[SimModel(name="solo2:1b", size=100 * MIB)],
        tokens_per_s=30.0,
        response_tokens=60,
    )
    path = tmp_path / "epsilon.json"
    path.write_text(profile.model_dump_json())
    url = fleet.start_emulator("epsilon", str(path))
    env = {
        **os.environ,
        **fleet.cluster.auth_env(),
        "FLEET_NODE_OLLAMA_HOST": url,
        "FLEET_NODE_LLAMACPP": "off",
        "FLEET_HEARTBEAT_INTERVAL": "0.25",
        "FLEET_HEARTBEAT_TIMEOUT": "1",
        "FLEET_HEARTBEAT_OFFLINE": "2",
    }
    cmd = [
        sys.executable, "-m", "launch.cli", "deploy", "--foreground", "--no-head",
        "--node-name", "epsilon", "--ray-node-id", fleet.ray_node_id("beta"),
        "--address", fleet.cluster.address, "--drain-timeout", "30",
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_drains_the_node_and_it_leaves(fleet: Any, tmp_path: Path) -> None:
    proc = _start_epsilon(fleet, tmp_path)
    try:
        wait_until(lambda: "epsilon" in fleet.online(), 120, "epsilon online")
        lines: list[dict[str, Any]] = []
        first = threading.Event()

        def stream() -> None:
            body = {"model": "solo2:1b", "prompt": "a long one"}
            with httpx.stream("POST", f"{fleet.endpoint}/api/generate", json=body, timeout=60) as r:
                for line in r.iter_lines():
                    lines.append(json.loads(line))
                    first.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.wait(30), "no first chunk"
        proc.send_signal(signal.SIGTERM)  # the service manager stops the node mid-answer
        out, err = proc.communicate(timeout=90)
        reader.join(30)
        assert proc.returncode == 0, err
        assert "node epsilon: drained" in out and "left the fleet" in out, out
        assert lines[-1]["done"] is True and "error" not in lines[-1]  # the answer finished
        wait_until(
            lambda: all(n["node_id"] != "epsilon" for n in fleet.status()["nodes"]),
            10,
            "epsilon gone from the fleet",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        fleet.stop_emulator("epsilon")


def test_the_service_deploys_its_node_again_when_the_actor_is_gone(
    fleet: Any, tmp_path: Path
) -> None:
    proc = _start_epsilon(fleet, tmp_path)
    try:
        wait_until(lambda: "epsilon" in fleet.online(), 120, "epsilon online")
        old = ray.get_actor(node_actor_name("epsilon"), namespace=NAMESPACE)
        old_pid = ray.get(old.pid.remote(), timeout=10)
        ray.kill(old, no_restart=True)  # gone for good: Ray will not restart it

        def back() -> bool:
            try:
                handle = ray.get_actor(node_actor_name("epsilon"), namespace=NAMESPACE)
                return ray.get(handle.pid.remote(), timeout=5) != old_pid
            except Exception:
                return False

        wait_until(back, 60, "epsilon's actor deployed again")
        wait_until(lambda: "epsilon" in fleet.online(), 60, "epsilon online again")
        body = {"model": "solo2:1b", "prompt": "hi", "stream": False}
        seen: list[int] = []

        def served() -> bool:  # the ingress may still hold the old actor's address once
            r = httpx.post(f"{fleet.endpoint}/api/generate", json=body, timeout=60)
            seen.append(r.status_code)
            return r.status_code == 200 and r.headers["x-herd-node"] == "epsilon"

        wait_until(served, 30, "epsilon serving again")
        assert seen.count(200) == 1 and len(seen) <= 3, seen
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert "herd-node:epsilon: was gone, deployed again" in out, out
        assert "left the fleet" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        fleet.stop_emulator("epsilon")
