"""Separate hosts, real faults in herd's own processes: the RouterActor or a NodeActor
SIGKILLed, a host's Ollama killed and started again, and a device without Ray joined
with ``herd add-node`` whose Ollama goes away and comes back (issue 11).

Each case leaves the fleet as it found it (dev1, dev2 and dev3 online and serving, no
remote node), so the cases of ``test_hosts.py`` that follow see the fleet of
``conftest.py``. Every client is bounded (a client waiting past its bound fails the
test) and every request's trace is read back by the id the client sent. Recovery times
are printed (``-s``) as ``MEASURED ...`` lines.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from .clients import Call, Load, measure, stream_on, trace, traced
from .hosts import HostFleet, timed_wait

pytestmark = [pytest.mark.multihost]

CLIENT_BOUND = 25.0  # no client waits longer than this while an actor or backend is down
RESTART_BOUND = 60.0  # Ray restarts a killed actor within this
DOWN_BOUND = 10.0  # a dead backend is seen down (heartbeats every 0.5 s) within this
FLEET = {"dev1", "dev2", "dev3"}


def _all_served(calls: list[Call], not_on: str) -> None:
    """Every call answered in full, none by ``not_on``."""
    bad = [(c.rid, c.status, c.node, c.lines[-1:], c.error) for c in calls]
    assert all(c.completed and c.node != not_on for c in calls), bad


def _serves(fleet: HostFleet, name: str) -> None:
    """A stream served by ``name`` (header and trace agree), the others completed too."""
    on, opened = stream_on(fleet, name, tokens=60)
    for call in opened:
        call.join(CLIENT_BOUND)
    assert all(c.completed for c in opened), [(c.status, c.lines[-1:]) for c in opened]
    assert on.node == name and trace(fleet, on.rid)["node_id"] == name
    assert all(r["status"] == "ok" for r in traced(fleet, opened))


def _backend_down(fleet: HostFleet, name: str) -> bool:
    node = fleet.node(name)
    return node is not None and not node["backend_ok"]


def test_router_killed_under_load_comes_back_and_loses_no_trace(hosts: HostFleet) -> None:
    head = hosts.head
    before = hosts.online()
    assert before >= FLEET, before
    old = hosts.actor_pid(head, "RouterActor")
    assert old is not None, "no RouterActor process on the head"
    load = Load(hosts.endpoint, tokens=20).start()
    load.wait_for(8)  # traffic flows before the kill
    os.kill(old, signal.SIGKILL)
    t_kill = time.monotonic()

    def restarted() -> bool:
        return (hosts.actor_pid(head, "RouterActor") or old) != old

    timed_wait(restarted, RESTART_BOUND, "the RouterActor restarted")
    measure("router SIGKILL -> actor restarted", time.monotonic() - t_kill)
    # Its fleet state is rebuilt from heartbeats: every node back in /fleet/status.
    timed_wait(lambda: hosts.online() >= before, RESTART_BOUND, "every node back")
    measure("router SIGKILL -> every node back in /fleet/status", time.monotonic() - t_kill)
    load.wait_for(8)  # and the fleet serves after it
    calls = load.stop(CLIENT_BOUND + 5)

    slow = [(c.rid, round(c.seconds, 1)) for c in calls if c.seconds > CLIENT_BOUND]
    assert not slow, slow
    # Every request ended cleanly: answered in full, or 503 while the router restarted.
    unclean = [(c.rid, c.status, c.lines[-1:], c.error) for c in calls]
    assert all(c.completed or c.status == 503 for c in calls), unclean
    served = [c for c in calls if c.completed]
    at_kill = [c for c in calls if c.t0 < t_kill < c.t0 + c.seconds]
    refused = sum(1 for c in calls if c.status == 503)
    print(f"NOTE: {len(calls)} requests, {len(at_kill)} in flight at the kill, {refused} 503")
    assert at_kill, "no request was in flight when the router was killed"
    assert len(served) >= 16, unclean
    # No trace is lost: the ones the router acknowledged from its journal, the rest
    # shipped again by the ingress.
    records = {r["request_id"]: r for r in traced(hosts, calls)}
    assert all(records[c.rid]["status"] == "ok" for c in served)


def test_node_actor_killed_is_restarted_and_serves_again(hosts: HostFleet) -> None:
    victim = "dev2"
    old = hosts.actor_pid(victim, "NodeActor")
    assert old is not None, f"no NodeActor process on {victim}"
    os.kill(old, signal.SIGKILL)
    t_kill = time.monotonic()
    # Requests sent while its actor is down go to the other hosts, or are retried there.
    during = [Call(hosts.endpoint, 20).start() for _ in range(4)]

    def restarted() -> bool:
        return (hosts.actor_pid(victim, "NodeActor") or old) != old

    timed_wait(restarted, RESTART_BOUND, f"{victim}'s NodeActor restarted")
    measure("node actor SIGKILL -> actor restarted", time.monotonic() - t_kill)
    timed_wait(lambda: victim in hosts.online(), RESTART_BOUND, f"{victim} online again")
    measure("node actor SIGKILL -> online in /fleet/status", time.monotonic() - t_kill)
    for call in during:
        call.join(CLIENT_BOUND)
    bad = [(c.rid, c.status, c.node, c.lines[-1:], c.error) for c in during]
    assert all(c.completed for c in during), bad
    assert all(r["status"] == "ok" for r in traced(hosts, during))
    _serves(hosts, victim)


def test_a_hosts_ollama_dies_and_comes_back(hosts: HostFleet) -> None:
    victim = "dev3"
    hosts.stop_sim(victim)  # its Ollama crashed; herd's node on it lives on
    down = timed_wait(lambda: _backend_down(hosts, victim), DOWN_BOUND, "backend down")
    measure("backend SIGKILL -> backend down in /fleet/status", down)
    node = hosts.node(victim)
    assert node is not None and node["status"] != "offline", node  # the node still beats
    assert victim not in hosts.online()
    during = [Call(hosts.endpoint, 20).start() for _ in range(6)]  # go elsewhere
    for call in during:
        call.join(CLIENT_BOUND)
    _all_served(during, not_on=victim)
    assert all(r["status"] == "ok" for r in traced(hosts, during))

    t0 = time.monotonic()
    hosts.start_sim(hosts.hosts[victim])
    timed_wait(lambda: victim in hosts.online(), RESTART_BOUND, f"{victim}'s backend back")
    measure("backend restarted -> healthy in /fleet/status", time.monotonic() - t0)
    _serves(hosts, victim)


def test_a_remote_node_serves_goes_down_and_comes_back(hosts: HostFleet) -> None:
    name = "winbox"  # a device with Ollama and no Ray: an emulator alone in its namespace
    device = hosts.hosts.get(name) or hosts.add_host(name, 15)
    hosts.start_sim(device)
    head = hosts.hosts[hosts.head]
    args = ["--ollama", device.sim_url, "--memory", "16", "--parallel", "2"]
    added = hosts.herd(head, "add-node", name, *args, "--address", hosts.gcs)
    assert added.returncode == 0, added.stderr[-2000:]
    assert f"node {name} added" in added.stdout, added.stdout
    try:
        timed_wait(lambda: name in hosts.online(), RESTART_BOUND, f"{name} online")
        entry = hosts.node(name)
        assert entry is not None and entry["remote"] is True, entry
        _serves(hosts, name)

        hosts.stop_sim(name)  # the device's Ollama goes away
        down = timed_wait(lambda: name not in hosts.online(), DOWN_BOUND, f"{name} down")
        measure("remote Ollama killed -> down in /fleet/status", down)
        during = [Call(hosts.endpoint, 20).start() for _ in range(6)]
        for call in during:
            call.join(CLIENT_BOUND)
        _all_served(during, not_on=name)
        assert all(r["status"] == "ok" for r in traced(hosts, during))

        t0 = time.monotonic()
        hosts.start_sim(device)
        timed_wait(lambda: name in hosts.online(), RESTART_BOUND, f"{name} back")
        measure("remote node back: Ollama up -> online in /fleet/status", time.monotonic() - t0)
        _serves(hosts, name)
    finally:
        gone = hosts.herd(head, "remove-node", name, "--address", hosts.gcs)
        timed_wait(lambda: hosts.node(name) is None, 30, f"{name} out of /fleet/status")
        if device.procs["sim"].poll() is None:
            hosts.stop_sim(name)
    assert gone.returncode == 0 and "left the fleet" in gone.stdout, gone.stderr[-2000:]
