"""Thin Ray actors over the plain-Python core in ``herd``."""

NAMESPACE = "herd"
ROUTER_NAME = "herd-router"


def node_actor_name(node_id: str) -> str:
    return f"herd-node:{node_id}"
