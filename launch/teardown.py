"""``herd stop`` and ``herd drain``: take nodes out gracefully, then remove herd's actors."""

from __future__ import annotations

from collections.abc import Iterator

import ray

from actors import NAMESPACE, ROUTER_NAME, node_actor_name
from actors.naming import get_named, kill_named
from herd.settings import Settings
from launch.haproxy import kill_orphaned_haproxy


def _node_ids() -> list[str]:
    router = get_named(ROUTER_NAME, NAMESPACE)
    if router is None:
        return []
    status = ray.get(router.status.remote(), timeout=10)
    return [n["node_id"] for n in status["nodes"]]


def drain_node(node_id: str, timeout: float = 60.0) -> str:
    handle = get_named(node_actor_name(node_id), NAMESPACE)
    if handle is None:
        return f"node {node_id}: no such node actor"
    done = ray.get(handle.drain.remote(timeout), timeout=timeout + 15)
    return f"node {node_id}: drained" if done else f"node {node_id}: drain timed out"


def leave_fleet(node_id: str, drain_timeout: float = 60.0) -> Iterator[str]:
    """Take one node out for good: drain it, remove its actor, and tell the router."""
    yield drain_node(node_id, drain_timeout)
    kill_named(node_actor_name(node_id), NAMESPACE, graceful="shutdown")
    yield f"node {node_id}: actor removed"
    router = get_named(ROUTER_NAME, NAMESPACE)
    if router is not None:
        ray.get(router.forget_node.remote(node_id), timeout=10)
        yield f"node {node_id}: left the fleet"


def stop_herd(settings: Settings, drain_timeout: float = 30.0) -> Iterator[str]:
    """Drain every node (in-flight requests finish), then remove Serve and the actors."""
    node_ids = _node_ids()
    pending = {}
    for node_id in node_ids:
        handle = get_named(node_actor_name(node_id), NAMESPACE)
        if handle is not None:
            pending[node_id] = handle.drain.remote(drain_timeout)
    for node_id, ref in pending.items():
        try:
            done = ray.get(ref, timeout=drain_timeout + 15)
            yield f"node {node_id}: {'drained' if done else 'drain timed out'}"
        except Exception as exc:
            yield f"node {node_id}: drain failed ({type(exc).__name__})"
    try:
        from ray import serve

        head = _head_ray_node_id()
        serve.shutdown()
        yield "serve app removed"
        # Serve's HAProxy can outlive its manager actor and keep the port (on the head).
        if head and (pids := kill_orphaned_haproxy(head, settle=1.0)):
            yield f"stopped HAProxy left behind by Serve (pid {', '.join(map(str, pids))})"
    except Exception as exc:
        yield f"serve shutdown failed: {exc}"
    for node_id in node_ids:
        kill_named(node_actor_name(node_id), NAMESPACE, graceful="shutdown")
        yield f"node {node_id}: actor removed"
    kill_named(ROUTER_NAME, NAMESPACE, graceful="close_advertisement")
    yield "router removed"


def _head_ray_node_id() -> str | None:
    from actors.cluster import head_ray_node_id

    try:
        return str(head_ray_node_id())
    except Exception:
        return None
