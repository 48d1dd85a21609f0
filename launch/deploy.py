"""What ``herd deploy`` does on a box that joined the cluster."""

from __future__ import annotations

import socket
from typing import Any

import ray

from actors.cluster import head_ray_node_id, this_ray_node_id
from actors.node import deploy_node_actor
from actors.ray_auth import gcs_requires_token, reachable_beyond_loopback
from herd.errors import ConfigError
from herd.settings import Settings
from launch.admin import with_admin_token
from launch.extras import require

OPEN_CLUSTER = (
    "the Ray cluster at {gcs} runs without token auth and its GCS port is reachable from "
    "the network, so anyone there can run code on every device: restart Ray on every "
    "machine with RAY_AUTH_MODE=token and the same token (`ray get-auth-token --generate` "
    "on the head; README, 'Building a real fleet'), then deploy again"
)


def refuse_open_cluster(gcs: str | None = None) -> None:
    """``ConfigError`` when the cluster this process joined answers calls without a token
    and its GCS can be reached from another machine."""
    gcs = gcs or str(ray.get_runtime_context().gcs_address)
    if reachable_beyond_loopback(gcs) and not gcs_requires_token(gcs):
        raise ConfigError(OPEN_CLUSTER.format(gcs=gcs))


def deploy(
    settings: Settings,
    *,
    node_name: str | None = None,
    ray_node_id: str | None = None,
    head: bool | None = None,
    with_node: bool = True,
) -> dict[str, Any]:
    """This box's NodeActor; on the head also the RouterActor and the Serve app.

    Idempotent: each named actor is replaced cleanly when it already exists. Refuses a
    cluster without token auth whose GCS other machines can reach, and a head without the
    ``[head]`` extra (before deploying anything).
    """
    refuse_open_cluster()
    ray_node_id = ray_node_id or this_ray_node_id()
    head_id = head_ray_node_id()
    is_head = (ray_node_id == head_id) if head is None else head
    result: dict[str, Any] = {"ray_node_id": ray_node_id, "head": is_head}
    if is_head:
        require("head", "the head (router, endpoint, dashboard, traces)")
        from actors.router import deploy_router_actor  # [head]: the trace store, /metrics

        settings, result["admin_token_created"] = with_admin_token(settings)
        deploy_router_actor(settings, ray_node_id=ray_node_id)
        result["router"] = "herd-router"
    if with_node:
        name = node_name or settings.node.name or socket.gethostname()
        node = deploy_node_actor(settings, name, ray_node_id)
        result["node"] = name
        result["node_handle"] = node
    if is_head:
        from serve_app.app import deploy_serve

        result["endpoint"] = deploy_serve(settings)
    return result
