"""A local herd fleet for benchmarks: one emulator, a Ray head and one worker Ray node.

``local_fleet`` runs ``actors.localfleet.LocalFleet``'s steps itself because the
benchmark wants the head to hold only the router and Serve (``LocalFleet.start`` puts a
NodeActor on the first Ray node) and a choice of Serve replicas.

Run as a script it is the *fleet holder* that ``bench/overhead.py`` starts once per Serve
mode (the ``RAY_SERVE_*`` variables must be set before Ray starts, so every mode gets its
own cluster and its own process)::

    python bench/_fleet.py --mode haproxy

It prints one line ``HERD_FLEET_READY {json}`` when the endpoint answers, then holds the
fleet until its stdin closes (or SIGTERM), and tears everything down.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
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
    startup_s: float


@contextmanager
def local_fleet(
    mode: str = "haproxy",
    profile: str = "instant",
    heartbeat_interval: float = 0.5,
    num_parallel: int = 64,
    replicas: int = 1,
) -> Iterator[Fleet]:
    """Head (router + Serve, no NodeActor) and one worker Ray node with the NodeActor
    over one emulator, built from ``actors.localfleet.LocalFleet``'s steps (its
    ``start`` puts a NodeActor on the head and always deploys one Serve replica)."""
    from actors.cluster import connect
    from actors.localfleet import LocalFleet, NodeSpec
    from actors.router import deploy_router_actor
    from herd.localray import free_port
    from herd.settings import NodeSettings, load_settings
    from serve_app.app import deploy_serve

    started = time.perf_counter()
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
    try:
        fleet.cluster.start_head(HEAD)
        fleet.cluster.add_worker(NODE)
        emulator = fleet.start_emulator(NODE, profile)
        connect(fleet.cluster.address, timeout=30)
        deploy_router_actor(settings, ray_node_id=fleet.ray_node_id(HEAD))
        fleet.deploy_node(spec)
        fleet.endpoint = deploy_serve(settings, replicas=replicas)
        fleet.wait_online(1, timeout=90)
        yield Fleet(mode, fleet.endpoint, emulator, NODE, time.perf_counter() - started)
    finally:
        fleet.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Hold a local herd fleet for a benchmark.")
    parser.add_argument("--mode", choices=MODES, default="haproxy")
    parser.add_argument("--profile", default="instant")
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args(argv)
    # The parent (the load generator) owns Ctrl-C: it closes our stdin, or sends SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    with local_fleet(args.mode, args.profile, replicas=args.replicas) as fleet:
        info: dict[str, Any] = asdict(fleet)
        print(f"{READY} {json.dumps(info)}", flush=True)
        sys.stdin.readline()  # EOF (or any line) means: tear down
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the teardown finish
    return 0


if __name__ == "__main__":
    sys.exit(main())
