"""Ray's token auth and loopback binding, as herd's drivers and ``herd deploy`` use them.

- ``reload_auth`` / ``has_token``: Ray reads ``RAY_AUTH_MODE`` and the token once per
  process; a driver re-reads them before it joins.
- ``cluster_node_addresses``: the nodes' addresses, asked of the GCS with this process's
  token (a wrong or missing token fails here within a second, not after ``ray.init``'s
  retries).
- ``loopback_kept``: Ray swaps 127.0.0.1 for the machine's LAN address wherever it is
  given one; inside this block it keeps it (a one-machine fleet started by
  ``launch.localray`` runs every node on 127.0.0.1, and its drivers must too).
- ``gcs_requires_token`` / ``reachable_beyond_loopback``: what ``herd deploy`` checks
  before it puts herd on a cluster (one without auth, reachable from the network, runs
  anyone's code).
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from herd.errors import FleetUnavailable

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WRONG_TOKEN = (
    "the cluster refused this machine's Ray token: use the head's "
    "(`ray get-auth-token` there) in ~/.ray/auth_token or RAY_AUTH_TOKEN"
)
NO_TOKEN = (
    "Ray token auth is on (RAY_AUTH_MODE=token) but this machine has no token: copy the "
    "cluster's token (`ray get-auth-token` on the head) to ~/.ray/auth_token or set "
    "RAY_AUTH_TOKEN (RAY_AUTH_MODE=disabled only joins a cluster started without auth)"
)


def reload_auth() -> None:
    """Read ``RAY_AUTH_MODE`` and the token again (Ray caches both per process), so a
    process that set them after importing ray, or joins a second cluster, uses them."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def has_token() -> bool:
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

    return bool(AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True))


def cluster_node_addresses(gcs: str, timeout: float) -> list[str]:
    """The addresses of the cluster's alive nodes, or ``FleetUnavailable`` (with what to
    do when the GCS refused this process's token)."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    try:
        nodes = GcsClient(address=gcs).get_all_node_info(timeout=timeout)
    except Exception as exc:
        if "auth" in f"{type(exc).__name__} {exc}".lower():
            msg = f"could not join the Ray cluster at {gcs}: {WRONG_TOKEN}"
            raise FleetUnavailable(msg) from None
        raise FleetUnavailable(f"could not join the Ray cluster at {gcs}: {exc}") from None
    return [str(n.node_manager_address) for n in nodes.values() if n.state == 0]  # ALIVE


def _keep_host(host: str) -> str:
    if not host:
        raise ValueError(f"Malformed host: {host!r}")
    return host


@contextmanager
def loopback_kept() -> Iterator[None]:
    """Within the block, Ray takes 127.0.0.1 for what it is (``ray.init``'s address and
    ``_node_ip_address``) instead of swapping in the machine's LAN address."""
    from ray._private import services

    original = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = _keep_host
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = original


def keep_loopback_for_good() -> None:
    """``loopback_kept`` for the rest of this process (``launch.ray_node``)."""
    from ray._private import services

    services.resolve_ip_for_localhost = _keep_host


# A GCS method every version has; an empty request is a valid one (all nodes).
_PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo"


def gcs_requires_token(gcs: str, timeout: float = 5.0) -> bool:
    """Does the GCS at ``gcs`` refuse a call that carries no token? (A raw gRPC call, not
    through Ray's client, which would add this process's token.)"""
    import grpc

    with grpc.insecure_channel(gcs) as channel:
        call = channel.unary_unary(
            _PROBE_METHOD, request_serializer=_raw, response_deserializer=_raw
        )
        try:
            call(b"", timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return True
            msg = f"could not ask the Ray GCS at {gcs}: {exc.details()}"
            raise FleetUnavailable(msg) from None
    return False


def _raw(data: bytes) -> bytes:
    return data


def reachable_beyond_loopback(gcs: str) -> bool:
    """Can another machine reach the GCS at ``gcs``? Yes for any non-loopback address;
    for a loopback one, when its port also listens on another (or every) interface of
    this machine. Without ``/proc`` (macOS), assume yes."""
    host, _, port = gcs.rpartition(":")
    if host.strip("[]") not in LOOPBACK_HOSTS:
        return True
    try:
        sockets = listening_sockets()
    except OSError:
        return True
    return any(p == int(port) and not a.is_loopback for a, p, _inode in sockets)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def listening_sockets() -> list[tuple[Address, int, int]]:
    """Every listening TCP socket on this machine: (local address, port, inode), from
    ``/proc/net/tcp`` and ``tcp6``. A v4-mapped v6 address is given as its v4 one."""
    found: list[tuple[Address, int, int]] = []
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            found.append((_decode_ip(hex_ip), int(hex_port, 16), int(fields[9])))
    if not found and not Path("/proc/net/tcp").exists():
        raise OSError("no /proc/net/tcp on this system")
    return found


def _decode_ip(hex_ip: str) -> Address:
    # /proc prints each 32-bit word in host byte order.
    words = [bytes.fromhex(hex_ip[i : i + 8]) for i in range(0, len(hex_ip), 8)]
    raw = b"".join(w[::-1] if sys.byteorder == "little" else w for w in words)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    v6 = ipaddress.IPv6Address(raw)
    return v6.ipv4_mapped or v6
