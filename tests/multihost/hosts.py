"""A herd fleet of separate hosts: in each namespace (``tests/multihost/netns.py``) an
Ollama emulator, a Ray node (plain ``ray start --block``, token auth) and
``herd deploy``, or ``herd join --foreground`` (the one command), exactly as on a box of
a real LAN.

dev1 holds the Ray head (GCS at ``<dev1>:6379``), the router and the endpoint
(``FLEET_HOST=0.0.0.0``, reached by the test at ``http://<dev1>:11435`` through the
bridge); every host runs its own emulator on its own ``127.0.0.1:11434`` (also bound on
its address so the test can inject faults through ``/_sim/``). Logs of every process
are in ``<root>/<host>/*.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from launch.localray import port_open, ray_env, resource_name, wait_until, write_token

from .netns import NetHost, Network, process_name

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
ADMIN_TOKEN = "multihost-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PORT = 11435
# Heartbeats every 0.5 s; silent 1.5 s: degraded, 3 s: offline (at once when Ray reports
# the node dead). Ray's health check: every 0.5 s, 1 s to answer, 3 misses.
HERD_ENV = {
    "FLEET_HEARTBEAT_INTERVAL": "0.5",
    "FLEET_HEARTBEAT_TIMEOUT": "1.5",
    "FLEET_HEARTBEAT_OFFLINE": "3",
    "FLEET_FIRST_CHUNK_TIMEOUT": "30",
    "FLEET_CHUNK_TIMEOUT": "10",
    "FLEET_ADMIN_TOKEN": ADMIN_TOKEN,
    "FLEET_NODE_OLLAMA_HOST": "http://127.0.0.1:11434",
    "FLEET_NODE_LLAMACPP": "off",
    "FLEET_NODE_ENGINES": "off",
}
RAY_HEALTH = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_timeout_ms": "1000",
}


@dataclass
class Host:
    net: NetHost
    dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)  # a piped child's stdout lines

    @property
    def name(self) -> str:
        return self.net.name

    @property
    def ip(self) -> str:
        return self.net.ip

    @property
    def sim_url(self) -> str:
        return f"http://{self.ip}:11434"


@dataclass
class HostFleet:
    net: Network = field(default_factory=Network)
    hosts: dict[str, Host] = field(default_factory=dict)
    head: str = "dev1"
    head_ray_prefix: str = ""  # Serve's HAProxy keeps its files under its node id
    # Short: Ray's socket paths under each --temp-dir must stay below 108 characters.
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(f"/tmp/hmh-{self.net.run}")
        self.root.mkdir(mode=0o700)

    @property
    def token_path(self) -> Path:
        return self.root / "ray_token"

    @property
    def gcs(self) -> str:
        return f"{self.hosts[self.head].ip}:6379"

    @property
    def endpoint(self) -> str:
        return f"http://{self.hosts[self.head].ip}:{PORT}"

    # --- processes inside a namespace ------------------------------------------------
    def spawn(
        self, host: Host, key: str, cmd: list[str], env: dict[str, str], pipe: bool = False
    ) -> subprocess.Popen[bytes]:
        log = open(host.dir / f"{key}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            host.net.command(cmd, REPO),
            stdout=subprocess.PIPE if pipe else log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        host.procs[key] = proc
        return proc

    def ray_env(self) -> dict[str, str]:
        env = ray_env("haproxy", self.token_path)
        env.pop("RAY_ADDRESS", None)
        env.update(RAY_HEALTH)
        return env

    def herd_env(self, host: Host) -> dict[str, str]:
        env = {**self.ray_env(), **HERD_ENV, "FLEET_DATA_DIR": str(host.dir / "data")}
        if host.name == self.head:
            env.update(FLEET_HOST="0.0.0.0", FLEET_PORT=str(PORT))
        return env

    # --- building a host ----------------------------------------------------------------
    def add_host(self, name: str, number: int) -> Host:
        host = Host(self.net.add_host(name, number), self.root / name)
        host.dir.mkdir(parents=True, exist_ok=True)
        self.hosts[name] = host
        return host

    def start_sim(self, host: Host) -> None:
        cmd = [sys.executable, "-m", "herd.sim", "--host", "0.0.0.0", "--port", "11434"]
        self.spawn(
            host, "sim", [*cmd, "--profile", "mac-mini", "--name", host.name], dict(os.environ)
        )
        wait_until(lambda: port_open(11434, host.ip), 30, f"the {host.name} emulator", 0.05)
        # Answers as long as the client's num_predict (up to 2000 tokens, ~57 s at the
        # profile's 35 tokens/s): a test picks a stream's length.
        url = f"{host.sim_url}/_sim/profile"
        httpx.patch(url, json={"response_tokens": 2000}, timeout=5).raise_for_status()

    def start_ray(self, host: Host, wait: bool = True) -> None:
        args = [
            f"--node-ip-address={host.ip}",
            "--num-cpus=1",
            "--object-store-memory=80000000",
            f"--temp-dir={host.dir / 'ray'}",
            "--disable-usage-stats",
            f"--resources={json.dumps({resource_name(host.name): 1})}",
        ]
        if host.name == self.head:
            write_token(self.token_path)
            args += ["--head", "--port=6379", "--include-dashboard=false"]
        else:
            args += [f"--address={self.gcs}"]
        (host.dir / "ray.log").unlink(missing_ok=True)
        self.spawn(host, "ray", [RAY, "start", "--block", *args], self.ray_env())
        if wait:
            self.wait_ray(host)

    def wait_ray(self, host: Host) -> None:
        wait_until(lambda: self._ray_started(host), 120, f"the Ray node of {host.name}", 0.2)

    def _ray_started(self, host: Host) -> bool:
        proc = host.procs["ray"]
        if proc.poll() is not None:
            log = ""
            with contextlib.suppress(OSError):
                log = (host.dir / "ray.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"ray start on {host.name} exited {proc.returncode}:\n{log}")
        try:
            return b"block forever" in (host.dir / "ray.log").read_bytes()
        except OSError:
            return False

    def deploy(self, host: Host, timeout: float = 180.0) -> str:
        """``herd deploy`` inside the host's namespace (the head: router + endpoint too)."""
        role = "--head" if host.name == self.head else "--no-head"
        args = ["deploy", "--address", self.gcs, role, "--node-name", host.name]
        done = self.herd(host, *args, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"herd deploy on {host.name}: {done.stderr[-2000:]}")
        if host.name == self.head and (m := re.search(r"on ray node (\w+)", done.stdout)):
            self.head_ray_prefix = m.group(1)
        return done.stdout

    def herd(
        self, host: Host, *args: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """A ``herd`` command inside the host's namespace with its settings (there it is
        a driver of the cluster: ``deploy``, ``add-node``, ``remove-node``)."""
        cmd = [sys.executable, "-m", "launch.cli", *args]
        return subprocess.run(
            host.net.command(cmd, REPO),
            capture_output=True,
            text=True,
            env=self.herd_env(host),
            timeout=timeout,
        )

    def deploy_foreground(self, host: Host) -> subprocess.Popen[bytes]:
        """``herd deploy --foreground`` (the service form) inside the namespace; its
        stdout is collected in ``host.output``."""
        cmd = [sys.executable, "-m", "launch.cli", "deploy", "--foreground", "--no-head"]
        cmd += ["--address", self.gcs, "--node-name", host.name, "--drain-timeout", "30"]
        return self._collected(host, self.spawn(host, "deploy", cmd, self.herd_env(host), True))

    def join_foreground(self, host: Host) -> subprocess.Popen[bytes]:
        """``herd join HEAD --foreground`` (one command: Ray worker + NodeActor, kept up
        as a service) inside the namespace; its stdout is collected in ``host.output``."""
        cmd = [sys.executable, "-m", "launch.cli", "join", self.gcs, "--foreground"]
        cmd += ["--token-file", str(self.token_path), "--node-name", host.name]
        cmd += ["--temp-dir", str(host.dir / "ray"), "--drain-timeout", "30"]
        cmd += ["--ray-arg=--num-cpus=1", "--ray-arg=--object-store-memory=80000000"]
        return self._collected(host, self.spawn(host, "join", cmd, self.herd_env(host), True))

    @staticmethod
    def _collected(host: Host, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        out = host.output

        def read() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                out.append(raw.decode(errors="replace"))

        threading.Thread(target=read, daemon=True).start()
        return proc

    def said(self, name: str, text: str, since: int = 0) -> bool:
        """Whether a piped herd command of ``name`` printed ``text`` (in its lines from
        number ``since`` on)."""
        return any(text in line for line in list(self.hosts[name].output)[since:])

    def start_host(self, name: str, number: int) -> Host:
        host = self.add_host(name, number)
        self.start_sim(host)
        self.start_ray(host)
        self.deploy(host)
        return host

    def signal(self, name: str, key: str, sig: int) -> None:
        """Send ``sig`` to the program a ``spawn`` ran (nsenter's child: nsenter itself
        forwards no signal)."""
        proc = self.hosts[name].procs[key]
        tree = self._tree(proc.pid)
        assert len(tree) > 1, f"{key} on {name} runs no program"
        os.kill(tree[1], sig)

    # --- faults -------------------------------------------------------------------------
    def kill_raylet(self, name: str) -> int:
        """SIGKILL the host's raylet (a crash of Ray on that box); its pid."""
        for pid in self.net.pids(name):
            if process_name(pid) == "raylet":
                os.kill(pid, signal.SIGKILL)
                return pid
        raise RuntimeError(f"no raylet runs in {name}'s namespace")

    def stop_sim(self, name: str) -> None:
        """SIGKILL the host's emulator (its Ollama crashed); ``start_sim`` starts it again."""
        self.signal(name, "sim", signal.SIGKILL)
        self.hosts[name].procs["sim"].wait(10)

    def actor_pids(self, name: str, actor: str) -> list[int]:
        """The pids (as the root sees them) of the Ray workers on ``name`` that run an
        ``actor`` (its class name): Ray titles such a process ``ray::<class>``, or
        ``ray::<class>.<method>()`` while it runs a method."""
        title = f"ray::{actor}"
        return [
            pid
            for pid in self.net.pids(name)
            if (seen := process_name(pid)) == title or seen.startswith(f"{title}.")
        ]

    def actor_pid(self, name: str, actor: str) -> int | None:
        """The one worker running ``actor`` on ``name``; None while there is none."""
        pids = self.actor_pids(name, actor)
        assert len(pids) <= 1, f"{len(pids)} processes run {actor} on {name}: {pids}"
        return pids[0] if pids else None

    def restart_ray_node(self, name: str) -> None:
        """What the Ray unit's service manager does when ``ray start --block`` ended (Ray
        told the raylet it was dead): start Ray again. The host's ``herd deploy
        --foreground`` (kept running) deploys its node on the new Ray node."""
        host = self.hosts[name]
        proc = host.procs["ray"]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        keep = {host.net.init_pid, *self._tree(host.procs["sim"].pid)}
        keep.update(self._tree(host.procs["deploy"].pid))
        for pid in self.net.pids(name):  # Ray's leftovers, not the emulator nor herd
            if pid not in keep:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.start_ray(host)

    @staticmethod
    def _tree(pid: int) -> list[int]:
        """``pid`` and its descendants (nsenter forks the command it runs)."""
        out = [pid]
        for p in out:
            with contextlib.suppress(OSError):
                out += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        return out

    # --- reads --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        r = httpx.get(f"{self.endpoint}/fleet/status", headers=ADMIN, timeout=5)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def node(self, name: str) -> dict[str, Any] | None:
        try:
            nodes = self.status()["nodes"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return next((n for n in nodes if n["node_id"] == name), None)

    def online(self) -> set[str]:
        try:
            nodes = self.status()["nodes"]
        except (httpx.HTTPError, ValueError, KeyError):
            return set()
        return {n["node_id"] for n in nodes if n["status"] == "online" and n["backend_ok"]}

    def sim_fault(self, name: str, **spec: Any) -> list[str]:
        r = httpx.post(f"{self.hosts[name].sim_url}/_sim/faults", json=spec, timeout=5)
        r.raise_for_status()
        return list(r.json()["added"])

    def sim_faults(self, name: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.hosts[name].sim_url}/_sim/faults", timeout=5)
        return list(r.json()["faults"])

    def clear_faults(self, name: str) -> None:
        httpx.delete(f"{self.hosts[name].sim_url}/_sim/faults", timeout=5)

    # --- the end ------------------------------------------------------------------------
    def close(self) -> None:
        try:
            for host in self.hosts.values():
                for proc in host.procs.values():
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                for proc in host.procs.values():
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(10)
        finally:
            self.net.close()
            shutil.rmtree(self.root, ignore_errors=True)
            if self.head_ray_prefix:
                for leftover in Path("/tmp/haproxy-serve").glob(f"{self.head_ray_prefix}*"):
                    shutil.rmtree(leftover, ignore_errors=True)


def timed_wait(predicate: Any, timeout: float, what: str) -> float:
    """Wait for ``predicate`` (bounded) and return the seconds it took."""
    t0 = time.monotonic()
    wait_until(predicate, timeout, what, step=0.05)
    return time.monotonic() - t0
