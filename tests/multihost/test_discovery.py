"""mDNS discovery across hosts: the RouterActor on dev1 advertises the head on dev1's
network, and a box in another namespace finds it as ``herd join`` without HEAD does.
Multicast stays on the suite's bridge (every interface a namespace has is its veth and
its own loopback)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .hosts import REPO, HostFleet

pytestmark = [pytest.mark.multihost]

FIND = (
    "from launch.cluster_cmds import _discovered_head\n"
    "from herd.discovery import discover\n"
    "print('HEAD', _discovered_head())\n"
    "(ad,) = discover(timeout=3.0)\n"
    "print('AD', ad.endpoint_port, ad.herd_version, ad.ray_version, ad.python)\n"
)


def test_another_host_finds_the_head_over_mdns(hosts: HostFleet) -> None:
    import platform

    import ray

    import herd

    dev2 = hosts.hosts["dev2"]
    done = subprocess.run(
        dev2.net.command([sys.executable, "-c", FIND], REPO),
        capture_output=True,
        text=True,
        env=hosts.herd_env(dev2),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["HEAD"] == hosts.gcs, done.stdout  # dev1's address and GCS port
    assert "found the head" in done.stdout
    assert lines["AD"].split() == [
        "11435",
        herd.__version__,
        ray.__version__,
        platform.python_version(),
    ]
