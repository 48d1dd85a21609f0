"""What ``herd deploy`` does on a box that joined the cluster."""

from __future__ import annotations

import socket
from typing import Any

from actors.cluster import head_ray_node_id, this_ray_node_id
from actors.node import deploy_node_actor
from actors.router import deploy_router_actor
from herd.settings import Settings
from launch.admin import with_admin_token


def deploy(
    settings: Settings,
    *,
    node_name: str | None = None,
    ray_node_id: str | None = None,
    head: bool | None = None,
    with_node: bool = True,
) -> dict[str, Any]:
    """This box's NodeActor; on the head also the RouterActor and the Serve app.

    Idempotent: each named actor is replaced cleanly when it already exists.
    """
    ray_node_id = ray_node_id or this_ray_node_id()
    head_id = head_ray_node_id()
    is_head = (ray_node_id == head_id) if head is None else head
    result: dict[str, Any] = {"ray_node_id": ray_node_id, "head": is_head}
    if is_head:
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
