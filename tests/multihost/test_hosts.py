"""Separate hosts, real faults: what a client of a four-host fleet sees when a host
joins, leaves, crashes or loses its link (issue 11, "Proof: separate hosts").

The cases run in this order on the one fleet of ``conftest.py``: dev4 joins late and
then leaves politely; dev3's raylet is SIGKILLed (then Ray is started again, as its
service manager would, and dev3's ``herd deploy --foreground`` follows it); dev2's link
goes down and comes back (dev2 runs ``herd join --foreground``, which brings it back by
itself). Every wait is bounded and every client is joined with a bound: a client still
waiting past it fails the test. Each request's trace is read back by the id the client
sent. The measured times are printed (``-s``) as ``MEASURED ...`` lines.
"""

from __future__ import annotations

import contextlib
import signal
import time
from functools import partial

import pytest

from herd.errors import FleetUnavailable

from .clients import Call, measure, stream_on, trace, traced
from .hosts import HostFleet, timed_wait

pytestmark = [pytest.mark.multihost]

HEARTBEAT = 0.5  # FLEET_HEARTBEAT_INTERVAL of every host (hosts.py)
CLIENT_BOUND = 25.0  # no client waits longer than this on a host that is gone
OFFLINE_BOUND = 15.0  # a dead or cut-off host is offline within this


def _gone_or_offline(fleet: HostFleet, name: str) -> bool:
    node = fleet.node(name)
    return node is None or node["status"] == "offline"


def test_a_host_joins_late_and_takes_requests(hosts: HostFleet) -> None:
    host = hosts.add_host("dev4", 14)
    hosts.start_sim(host)
    hosts.start_ray(host)
    hosts.deploy_foreground(host)
    timed_wait(lambda: hosts.said("dev4", "serving"), 120, "dev4's deploy")
    # In /fleet/status and online: measured from the moment its deploy said so.
    # 1.1 s on a quiet box; 3.8-4.7 s with other fleets running on the two cores.
    joined = timed_wait(lambda: "dev4" in hosts.online(), 20 * HEARTBEAT, "dev4 online")
    measure("join: deploy done -> online in /fleet/status", joined)

    on_dev4, opened = stream_on(hosts, "dev4", tokens=60)
    for call in opened:
        call.join(CLIENT_BOUND)
    assert all(c.completed for c in opened), [(c.status, c.lines[-1:], c.error) for c in opened]
    assert on_dev4.node == "dev4"
    records = traced(hosts, opened)
    assert all(r["status"] == "ok" for r in records)
    assert {r["node_id"] for r in records} >= {"dev4"}


def test_a_host_leaves_politely_and_no_request_is_lost(hosts: HostFleet) -> None:
    proc = hosts.hosts["dev4"].procs["deploy"]
    on_dev4, opened = stream_on(hosts, "dev4", tokens=140)  # ~4 s at 35 tokens/s
    hosts.signal("dev4", "deploy", signal.SIGTERM)  # the service manager stops dev4 mid-answer
    during = [Call(hosts.endpoint, 20).start() for _ in range(6)]  # while it drains
    for call in [*opened, *during]:
        call.join(CLIENT_BOUND + 30)
    proc.wait(60)
    lost = [(c.rid, c.status, c.lines[-1:], c.error) for c in [*opened, *during] if not c.completed]
    assert not lost, lost  # the answer on dev4 finished; nothing was lost or failed
    assert proc.returncode == 0
    out = "".join(hosts.hosts["dev4"].output)
    assert "node dev4: drained" in out and "left the fleet" in out, out
    left = timed_wait(lambda: hosts.node("dev4") is None, 10, "dev4 out of /fleet/status")
    measure("leave: drained -> gone from /fleet/status", left)
    assert on_dev4.completed
    assert all(r["status"] == "ok" for r in traced(hosts, [*opened, *during]))


