"""A local herd fleet for benchmarks: one emulator, a Ray head and one worker Ray node.

``local_fleet`` runs ``launch.localfleet.LocalFleet``'s steps itself because the
benchmark wants the head to hold only the router and Serve (``LocalFleet.start`` puts a
NodeActor on the first Ray node) and a choice of Serve replicas.

Run as a script it is the *fleet holder* that ``bench/overhead.py`` starts once per Serve
mode (the ``RAY_SERVE_*`` variables must be set before Ray starts, so every mode gets its
own cluster and its own process)::

    python bench/_fleet.py --mode haproxy

It prints one line ``HERD_FLEET_READY {json}`` when the endpoint answers, then holds the
fleet until its stdin closes (or SIGTERM), and tears everything down. ``FleetProcess``
is the parent's side: it runs this script and reads that line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

READY = "HERD_FLEET_READY"
HEAD = "bench-head"
NODE = "bench-node"
MODES = ("haproxy", "default")


@dataclass(frozen=True)
class Fleet:
    mode: str
    endpoint: str  # herd's Serve ingress
    emulator: str  # the Ollama emulator behind the one NodeActor
    node: str
    ray_address: str
    head_ray_node_id: str
    startup_s: float
    settings: Any = field(default=None, repr=False, compare=False)  # herd's Settings
    pids: tuple[int, ...] = ()  # the Ray nodes' `ray start` and the emulator (roots)


@contextmanager
def local_fleet(
    mode: str = "haproxy",
    profile: str = "instant",
    heartbeat_interval: float = 0.5,
    num_parallel: int = 64,
    replicas: int = 1,
) -> Iterator[Fleet]:
    """Head (router + Serve, no NodeActor) and one worker Ray node with the NodeActor
    over one emulator, built from ``launch.localfleet.LocalFleet``'s steps (its
    ``start`` puts a NodeActor on the head and always deploys one Serve replica)."""
    from actors.cluster import connect
    from actors.router import deploy_router_actor
    from herd.node_settings import NodeSettings
    from herd.settings import load_settings
    from launch.localfleet import LocalFleet, NodeSpec
    from launch.localray import free_port
    from serve_app.app import deploy_serve

    started = time.perf_counter()
    # HAProxy binds fixed metrics/stats ports (9101, 8404) without SO_REUSEPORT: a second
    # HAProxy-mode cluster on the machine (a demo, a test) would make ours crash at start.
    # ray_env() copies os.environ into every Ray node it starts.
    for var in ("RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_HAPROXY_STATS_PORT"):
        os.environ.setdefault(var, str(free_port()))
    # Ray >= 2.60 drains a node for up to 30 s on SIGTERM; LocalRay signals the whole
    # process group, GCS included, so the head's drain RPC can only time out (~20 s
    # lost per teardown). Nothing to drain here: stop at once.
    os.environ.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    data_dir = Path(tempfile.mkdtemp(prefix="herd-bench-"))
    settings = load_settings(
        port=free_port(),
        host="127.0.0.1",
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=max(5.0, 4 * heartbeat_interval),
        heartbeat_offline=max(10.0, 8 * heartbeat_interval),
        serve_proxy=mode,
        data_dir=data_dir,
        node=NodeSettings(num_parallel=num_parallel),  # the instant profile has 64 slots
    )
    spec = NodeSpec(NODE, "sim", profile)
    fleet = LocalFleet(settings, (spec,), serve_proxy=mode)
    fleet.cluster.log_dir = data_dir / "ray"
    head_id = ""
    try:
        fleet.cluster.start_head(HEAD)
        _step(started, "ray head")
        fleet.cluster.add_worker(NODE)
        _step(started, "ray worker")
        emulator = fleet.start_emulator(NODE, profile)
        connect(fleet.cluster.address, timeout=30)
        head_id = fleet.head_ray_node_id = fleet.ray_node_id(HEAD)
        deploy_router_actor(settings, ray_node_id=head_id)
        _step(started, "router actor")
        fleet.deploy_node(spec)
        _step(started, "node actor")
        fleet.endpoint = deploy_serve(settings, replicas=replicas)
        _step(started, "serve")
        fleet.wait_online(1, timeout=90)
        _step(started, "node online")
        yield Fleet(
            mode,
            fleet.endpoint,
            emulator,
            NODE,
            fleet.cluster.address,
            head_id,
            time.perf_counter() - started,
            settings,
            (*(proc.pid for proc in fleet.cluster.procs.values()), fleet.emulators[NODE].pid),
        )
    finally:
        stopping = time.perf_counter()
        fleet.stop()  # also stops the HAProxy that Serve left behind
        shutil.rmtree(data_dir, ignore_errors=True)
        _step(stopping, "stopped")


class FleetProcess:
    """``_fleet.py`` for one mode: boots at construction, tears down once released.

    Releasing only closes its stdin, so the next mode's fleet can boot while this one
    tears down (Ray's head takes ~20 s to stop); ``wait`` blocks until it is gone.
    """

    def __init__(
        self, mode: str, replicas: int, ray_env: list[str], profile: str = "instant"
    ) -> None:
        self.mode = mode
        cmd = [sys.executable, str(Path(__file__).resolve()), f"--mode={mode}"]
        cmd += [f"--replicas={replicas}", f"--profile={profile}"]
        cmd += [f"--ray-env={item}" for item in ray_env]
        # Its own session: Ctrl-C reaches only this process, which then releases the
        # fleet; the fleet also tears down if this process dies (its stdin closes).
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
        )

    def ready(self) -> dict[str, Any]:
        """Block until the fleet answers; its description (endpoint, emulator, ...)."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {self.mode} fleet exited early (code {self.proc.wait()})")
            if line.startswith(READY):
                info: dict[str, Any] = json.loads(line[len(READY) :])
                return info
            print(f"  [{self.mode} fleet] {line.rstrip()}", file=sys.stderr, flush=True)

    def release(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def wait(self, timeout: float = 120.0) -> None:
        self.release()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()  # it tears down on SIGTERM too
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _step(since: float, what: str) -> None:
    print(f"  {what}: {time.perf_counter() - since:.1f} s", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Hold a local herd fleet for a benchmark.")
    parser.add_argument("--mode", choices=MODES, default="haproxy")
    parser.add_argument("--profile", default="instant")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--ray-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    for item in args.ray_env:
        name, _, value = item.partition("=")
        os.environ[name] = value  # LocalRay hands os.environ to the Ray nodes it starts
    # The parent (the load generator) owns Ctrl-C: it closes our stdin, or sends SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    with local_fleet(args.mode, args.profile, replicas=args.replicas) as fleet:
        info: dict[str, Any] = asdict(fleet)
        info.pop("settings")
        print(f"{READY} {json.dumps(info)}", flush=True)
        sys.stdin.readline()  # EOF (or any line) means: tear down
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the teardown finish
    return 0


if __name__ == "__main__":
    sys.exit(main())
