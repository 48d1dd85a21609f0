"""Joining the Ray cluster from a CLI process or a Python caller, always with a timeout.

Token auth is the default: unless the operator set ``RAY_AUTH_MODE`` (``disabled`` joins
a cluster started without auth), a driver joins with ``RAY_AUTH_MODE=token`` and the
token Ray finds (``RAY_AUTH_TOKEN``, the file in ``RAY_AUTH_TOKEN_PATH``, or
``~/.ray/auth_token``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

import ray

from actors import NAMESPACE, ray_auth
from herd.errors import FleetUnavailable


def _gcs_address(address: str) -> str | None:
    """host:port of the GCS for ``address`` ("auto" reads the local ``ray start`` session)."""
    if address not in ("auto", ""):
        return address.removeprefix("ray://").split("/")[0]
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env
    current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    try:
        return current.read_text().strip() or None
    except OSError:
        return None


def _reachable(host_port: str, timeout: float) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def connect(address: str = "auto", timeout: float = 15.0) -> None:
    """``ray.init`` into an existing cluster, or raise ``FleetUnavailable`` within seconds."""
    if ray.is_initialized():
        return
    gcs = _gcs_address(address)
    if gcs is None:
        raise FleetUnavailable(
            "no Ray cluster found on this machine: run `ray start --head` (or join one with "
            "`ray start --address=HEAD:6379`), or pass --address"
        )
    if not _reachable(gcs, min(timeout, 3.0)):
        raise FleetUnavailable(f"no Ray cluster reachable at {gcs}: is `ray start` running?")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    ray_auth.reload_auth()
    if os.environ["RAY_AUTH_MODE"].lower() == "token" and not ray_auth.has_token():
        raise FleetUnavailable(ray_auth.NO_TOKEN)
    nodes = ray_auth.cluster_node_addresses(gcs, timeout=min(timeout, 10.0))
    kwargs: dict[str, Any] = {
        "address": gcs,
        "namespace": NAMESPACE,
        "log_to_driver": False,
        "logging_level": "ERROR",
        "configure_logging": True,
    }
    # A cluster whose nodes run on 127.0.0.1 (``launch.localray``) is joined there too;
    # otherwise Ray takes a loopback address for the machine's LAN one.
    on_loopback = gcs.rpartition(":")[0] in ray_auth.LOOPBACK_HOSTS
    keep = on_loopback and "127.0.0.1" in nodes
    if on_loopback:
        kwargs["_node_ip_address"] = "127.0.0.1"
    try:
        with ray_auth.loopback_kept() if keep else contextlib.nullcontext():
            ray.init(**kwargs)
    except Exception as exc:
        hint = f" ({ray_auth.WRONG_TOKEN})" if "auth" in str(exc).lower() else ""
        raise FleetUnavailable(f"could not join the Ray cluster at {gcs}: {exc}{hint}") from None


def this_ray_node_id() -> str:
    return str(ray.get_runtime_context().get_node_id())


def head_ray_node_id() -> str | None:
    for info in ray.nodes():
        if info.get("Alive") and "node:__internal_head__" in info.get("Resources", {}):
            return str(info["NodeID"])
    return None


def ray_node_with_resource(resource: str) -> str | None:
    for info in ray.nodes():
        if info.get("Alive") and resource in info.get("Resources", {}):
            return str(info["NodeID"])
    return None
