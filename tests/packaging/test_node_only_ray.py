"""A box with herd-fleet's core alone joins a real Ray cluster and serves as a node.

The head is this checkout's full install (a Ray head with token auth, on its own GCS
port); the node-only venv of ``conftest.py`` runs the Ollama emulator (``herd sim-node``)
and ``herd join HEAD --token-file ... --foreground`` (its Ray worker, then its NodeActor).
A driver from the full install then finds that NodeActor running on the node-only
venv's Ray, with no media engines, answering a chat. Ray
runs only in child processes: this test process never joins that cluster (it may be a
driver of the shared fleet already).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from wheel_support import Venv, clean_env

from herd.sim.testing import fast_profile
from launch.localray import LocalRay, free_port, port_open, wait_until

CHECK = Path(__file__).with_name("ray_node_check.py")
NODE = "lean-box"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalRay]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("RAY_AUTH")}
    ray = LocalRay(gcs_port=free_port(), serve_proxy="proxy", log_dir=tmp_path / "logs")
    try:
        ray.start_head("head", num_cpus=1)  # it sets this process's token variables ...
        yield ray
    finally:
        ray.stop()
        for key in [k for k in os.environ if k.startswith("RAY_AUTH")]:
            del os.environ[key]
        os.environ.update(saved)  # ... which go back to what they were


def _spawn(venv: Venv, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [venv.python, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, cwd="/",
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _node_env(cluster: LocalRay) -> dict[str, str]:
    """The Ray node's environment (token, health checks) without this venv or herd's
    settings: what the node-only box's own shell would hold."""
    mine = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in cluster.env.items() if k not in mine and not k.startswith("FLEET_")}
    return {**env, **cluster.auth_env()}


def _driver(cluster: LocalRay, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(CHECK), args[0], cluster.address, *args[1:]],
        capture_output=True,
        text=True,
        timeout=180,
        env={**clean_env(), **cluster.auth_env()},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_node_only_box_joins_and_serves(
    node_venv: Venv, cluster: LocalRay, tmp_path: Path
) -> None:
    profile = tmp_path / "emu.json"
    profile.write_text(fast_profile(name="emu", preload=["tiny:1b"]).model_dump_json())
    ollama_port = free_port()
    node_env = _node_env(cluster)
    sim = _spawn(
        node_venv,
        ["-m", "launch.cli", "sim-node", "--port", str(ollama_port), "--profile", str(profile)],
        tmp_path / "sim.log",
        node_env,
    )
    node_env["FLEET_NODE_OLLAMA_HOST"] = f"http://127.0.0.1:{ollama_port}"
    node_env["FLEET_DATA_DIR"] = str(tmp_path / "node-data")
    log = tmp_path / "join.log"
    joined = _spawn(
        node_venv,
        [
            "-m", "launch.cli", "join", cluster.address, "--token-file", str(cluster.token_path),
            "--node-name", NODE, "--address-ip", "127.0.0.1",
            "--temp-dir", str(cluster.temp_root / NODE),
            "--ray-arg=--num-cpus=1", "--ray-arg=--object-store-memory=80000000",
            "--foreground", "--drain-timeout", "5",
        ],
        log,
        node_env,
    )  # fmt: skip
    try:
        wait_until(lambda: port_open(ollama_port), 60, "the emulator")
        wait_until(
            lambda: joined.poll() is not None or b"joined the fleet" in log.read_bytes(),
            240,
            "herd join on the node-only box",
            step=0.2,
        )
        assert joined.poll() is None, log.read_text()[-3000:]
        assert f"node {NODE} joined the fleet at {cluster.address}" in log.read_text()

        result = _driver(cluster, "check", NODE)
        site = node_venv.bin.parent / "lib"
        raylet = result["raylet"]
        assert isinstance(raylet, list) and len(raylet) == 1, raylet
        assert Path(raylet[0]).is_relative_to(site)  # the node-only install runs the actor
        assert result["engines"] == []
        assert result["done"] is True and result["content"]
    finally:
        _stop(joined)  # SIGTERM: leaves the fleet and ends Ray there
        _stop(sim)
