"""The multi-host suite's fleet: four hosts, each its own network namespace, IP, Ollama
emulator, Ray node and herd (``tests/multihost/hosts.py``).

dev1 (the Ray head, router and endpoint), dev2 and dev3 start with the fleet: dev1 with
``ray start`` and ``herd deploy``, dev2 with the one command ``herd join HEAD
--foreground``, dev3 with ``ray start`` and the service form ``herd deploy
--foreground``. dev4 is added by ``test_hosts.py``'s first case (a host that joins
late), winbox (an emulator alone, no Ray: a remote node) by ``test_actors.py``'s last.
The cases run in file order on this one fleet, each leaving it as the next expects.
Everything the fixture built is removed at the end, after a failure too
(``Network.close``). Multi-host tests run before every other test of a session, so the
shared loopback fleet of ``tests/conftest.py`` is not yet running beside them (two
cores).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import partial

import pytest

from .hosts import HostFleet, timed_wait

FIRST = ("dev1", 11), ("dev2", 12), ("dev3", 13)


def _serving(fleet: HostFleet, name: str, proc: subprocess.Popen[bytes]) -> bool:
    return fleet.said(name, "serving;") or proc.poll() is not None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("multihost") is None)


@pytest.fixture(scope="session")
def hosts() -> Iterator[HostFleet]:
    fleet = HostFleet()
    try:
        fleet.net.create()
        for name, number in FIRST:
            fleet.add_host(name, number)
            fleet.start_sim(fleet.hosts[name])
        head, joined, worker = (fleet.hosts[name] for name, _ in FIRST)
        fleet.start_ray(head)
        fleet.start_ray(worker, wait=False)
        fleet.wait_ray(worker)
        fleet.deploy(head)
        # dev2: `herd join --foreground`; dev3: `herd deploy --foreground` (Ray by hand).
        services = fleet.join_foreground(joined), fleet.deploy_foreground(worker)
        for host, proc in zip((joined, worker), services, strict=True):
            timed_wait(partial(_serving, fleet, host.name, proc), 180, f"{host.name}'s service")
            assert proc.poll() is None, "".join(host.output)
        timed_wait(lambda: {"dev1", "dev2", "dev3"} <= fleet.online(), 60, "3 hosts online")
        yield fleet
    finally:
        fleet.close()
