"""Ray locked down: the shared fleet's sockets stay on loopback wherever Ray lets them,
every one reachable from the LAN refuses a client without the token, a driver without
the cluster's token cannot join, the data plane answers 401, and ``herd deploy`` refuses
a cluster that runs without auth on the network."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from launch.localray import free_port, port_open, wait_until

from .lockdown_support import (
    dial_address,
    fleet_pids,
    grpc_answers,
    http_status,
    lan_address,
    listeners,
)

pytestmark = pytest.mark.integration


def _read_only_haproxy_ports(fleet: Any) -> dict[int, str]:
    """HAProxy's stats page and Prometheus exporter: Ray's HAProxy template binds both
    on every interface (no setting moves them); they only read counters."""
    env = fleet.cluster.env
    return {
        int(env["RAY_SERVE_HAPROXY_STATS_PORT"]): "/stats",
        int(env["RAY_SERVE_HAPROXY_METRICS_PORT"]): "/metrics",
    }


def test_sockets_beyond_loopback_refuse_a_client_without_the_token(fleet: Any) -> None:
    found = listeners(fleet_pids(fleet))
    print("\n" + "\n".join(str(s) for s in found))  # the measured list (pytest -s)
    gcs = [s for s in found if s.port == fleet.cluster.gcs_port]
    assert gcs and all(s.address.is_loopback for s in gcs), gcs  # the listing works
    lan = lan_address()
    read_only = _read_only_haproxy_ports(fleet)
    exposed = [s for s in found if not s.address.is_loopback]
    for sock in exposed:
        host = dial_address(sock, lan)
        if sock.port in read_only:
            assert "haproxy" in sock.command, sock
            status = http_status(host, sock.port, read_only[sock.port])
            assert status == 200, f"{sock}: {status}"  # read-only counters, nothing more
            continue
        status = http_status(host, sock.port)
        if status is not None:
            assert status in (401, 403), f"{sock} answered HTTP {status} without a token"
            continue
        answers = grpc_answers(host, sock.port)
        assert answers, f"{sock} speaks neither HTTP nor a Ray gRPC service we know"
        assert set(answers.values()) == {"UNAUTHENTICATED"}, f"{sock}: {answers}"
    # What stays beyond loopback is only what Ray hardcodes: the Serve replicas'
    # inter-deployment gRPC ("[::]:0") and HAProxy's two read-only listeners.
    assert {s.port for s in exposed if "haproxy" in s.command} <= set(read_only)
    assert all("haproxy" in s.command or "ServeRepli" in s.command for s in exposed), exposed


_JOIN = """
import sys
import ray
from actors.ray_auth import loopback_kept
with loopback_kept():
    ray.init(address=sys.argv[1], _node_ip_address="127.0.0.1", log_to_driver=False)
print("JOINED", len(ray.nodes()))
"""


def _stranger_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    return {**env, "HOME": str(home), **extra}  # no ~/.ray/auth_token either


def test_a_driver_without_the_token_cannot_join(fleet: Any, tmp_path: Path) -> None:
    strangers = {
        "no auth mode, no token": _stranger_env(tmp_path),
        "auth disabled": _stranger_env(tmp_path, RAY_AUTH_MODE="disabled"),
        "a wrong token": _stranger_env(tmp_path, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64),
    }
    procs = {
        label: subprocess.Popen(
            [sys.executable, "-c", _JOIN, fleet.cluster.address],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for label, env in strangers.items()
    }
    for label, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=150)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode != 0 and "JOINED" not in out, f"{label} joined: {out[-500:]}"
        assert "InvalidAuthToken" in out or "AuthenticationError" in out, f"{label}: {out[-800:]}"


def test_the_data_plane_answers_401_without_its_token(fleet: Any) -> None:
    urls = [n["data_url"] for n in fleet.status()["nodes"] if n["data_url"]]
    assert urls
    for url in urls:
        assert urlparse(url).hostname == "127.0.0.1", url  # on loopback, like its Ray node
        body = {"request_id": "x", "kind": "chat", "model": "tiny:1b", "body": {}}
        r = httpx.post(f"{url}/herd/stream", json=body, timeout=10)
        assert r.status_code == 401, r.text
        wrong = httpx.post(
            f"{url}/herd/stream", json=body, headers={"X-Herd-Data-Token": "x"}, timeout=10
        )
        assert wrong.status_code == 403, wrong.text


def test_herd_deploy_refuses_a_cluster_open_to_the_network(tmp_path: Path) -> None:
    lan = lan_address()
    if lan is None:
        pytest.skip("this machine has no network address besides loopback")
    port = free_port()
    ray_tmp = Path(tempfile.mkdtemp(prefix="herd-open-", dir="/tmp"))  # short: Ray's sockets
    env = _stranger_env(tmp_path, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    log = open(tmp_path / "head.log", "wb")  # noqa: SIM115 - the child's
    head = subprocess.Popen(
        [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            f"--port={port}", f"--node-ip-address={lan}", f"--temp-dir={ray_tmp}",
            "--include-dashboard=false", "--num-cpus=1", "--object-store-memory=80000000",
            f"--ray-client-server-port={free_port()}",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: port_open(port, lan), 90, "an unauthenticated Ray head")
        done = subprocess.run(
            [sys.executable, "-m", "launch.cli", "deploy", "--address", f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "without token auth" in lines[0], done.stderr
        assert "RAY_AUTH_MODE=token" in lines[0]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
