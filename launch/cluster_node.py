"""The Ray node that ``herd start`` / ``herd join`` runs on this box, and what the head
tells joining boxes through Ray's GCS.

The node is ``ray start --block`` (through ``launch.ray_node``, so a loopback address
stays loopback) in a session of its own: it outlives ``herd start`` / ``herd join``
when they exit, and its pid is in ``<data dir>/ray-node.pid`` (its output in
``<data dir>/logs/ray-node.log``) so that it can be found and ended without touching
any other Ray on the machine. The foreground form ends it itself on SIGTERM / Ctrl-C.

Versions: the head writes ``{"herd", "python", "ray", "endpoint_port"}`` into the GCS's
key-value store (namespace ``herd``); Ray keeps its own record of the head's Ray and
Python versions (``CLUSTER_METADATA``). Both need the cluster's token to be read, so a
stranger on the LAN learns nothing, and a joining box reads them before it starts Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from herd.errors import ConfigError, FleetUnavailable, HerdError
from launch.cluster_plan import KV_NAMESPACE, KV_VERSIONS, PID_FILE, RAY_LOG, Versions
from launch.localray import wait_until

RAY_METADATA_KEY = b"CLUSTER_METADATA"  # Ray's own record (ray._common.usage)
RAY_METADATA_NAMESPACE = b"cluster"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RayNodeProcess:
    """This box's ``ray start --block``, found again through its pid file."""

    def __init__(self, data_dir: Path) -> None:
        self.pid_path = data_dir / PID_FILE
        self.log_path = data_dir / "logs" / RAY_LOG
        self.proc: subprocess.Popen[bytes] | None = None

    def running_pid(self) -> int | None:
        """The pid of the node a previous ``herd start`` / ``join`` left running."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self, args: list[str], env: dict[str, str], timeout: float = 120.0) -> int:
        """Start the node and wait until it registered with the GCS; its pid."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "launch.ray_node", "start", "--block", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.pid_path.write_text(str(self.proc.pid))
        wait_until(lambda: self._registered(offset), timeout, "Ray to start", step=0.2)
        return self.proc.pid

    def _registered(self, offset: int) -> bool:
        text = self._log_since(offset)
        if self.proc is not None and self.proc.poll() is not None:
            self.pid_path.unlink(missing_ok=True)
            raise HerdError(
                f"Ray did not start ({self._last_error(text)}); full log: {self.log_path}"
            )
        return "block forever" in text

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @staticmethod
    def _last_error(text: str) -> str:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        for line in reversed(lines):
            if "error" in line.lower() or "exception" in line.lower():
                return line[:400]
        return lines[-1][:400] if lines else "no output"

    def wait_ended(self, stop: threading.Event, step: float = 0.5) -> bool:
        """Until the node ended (True) or ``stop`` is set (False); a node a previous run
        left running is watched through its pid."""
        pid = self.proc.pid if self.proc is not None else self.running_pid()
        while not stop.wait(step):
            if self.proc is not None and self.proc.poll() is not None:
                return True
            if self.proc is None and (pid is None or not _alive(pid)):
                return True
        return False

    def ended_how(self) -> str:
        if self.proc is not None and self.proc.returncode is not None:
            return f"`ray start` exited {self.proc.returncode}"
        return "its process is gone"

    def stop(self, timeout: float = 20.0) -> str:
        """End the node (its whole process group): SIGTERM, then SIGKILL."""
        pid = self.proc.pid if self.proc is not None else self.running_pid()
        if pid is None:
            return "no Ray node of herd's runs here"
        try:
            os.killpg(pid, signal.SIGTERM)
            wait_until(lambda: not self._group_alive(pid), timeout, "Ray to stop", step=0.2)
        except FleetUnavailable:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc is not None:
            self.proc.wait(timeout=timeout)
        self.pid_path.unlink(missing_ok=True)
        return f"Ray node stopped (pid {pid})"

    def _group_alive(self, pid: int) -> bool:
        if self.proc is not None and self.proc.poll() is None:
            return True
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _gcs_client(gcs: str) -> Any:
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    return GcsClient(address=gcs)


def publish_versions(gcs: str, endpoint_port: int) -> None:
    """The head's versions for joining boxes (written on every ``herd start``)."""
    here = Versions.here()
    record = {"herd": here.herd, "python": here.python, "ray": here.ray}
    record["endpoint_port"] = endpoint_port  # type: ignore[assignment]
    _gcs_client(gcs).internal_kv_put(
        KV_VERSIONS, json.dumps(record).encode(), True, KV_NAMESPACE, timeout=10
    )


def head_versions(gcs: str, timeout: float = 10.0) -> tuple[Versions, dict[str, Any]]:
    """The head's Ray / Python versions (Ray's record) and herd's (``herd start``'s)."""
    client = _gcs_client(gcs)
    ray_meta = _kv_json(client, RAY_METADATA_KEY, RAY_METADATA_NAMESPACE, timeout)
    herd_meta = _kv_json(client, KV_VERSIONS, KV_NAMESPACE, timeout)
    python = str(ray_meta.get("python_version") or herd_meta.get("python") or "")
    ray_version = str(ray_meta.get("ray_version") or herd_meta.get("ray") or "")
    if not python or not ray_version:
        raise ConfigError(f"the Ray cluster at {gcs} does not say its versions")
    herd = herd_meta.get("herd")
    return Versions(python, ray_version, str(herd) if herd else None), herd_meta


def _kv_json(client: Any, key: bytes, namespace: bytes, timeout: float) -> dict[str, Any]:
    try:
        raw = client.internal_kv_get(key, namespace, timeout=timeout)
    except Exception as exc:
        raise FleetUnavailable(f"could not read the head's versions: {exc}") from None
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def names_in_cluster(gcs: str, timeout: float = 10.0) -> set[str]:
    """The herd node names whose Ray nodes are alive in the cluster (their resource)."""
    from launch.localray import resource_name

    prefix = resource_name("")
    nodes = _gcs_client(gcs).get_all_node_info(timeout=timeout)
    found: set[str] = set()
    for info in nodes.values():
        if info.state != 0:  # ALIVE
            continue
        for resource in dict(info.resources_total):
            if resource.startswith(prefix):
                found.add(resource[len(prefix) :])
    return found
