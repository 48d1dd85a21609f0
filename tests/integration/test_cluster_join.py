"""`herd start` on a head and the join line it prints run on a second box, as a user runs
them: real subprocesses on this machine, a Ray cluster of their own on loopback (its own
GCS port, temp dirs and data dirs; never the shared test fleet), two Ollama emulators.

Checks: the printed line joins; both nodes answer through the endpoint; a box whose
Python differs from the head's is refused with what differs (before any Ray starts); a
wrong token is refused; and everything stops: the joined box leaves on SIGTERM, `herd
stop` removes herd, the head's Ray ends by its pid file, no process of ours is left.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import ollama
import pytest

from herd.sim.profile import MIB, SimModel
from herd.sim.testing import fast_profile
from launch.localray import free_port, port_open, wait_until

pytestmark = pytest.mark.integration

HERD = [sys.executable, "-m", "launch.cli"]
JOIN_LINE = re.compile(r"^  herd join (\S+) --token ([0-9a-f]{64})$", re.M)


@dataclass
class Boxes:
    tmp: Path
    gcs_port: int = field(default_factory=free_port)
    endpoint_port: int = field(default_factory=free_port)
    emulators: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.endpoint_port}"

    def data_dir(self, box: str) -> Path:
        return self.tmp / f"data-{box}"

    def emulate(self, box: str) -> None:
        """box's own Ollama: one model only it has (where it is served says who served)."""
        profile = fast_profile(name=box, models=[SimModel(name=f"only-{box}:1b", size=90 * MIB)])
        path = self.tmp / f"{box}.json"
        path.write_text(profile.model_dump_json())
        port = free_port()
        cmd = [sys.executable, "-m", "herd.sim", "--port", str(port), "--profile", str(path)]
        self.emulators[box] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        self.urls[box] = f"http://127.0.0.1:{port}"
        wait_until(lambda: port_open(port), 30, f"the {box} emulator", step=0.05)

    def env(self, box: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RAY_", "FLEET_")) or k == "RAY_TMPDIR"
        }
        return env | {
            "FLEET_DATA_DIR": str(self.data_dir(box)),
            "FLEET_NODE_NAME": box,
            "FLEET_NODE_OLLAMA_HOST": self.urls.get(box, "http://127.0.0.1:9"),
            "FLEET_NODE_LLAMACPP": "off",
            "FLEET_NODE_ENGINES": "off",
            "FLEET_HOST": "127.0.0.1",
            "FLEET_PORT": str(self.endpoint_port),
            "FLEET_HEARTBEAT_INTERVAL": "0.25",
            "FLEET_HEARTBEAT_TIMEOUT": "1",
            "FLEET_HEARTBEAT_OFFLINE": "2",
        }

    def herd(self, box: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HERD, *args], env=self.env(box), capture_output=True, text=True, timeout=timeout
        )

    def ray_pgids(self) -> list[int]:
        """The Ray process groups whose pid files our boxes wrote."""
        found = []
        for box in ("a", "b", "c"):
            try:
                found.append(int((self.data_dir(box) / "ray-node.pid").read_text()))
            except (OSError, ValueError):
                continue
        return found

    def our_processes(self) -> list[str]:
        """Command lines on this machine that name our temp dir (Ray and herd processes)."""
        left = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(self.tmp) in cmd and "herd.sim" not in cmd:
                left.append(f"{proc.name}: {cmd[:160]}")
        return left


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture
def boxes() -> Iterator[Boxes]:
    # A short path: Ray's socket paths under --temp-dir must stay below 108 bytes.
    root = Path(f"/tmp/hj-{os.getpid()}")
    root.mkdir()
    found = Boxes(tmp=root)
    try:
        yield found
    finally:
        for pgid in found.ray_pgids():
            _kill_group(pgid)
        for proc in found.emulators.values():
            proc.kill()
            proc.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _ray_args(boxes: Boxes, box: str, head: bool) -> list[str]:
    args = [f"--temp-dir={boxes.tmp / ('ray-' + box)}", "--ray-arg=--num-cpus=1"]
    args.append(f"--ray-arg=--object-store-memory={150_000_000 if head else 80_000_000}")
    if head:  # Ray's Client server port is fixed (10001) unless told
        args.append(f"--ray-arg=--ray-client-server-port={free_port()}")
    return args


