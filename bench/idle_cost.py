"""What an idle fleet costs each device: CPU of Ray's processes and herd's, per device.

Starts a local fleet of emulated devices (one Ray node each, on 127.0.0.1, the same
processes a real box runs: raylet, Ray's agents, the NodeActor; on the head also the
GCS, the RouterActor, Serve's controller, proxy, HAProxy and the ingress replica),
lets it settle, then reads every process's CPU time over a window with no requests.
The emulators stand in for Ollama and are not counted. Each variant (Ray's
defaults, then the lean Ray options herd's launchers use: ``launch/localray.py``) runs
one after the other in one run.

    python bench/idle_cost.py [--devices 5] [--window 30] [--variants default,lean]

Prints a table per variant and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

from herd.settings import load_settings
from launch.localfleet import LocalFleet, NodeSpec
from launch.localray import LocalRay, free_port

PROFILES = ("mac-studio", "gaming-pc", "laptop", "mac-mini", "mac-mini")


def component(proc: psutil.Process) -> str:
    """Which part of the fleet a process is, from its command line."""
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return "gone"
    for marker, name in (
        ("ray::NodeActor", "herd NodeActor"),
        ("ray::RouterActor", "herd RouterActor"),
        ("ray::ServeReplica", "herd ingress replica"),
        ("ray::ServeController", "Serve controller"),
        ("ray::ProxyActor", "Serve proxy"),
        ("ray::HAProxyManager", "Serve proxy"),
        ("ray::DashboardAgent", "Ray dashboard agent"),
        ("ray::RuntimeEnvAgent", "Ray runtime-env agent"),
        ("ray.util.client.server", "Ray client server"),
        ("haproxy", "HAProxy"),
        ("gcs_server", "Ray GCS"),
        ("raylet", "Ray raylet"),
        ("dashboard/agent.py", "Ray dashboard agent"),
        ("runtime_env/agent", "Ray runtime-env agent"),
        ("log_monitor", "Ray log monitor"),
        ("monitor.py", "Ray autoscaler monitor"),
        ("launch.ray_node", "ray start"),
        ("ray::IDLE", "Ray idle worker"),
        ("default_worker.py", "Ray idle worker"),
    ):
        if marker in cmd:
            return name
    return "other: " + cmd[:40]


def fleet_processes(fleet: LocalFleet) -> list[psutil.Process]:
    """Every process of the fleet's Ray nodes (each ``ray start`` has its own session),
    HAProxy included; not the emulators."""
    sessions = {p.pid for p in fleet.cluster.procs.values()}
    emulators = {p.pid for p in fleet.emulators.values()}
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid in emulators:
                continue
            if os.getsid(proc.pid) in sessions or "haproxy-serve/" in " ".join(proc.cmdline()):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, tuple[str, float]]:
    out = {}
    for proc in procs:
        try:
            t = proc.cpu_times()
            out[proc.pid] = (component(proc), t.user + t.system)
        except (psutil.Error, OSError):
            continue
    return out


def measure(variant: str, devices: int, window: float, settle: float) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="herd-idle-"))
    settings = load_settings(host="127.0.0.1", port=free_port(), data_dir=data)
    specs = tuple(NodeSpec(f"dev{i}", "sim", PROFILES[i % len(PROFILES)]) for i in range(devices))
    fleet = LocalFleet(settings, specs)
    # LEAN_RAY_ENV / LEAN_RAY_FLAGS (launch/localray.py) on, or Ray's defaults.
    fleet.cluster = LocalRay(gcs_port=fleet.cluster.gcs_port, lean=variant == "lean")
    try:
        fleet.start()
        time.sleep(settle)  # start-up work (imports, first heartbeats) is not idle cost
        procs = fleet_processes(fleet)
        before = cpu_seconds(procs)
        t0 = time.monotonic()
        time.sleep(window)
        wall = time.monotonic() - t0
        after = cpu_seconds(procs)
    finally:
        fleet.stop()
    by_component: dict[str, float] = defaultdict(float)
    for pid, (name, seconds) in after.items():
        if pid in before:
            by_component[name] += seconds - before[pid][1]
    percent = {k: 100.0 * v / wall for k, v in sorted(by_component.items())}
    herd = sum(v for k, v in percent.items() if k.startswith("herd") or k == "HAProxy")
    total = sum(percent.values())
    return {
        "variant": variant,
        "devices": devices,
        "window_s": round(wall, 1),
        "cpu_percent_total": round(total, 2),
        "cpu_percent_per_device": round(total / devices, 2),
        "herd_percent_total": round(herd, 2),
        "components": {k: round(v, 2) for k, v in percent.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--variants", default="default,lean")
    args = parser.parse_args()
    results = [measure(v, args.devices, args.window, args.settle) for v in args.variants.split(",")]
    names = sorted({k for r in results for k in r["components"]})
    head = f"{'component (CPU % of one core)':34}" + "".join(f"{r['variant']:>10}" for r in results)
    print(head)
    print("-" * len(head))
    for name in names:
        cells = "".join(f"{r['components'].get(name, 0.0):>10.2f}" for r in results)
        print(f"{name:34}{cells}")
    print("-" * len(head))
    for key, label in (
        ("cpu_percent_total", "whole fleet"),
        ("cpu_percent_per_device", "per device"),
        ("herd_percent_total", "herd's own (actors, HAProxy)"),
    ):
        print(f"{label:34}" + "".join(f"{r[key]:>10.2f}" for r in results))
    print(json.dumps({"bench": "idle_cost", "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
