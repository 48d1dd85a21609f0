"""Helpers for tests/integration/test_ray_lockdown.py: the listening sockets of a local
fleet's processes (from /proc), and probes that knock on one without any credential."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.ray_auth import Address, listening_sockets
from launch.haproxy import _haproxy_pids

# Unary methods of the gRPC services Ray serves on its ports (GCS, raylet, core
# workers, dashboard agent, Serve replicas, Ray Client). Read-only ones: the probe must
# do no harm on a server that wrongly answers it. Streaming methods are left alone:
# Ray's syncer service checks a metadata key with a fatal assertion *before* it checks
# the token, so a bare StartSync call aborts the raylet (measured, Ray 2.60).
GRPC_PROBES = (
    "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo",
    "/ray.rpc.NodeManagerService/GetNodeStats",
    "/ray.rpc.CoreWorkerService/GetCoreWorkerStats",
    "/ray.rpc.ReporterService/HealthCheck",
    "/ray.rpc.RayletDriver/ClusterInfo",
    "/ray.serve.ASGIService/HandleRequest",
)


@dataclass(frozen=True)
class Listener:
    address: Address
    port: int
    pid: int
    command: str

    def __str__(self) -> str:
        return f"{self.address}:{self.port} ({self.command}, pid {self.pid})"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.update(int(c) for c in (task / "children").read_text().split())
    except OSError:
        pass
    return found


def process_tree(roots: list[int]) -> set[int]:
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(_children(pid))
    return seen


def fleet_pids(fleet: Any) -> set[int]:
    """Every process of the fleet: the Ray nodes and what they started, the emulators,
    Serve's HAProxy (it leaves Ray's process tree) and this test process (the driver)."""
    roots = [p.pid for p in fleet.cluster.procs.values()]
    roots += [p.pid for p in fleet.emulators.values()]
    roots += _haproxy_pids(f"haproxy-serve/{fleet.head_ray_node_id}".encode())
    return process_tree([*roots, os.getpid()])


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def _command(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    return " ".join(a.decode(errors="replace") for a in argv[:3])[:80]


def listeners(pids: set[int]) -> list[Listener]:
    by_inode = {inode: (addr, port) for addr, port, inode in listening_sockets()}
    found = set()
    for pid in pids:
        for inode in _socket_inodes(pid) & by_inode.keys():
            addr, port = by_inode[inode]
            found.add(Listener(addr, port, pid, _command(pid)))
    return sorted(found, key=lambda s: (s.port, s.pid))


def lan_address() -> str | None:
    """A non-loopback IPv4 address of this machine (what a neighbour would dial)."""
    import psutil

    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    return None


def dial_address(listener: Listener, lan: str | None) -> str:
    """Where a client on the LAN reaches ``listener``."""
    if listener.address.is_unspecified:
        return lan or "127.0.0.1"
    host = str(listener.address)
    return f"[{host}]" if ":" in host else host


def http_status(host: str, port: int, path: str = "/") -> int | None:
    """The status of a bare ``GET`` (no credential), or None when it is not HTTP/1."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=5) as s:
            s.settimeout(5)
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            s.sendall(request.encode())
            head = s.recv(64)
    except OSError:
        return None
    if not head.startswith(b"HTTP/1."):
        return None
    return int(head.split()[1])


def grpc_answers(host: str, port: int) -> dict[str, str]:
    """Each probe method's status code name, without a token (UNIMPLEMENTED left out:
    that service is not on this port); {} when the port does not speak gRPC."""
    import grpc

    answers: dict[str, str] = {}
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=5)
        except grpc.FutureTimeoutError:
            return answers
        for method in GRPC_PROBES:
            call = channel.unary_unary(method, request_serializer=_raw, response_deserializer=_raw)
            try:
                call(b"", timeout=5)
                answers[method] = "OK"
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    answers[method] = exc.code().name
    return answers


def _raw(data: bytes) -> bytes:
    return data
