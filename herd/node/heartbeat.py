"""A node's heartbeat, assembled from what its agent read this beat.

:class:`herd.node.agent.NodeAgent.heartbeat` probes the backend and asks the capacity
learner; this module turns that, this machine's metrics (none for a remote node) and the
memory and disk budgets (``FLEET_NODE_MEMORY_BYTES``, ``FLEET_NODE_DISK_BYTES``) into one
:class:`~herd.domain.NodeHeartbeat`.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from herd import __version__
from herd.backends.base import Backend, BackendState
from herd.domain import NodeHeartbeat
from herd.node.media import NodeMedia
from herd.node.sysmetrics import (
    SystemMetrics,
    classify_memory_pressure,
    collect_system_metrics,
    disk_free,
    ollama_models_dir,
)
from herd.node_settings import NodeSettings

# A remote node (herd add-node) runs on another machine than its Ollama: this machine's
# load says nothing about it. Unknown is 0 (no CPU signal, memory from --memory or none).
_REMOTE_METRICS = SystemMetrics(0.0, 0, 0, 0, "normal")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def url_host(url: str) -> str:
    """The host part of ``url`` (no scheme, port or path)."""
    return url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] or url


def system_metrics(node: NodeSettings) -> SystemMetrics:
    """This machine's CPU and memory now; nothing for a remote node."""
    return _REMOTE_METRICS if node.remote else collect_system_metrics()


def build_heartbeat(
    node: NodeSettings,
    *,
    node_id: str,
    ray_node_id: str | None,
    backend: Backend,
    state: BackendState,
    metrics: SystemMetrics,
    media: NodeMedia,
    draining: bool,
    data_url: str,
    learned: dict[str, Any],
) -> NodeHeartbeat:
    """The heartbeat of this beat: the backend's ``state``, the media engines' models,
    ``metrics`` and ``learned`` (the capacity learner's fields, empty when not learning)."""
    return NodeHeartbeat(
        node_id=node_id,
        hostname=url_host(backend.url) if node.remote else socket.gethostname(),
        remote=node.remote,
        ray_node_id=ray_node_id,
        backend=backend.kind,
        backend_url=backend.url,
        backend_ok=state.ok,
        backend_version=state.version,
        herd_version=__version__,
        cpu_percent=metrics.cpu_percent,
        cpu_count=metrics.cpu_count,
        **memory_fields(node, metrics, state),
        models=state.models + media.models(),
        loaded=state.loaded + media.loaded(),
        num_parallel=node.num_parallel,
        draining=draining,
        sent_at=time.time(),
        data_url=data_url,
        disk_free=disk_room(node, backend, state),
        **learned,
    )


def disk_room(node: NodeSettings, backend: Backend, state: BackendState) -> int | None:
    """Bytes pulls may still fill: the free space where a local Ollama keeps its
    models, capped by FLEET_NODE_DISK_BYTES minus the models on disk when that is
    set; ``None`` (not checked) for an Ollama on another machine without a budget."""
    if backend.kind != "ollama":
        return None
    budget = node.disk_bytes
    here = url_host(backend.url) in _LOCAL_HOSTS and not node.remote
    free = disk_free(ollama_models_dir()) if here else None
    if budget is None:
        return free
    left = max(0, budget - sum(m.size for m in state.models))
    return left if free is None else min(left, free)


def memory_fields(
    node: NodeSettings, metrics: SystemMetrics, state: BackendState
) -> dict[str, Any]:
    """Memory as the router sees it: the OS's, or a budget (FLEET_NODE_MEMORY_BYTES)
    minus what the loaded models take."""
    budget = node.memory_bytes
    if budget is None:
        return {
            "memory_total": metrics.memory_total,
            "memory_available": metrics.memory_available,
            "memory_pressure": metrics.memory_pressure,
        }
    free = max(0, budget - sum(m.size for m in state.loaded))
    return {
        "memory_total": budget,
        "memory_available": free,
        "memory_pressure": classify_memory_pressure(budget, free, floor=0),
    }