def test_a_hosts_raylet_killed_mid_stream(hosts: HostFleet) -> None:
    victim = "dev3"
    mid, opened = stream_on(hosts, victim, tokens=900)  # ~26 s: still streaming at the kill
    streaming = sum(1 for c in opened if c.node == victim)  # past their first chunk
    # From now on dev3's backend holds every new request before its first chunk; bursts
    # of overlapping requests until dev3 holds some (at its backend or waiting for one
    # of its slots): requests before their first chunk.
    hosts.sim_fault(victim, kind="hang", after_chunks=0)
    waiting: list[Call] = []
    for _ in range(3):
        waiting += [Call(hosts.endpoint, 60).start() for _ in range(6)]
        with contextlib.suppress(FleetUnavailable):
            timed_wait(lambda: _in_flight(hosts, victim) > streaming, 5, "requests on dev3")
            break
    held = _in_flight(hosts, victim) - streaming
    assert held >= 1, "no request went to dev3"
    hosts.kill_raylet(victim)
    killed = time.monotonic()
    offline = timed_wait(lambda: _gone_or_offline(hosts, victim), OFFLINE_BOUND, "dev3 offline")
    measure("raylet SIGKILL -> offline in /fleet/status", offline)
    # Every attempt still open on dev3 ends as soon as it is offline (the ingress fences
    # them): their bookings are released, the held ones retried elsewhere.
    timed_wait(lambda: _in_flight(hosts, victim) == 0, 5, "dev3's attempts ended")
    measure("raylet SIGKILL -> no attempt open on dev3", time.monotonic() - killed)

    mid.join(CLIENT_BOUND)
    measure("raylet SIGKILL -> the cut stream's client done", _ended(mid) - killed)
    # dev1 and dev2 run one request at a time (FLEET_NODE_NUM_PARALLEL is 1 in hosts.py):
    # what is retried off dev3 queues there behind the other ~26 s streams, a wait on a
    # live host, not on the gone one; the bound counts from when those streams end.
    for call in opened:
        call.join(60)
    freed = max(map(_ended, opened))
    for call in waiting:
        call.join(max(0.0, freed + CLIENT_BOUND - time.monotonic()))
    retried_at = [_ended(c) for c in waiting if c.headers.get("x-herd-retries", "0") != "0"]
    last = max(retried_at, default=killed)
    measure("raylet SIGKILL -> the last request held on dev3 served elsewhere", last - killed)
    measure("the live hosts' long streams done -> that request served", last - freed)
    # The stream past its first chunk ends with Ollama's error line (status 200 already
    # sent), never a hang; a truncated body from the ingress is reported if it happens.
    assert mid.status == 200 and (mid.error_event or mid.error), (mid.lines[-2:], mid.error)
    assert mid.error_event, f"stream cut without the dialect's error event: {mid.error}"
    # The one waiting on dev3 before its first chunk was retried on another host.
    assert all(c.completed for c in waiting), [(c.status, c.lines[-1:], c.error) for c in waiting]
    retried = [c for c in waiting if c.headers.get("x-herd-retries", "0") != "0"]
    assert len(retried) >= held, [c.headers for c in waiting]
    assert all(c.node != victim for c in retried)
    assert all(c.completed for c in opened if c is not mid)
    records = {r["request_id"]: r for r in traced(hosts, [*opened, *waiting])}
    assert records[mid.rid]["status"] == "error" and records[mid.rid]["node_id"] == victim
    assert all(records[c.rid]["retries"] >= 1 for c in retried)

    # dev3's Ray unit (a service manager) starts Ray again; its `herd deploy
    # --foreground`, up all along, follows the new Ray node and deploys dev3's NodeActor
    # there. Measured from the restart to dev3 online again, then it serves.
    hosts.clear_faults(victim)
    since = len(hosts.hosts[victim].output)
    t0 = time.monotonic()
    hosts.restart_ray_node(victim)
    deployed = partial(hosts.said, victim, "deployed again", since)
    timed_wait(lambda: deployed() and victim in hosts.online(), 60, "dev3 online again")
    measure("Ray restarted -> online (herd deploy --foreground followed)", time.monotonic() - t0)
    assert hosts.said(victim, "this box's Ray node is back", since), hosts.hosts[victim].output
    again, more = stream_on(hosts, victim, tokens=20)
    for call in more:
        call.join(CLIENT_BOUND)
    assert again.completed and trace(hosts, again.rid)["node_id"] == victim


def _ended(call: Call) -> float:
    """When ``call``'s client was done (monotonic)."""
    return call.t0 + call.seconds


def _in_flight(fleet: HostFleet, name: str) -> int:
    return int((fleet.node(name) or {}).get("in_flight", 0))


def test_a_hosts_link_goes_down_mid_stream_and_comes_back(hosts: HostFleet) -> None:
    victim = "dev2"
    mid, opened = stream_on(hosts, victim, tokens=900)
    since = len(hosts.hosts[victim].output)  # herd join's lines from the cut on
    hosts.net.link(victim, up=False)  # the box's cable is pulled mid-answer
    cut = time.monotonic()
    during: list[Call] = []
    try:
        offline = timed_wait(lambda: _gone_or_offline(hosts, victim), OFFLINE_BOUND, "offline")
        measure("link down -> offline in /fleet/status", offline)
        mid.join(CLIENT_BOUND)
        measure("link down -> the cut stream's client done", _ended(mid) - cut)
        assert mid.status == 200 and mid.error_event, (mid.lines[-2:], mid.error)
        # While dev2 is cut off, new requests are served by the others.
        during += [Call(hosts.endpoint, 20).start() for _ in range(4)]
        for call in during:
            call.join(CLIENT_BOUND)
        assert all(c.completed and c.node != victim for c in during)
    finally:
        hosts.net.link(victim, up=True)
    back = time.monotonic()
    # Ray declared dev2's node dead while it was cut off, and a dead Ray node never
    # rejoins (ENVIRONMENT.md): its raylet exits once it hears so. dev2 runs
    # `herd join --foreground`, which starts Ray again as soon as the head answers and
    # deploys dev2's NodeActor on the new Ray node: no manual step, no service manager.
    join, said = hosts.hosts[victim].procs["join"], hosts.hosts[victim].output

    def redeployed() -> bool:
        assert join.poll() is None, "".join(said)  # herd join stays up through it all
        return hosts.said(victim, "deployed again", since) and victim in hosts.online()

    timed_wait(redeployed, 90, "dev2 back")
    measure("link up -> online again (herd join rejoined by itself)", time.monotonic() - back)
    assert hosts.said(victim, "Ray on this box ended", since), said
    assert hosts.said(victim, "this box's Ray node is back", since), said
    again, more = stream_on(hosts, victim, tokens=20)
    for call in [*opened, *more]:
        call.join(CLIENT_BOUND)
    assert again.completed
    records = {r["request_id"]: r for r in traced(hosts, [*opened, *during, *more])}
    assert records[mid.rid]["status"] == "error" and records[again.rid]["node_id"] == victim