def _set_head_python(boxes: Boxes, version: str | None) -> str:
    """Rewrite the Python version in Ray's record of the head (the GCS's key-value store,
    read with the token) and return the one it had; None restores nothing."""
    code = (
        "import json,sys\n"
        "from ray._raylet import GcsClient\n"
        "c = GcsClient(address=sys.argv[1])\n"
        "meta = json.loads(c.internal_kv_get(b'CLUSTER_METADATA', b'cluster', timeout=10))\n"
        "print(meta['python_version'])\n"
        "meta['python_version'] = sys.argv[2]\n"
        "c.internal_kv_put(b'CLUSTER_METADATA', json.dumps(meta).encode(), True, b'cluster',"
        " timeout=10)\n"
    )
    env = boxes.env("a") | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(boxes.data_dir("a") / "ray-token"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, boxes.gcs, version or ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _served_by(boxes: Boxes, model: str) -> str:
    client = ollama.Client(host=boxes.endpoint, timeout=60)
    answer = client.generate(model=model, prompt="hello", stream=False)
    assert answer.response and answer.done
    r = httpx.post(
        f"{boxes.endpoint}/api/generate",
        json={"model": model, "prompt": "hi", "stream": False},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-herd-node"]


def _online(boxes: Boxes) -> set[str]:
    try:
        status = httpx.get(f"{boxes.endpoint}/fleet/status", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return set()
    return {n["node_id"] for n in status.get("nodes", []) if n.get("status") == "online"}


class Lines:
    """A child's output, read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: self.lines.extend(stream), daemon=True).start()

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def test_start_join_serve_refuse_and_stop(boxes: Boxes) -> None:
    boxes.emulate("a")
    boxes.emulate("b")

    # The head: Ray, herd, and the line for the other boxes.
    started = boxes.herd("a", "start", "--address-ip", "127.0.0.1", "--ray-port",
                         str(boxes.gcs_port), *_ray_args(boxes, "a", head=True))  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    match = JOIN_LINE.search(started.stdout)
    assert match, started.stdout
    token_file = boxes.data_dir("a") / "ray-token"
    assert match.group(1) == boxes.gcs and match.group(2) == token_file.read_text()
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert "router deployed" in started.stdout and "Traceback" not in started.stderr
    join_argv = shlex.split(match.group(0).strip())[1:]  # what the user pastes, minus "herd"

    # A box whose Python differs from the head's is refused before anything starts.
    real_python = _set_head_python(boxes, "3.10.4")
    try:
        refused = boxes.herd("b", *join_argv, *_ray_args(boxes, "b", head=False))
    finally:
        _set_head_python(boxes, real_python)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (
        f"herd: cannot join the fleet at {boxes.gcs}: Python differs: the head runs "
        f"Python 3.10.4, this box {real_python}" in refused.stderr
    )
    assert "Traceback" not in refused.stderr
    assert not (boxes.data_dir("b") / "ray-node.pid").exists()

    # A wrong token: refused, said so.
    wrong = boxes.herd("c", "join", boxes.gcs, "--token", "0" * 64, *_ray_args(boxes, "c", False))
    assert wrong.returncode == 5, wrong.stdout + wrong.stderr
    assert "refused this machine's Ray token" in wrong.stderr and "Traceback" not in wrong.stderr

    # The printed line, as a service on the second box.
    cmd = [*HERD, *join_argv, *_ray_args(boxes, "b", head=False), "--foreground"]
    joined = subprocess.Popen(
        cmd, env=boxes.env("b"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out = Lines(joined)
    try:
        wait_until(lambda: out.has("serving;") or joined.poll() is not None, 180, "b joined")
        assert out.has(f"node b joined the fleet at {boxes.gcs}"), out.lines
        wait_until(lambda: _online(boxes) == {"a", "b"}, 30, "a and b online")
        assert _served_by(boxes, "only-a:1b") == "a"
        assert _served_by(boxes, "only-b:1b") == "b"
        status = httpx.get(f"{boxes.endpoint}/fleet/status", timeout=5).json()
        assert {n["node_id"] for n in status["nodes"]} == {"a", "b"}

        # Everything stops: b leaves on SIGTERM, herd stop, the head's Ray by its pid.
        joined.send_signal(signal.SIGTERM)
        assert joined.wait(timeout=120) == 0, out.lines
        assert out.has("node b: left the fleet") and out.has("Ray node stopped"), out.lines
        assert not (boxes.data_dir("b") / "ray-node.pid").exists()
        wait_until(lambda: _online(boxes) == {"a"}, 30, "b gone from the fleet")
    finally:
        if joined.poll() is None:
            joined.kill()
            joined.wait(timeout=10)
    stop_env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
    }
    stopped = subprocess.run(
        [*HERD, "stop", "--address", boxes.gcs],
        env=boxes.env("a") | stop_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "serve app removed" in stopped.stdout and "router removed" in stopped.stdout
    (pgid,) = boxes.ray_pgids()
    os.killpg(pgid, signal.SIGTERM)
    wait_until(lambda: not boxes.our_processes(), 60, "no Ray process of ours left")
    wait_until(lambda: not port_open(boxes.endpoint_port), 30, "the endpoint port closed")
    assert not port_open(boxes.gcs_port)


def test_start_in_the_foreground_serves_and_ends_on_sigterm(boxes: Boxes) -> None:
    boxes.emulate("a")
    cmd = [*HERD, "start", "--address-ip", "127.0.0.1", "--ray-port", str(boxes.gcs_port),
           *_ray_args(boxes, "a", head=True), "--foreground"]  # fmt: skip
    head = subprocess.Popen(
        cmd, env=boxes.env("a"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out = Lines(head)
    try:
        wait_until(lambda: out.has("serving;") or head.poll() is not None, 180, "the head up")
        assert out.has(f"Ray head started at {boxes.gcs}"), out.lines
        assert out.has(f"  herd join {boxes.gcs} --token "), out.lines
        wait_until(lambda: _online(boxes) == {"a"}, 30, "a online")
        assert _served_by(boxes, "only-a:1b") == "a"
        head.send_signal(signal.SIGTERM)  # the service manager stops the head
        assert head.wait(timeout=120) == 0, out.lines
    finally:
        if head.poll() is None:
            head.kill()
            head.wait(timeout=10)
    assert out.has("node a: drained") and out.has("serve app removed"), out.lines
    assert out.has("Ray node stopped"), out.lines
    assert not (boxes.data_dir("a") / "ray-node.pid").exists()
    wait_until(lambda: not boxes.our_processes(), 60, "no Ray process of ours left")
    wait_until(lambda: not port_open(boxes.endpoint_port), 30, "the endpoint port closed")
