"""Start and stop Ray nodes on this machine as child processes (demo, benchmarks).

Every node is ``ray start --block`` (through ``launch.ray_node``, which keeps Ray's
node address 127.0.0.1 instead of the LAN address Ray swaps in) in its own process
group, so it is ours to stop without touching any other Ray on the machine. Each
carries a custom resource ``herd_node_<name>`` so herd can find its Ray node id and pin
actors to it.

Every cluster has Ray's token auth on, with a token of its own (``secrets.token_hex``)
in a 0600 file under its temp dir: each ``ray start`` gets ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN_PATH`` (``LocalRay.auth_env``), and so does every driver that joins
(the process that starts the head becomes one: ``use_token_here``). What Ray still
binds on every interface (the Serve replicas' gRPC port) refuses calls without it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from herd.errors import FleetUnavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: object, timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(step)
    raise FleetUnavailable(f"timed out after {timeout:.0f}s waiting for {what}")


def resource_name(node_name: str) -> str:
    return f"herd_node_{node_name}"


def auth_env(token_path: Path) -> dict[str, str]:
    """The variables a Ray process needs to join a cluster whose token is in
    ``token_path`` (Ray reads ``RAY_AUTH_TOKEN`` before the file: it must be unset)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}


def write_token(path: Path) -> None:
    """A fresh random token in ``path`` (dir 0700, file 0600, never a file we do not own)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent.stat().st_uid != os.getuid():
        raise FleetUnavailable(f"{path.parent} belongs to another user: remove it first")
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


# Idle cost (bench/idle_cost.py): Ray's parts herd does not use, turned down. herd keeps
# its own JSONL logs per device, so Ray's log monitor (which ships every worker's output
# to the drivers) is off; the per-node agent's resource reports feed only Ray's
# dashboard, which herd's fleets do not run (herd's own heartbeats carry the load); and
# Serve's controller checks its deployments twice a second instead of ten times.
LEAN_RAY_ENV = {
    "REPORTER_UPDATE_INTERVAL_MS": "60000",
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
}
LEAN_RAY_FLAGS = ("--include-log-monitor=False",)


def ray_env(
    serve_proxy: str = "haproxy", token_path: Path | None = None, lean: bool = True
) -> dict[str, str]:
    env = dict(os.environ)
    if lean:
        for key, value in LEAN_RAY_ENV.items():
            env.setdefault(key, value)
    if token_path is not None:
        env.pop("RAY_AUTH_TOKEN", None)
        env.update(auth_env(token_path))
    env.setdefault("RAY_health_check_period_ms", "500")
    env.setdefault("RAY_health_check_failure_threshold", "3")
    env.setdefault("RAY_health_check_initial_delay_ms", "0")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Stopping a local node should not wait out Ray's 30 s drain (we drain herd ourselves).
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    if serve_proxy == "haproxy":
        env.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
        env.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        # HAProxy's own metrics/stats listeners default to fixed ports; give each local
        # cluster its own so two of them (a demo and a test run) can coexist.
        env.setdefault("RAY_SERVE_HAPROXY_METRICS_PORT", str(free_port()))
        env.setdefault("RAY_SERVE_HAPROXY_STATS_PORT", str(free_port()))
    return env


@dataclass
class LocalRay:
    """Ray nodes on 127.0.0.1 that this process started and will stop."""

    gcs_port: int
    serve_proxy: str = "haproxy"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    head_name: str = "head"
    env: dict[str, str] = field(default_factory=dict)
    lean: bool = True  # LEAN_RAY_ENV and LEAN_RAY_FLAGS (bench/idle_cost.py compares)

    def __post_init__(self) -> None:
        self.env = ray_env(self.serve_proxy, self.token_path, self.lean)

    log_dir: Path = field(default_factory=lambda: Path("/tmp/herd-localray"))

    @property
    def temp_root(self) -> Path:
        return Path(f"/tmp/herd-ray-{self.gcs_port}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def token_path(self) -> Path:
        """This cluster's Ray auth token (written when the head starts)."""
        return self.temp_root / "auth_token"

    def auth_env(self) -> dict[str, str]:
        """What a driver process (``herd status``, a test's subprocess) needs to join."""
        return auth_env(self.token_path)

    def use_token_here(self) -> None:
        """Let this process's driver (``actors.cluster.connect``) join with the token."""
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.update(self.auth_env())

    def _spawn(self, name: str, args: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "launch.ray_node",
                "start",
                "--block",
                *(LEAN_RAY_FLAGS if self.lean else ()),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )

    def start_head(self, name: str, num_cpus: int = 2, timeout: float = 60.0) -> None:
        self.head_name = name
        if port_open(self.gcs_port):
            raise FleetUnavailable(f"port {self.gcs_port} is taken: is another Ray running?")
        write_token(self.token_path)
        self.use_token_here()
        self._spawn(
            name,
            [
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--temp-dir={self.temp_root / name}",
                f"--port={self.gcs_port}",
                "--include-dashboard=false",
                # Ray's Client server cannot be turned off here; its default port 10001
                # would collide between two local clusters.
                f"--ray-client-server-port={free_port()}",
                "--disable-usage-stats",
                f"--num-cpus={num_cpus}",
                "--object-store-memory=150000000",
                f"--resources={json.dumps({resource_name(name): 1})}",
            ],
        )
        wait_until(lambda: self.started(name), timeout, "the Ray head", step=0.2)

    def started(self, name: str) -> bool:
        """``ray start --block`` prints its blocking notice once the node registered."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise FleetUnavailable(f"ray node {name} exited; see {self.log_dir / name}.log")
        try:
            return b"block forever" in (self.log_dir / f"{name}.log").read_bytes()
        except OSError:
            return False

    def add_workers(self, names: list[str], num_cpus: int = 1, timeout: float = 120.0) -> None:
        """Start worker nodes together and wait until each registered. Every node gets its
        own ``--temp-dir``: raylets sharing one session dir on a machine can collide on
        their socket names when they start at the same instant."""
        for name in names:
            self._spawn(
                name,
                [
                    f"--address={self.address}",
                    "--node-ip-address=127.0.0.1",
                    f"--num-cpus={num_cpus}",
                    "--object-store-memory=80000000",
                    f"--temp-dir={self.temp_root / name}",
                    f"--resources={json.dumps({resource_name(name): 1})}",
                ],
            )
        for name in names:
            wait_until(lambda n=name: self.started(n), timeout, f"Ray node {name}", step=0.2)

    def add_worker(self, name: str, num_cpus: int = 1, timeout: float = 120.0) -> None:
        self.add_workers([name], num_cpus, timeout)

    def kill(self, name: str, hard: bool = False) -> None:
        """Stop a node: SIGTERM lets Ray drain it; ``hard`` kills it outright (a crash)."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        for name in [n for n in self.procs if n != self.head_name]:
            self.kill(name)
        self.kill(self.head_name)
        shutil.rmtree(self.temp_root, ignore_errors=True)
