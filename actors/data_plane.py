"""The HTTP data plane's Ray-side pieces: the shared token and the node's server start.

The token authenticates every data-plane request (``herd.node.http_server.TOKEN_HEADER``).
``FLEET_DATA_TOKEN`` sets it explicitly; otherwise the first process that needs it
(normally the first ``herd deploy`` of the cluster) stores a random one under
``herd/data_token`` in Ray's GCS key-value store with ``overwrite=False``, so devices that
each run ``herd deploy`` on their own, and every ingress replica, read the same value. The
KV lives as long as the Ray cluster: a new cluster gets a new token.
"""

from __future__ import annotations

import asyncio
import logging

import ray
from ray.experimental import internal_kv

from herd.errors import FleetUnavailable
from herd.node.agent import NodeAgent
from herd.node.http_server import NodeHTTPServer, new_data_token
from herd.settings import Settings

log = logging.getLogger("herd.actors.data_plane")

KV_NAMESPACE = "herd"
KV_KEY = "data_token"


def data_token(settings: Settings) -> str:
    """``FLEET_DATA_TOKEN`` when set, else the cluster's token (created on first use).

    Needs a connected Ray worker or driver; blocking (one to three GCS calls)."""
    if settings.data_token is not None:
        return settings.data_token.get_secret_value()
    if not internal_kv._internal_kv_initialized():
        raise FleetUnavailable("the data-plane token needs a connection to the Ray cluster")
    stored = internal_kv._internal_kv_get(KV_KEY, namespace=KV_NAMESPACE)
    if not stored:
        # Several deployers may race here: only the first put lands, all read it back.
        internal_kv._internal_kv_put(
            KV_KEY, new_data_token(), overwrite=False, namespace=KV_NAMESPACE
        )
        stored = internal_kv._internal_kv_get(KV_KEY, namespace=KV_NAMESPACE)
    if not stored:
        raise FleetUnavailable("could not keep the data-plane token in Ray's GCS KV")
    return bytes(stored).decode()


async def start_node_data_plane(
    agent: NodeAgent, settings: Settings, host: str
) -> NodeHTTPServer | None:
    """Serve ``agent``'s answers on ``host``:``FLEET_NODE_DATA_PORT`` from the running
    loop (a NodeActor's) and publish the URL in its heartbeats (``agent.data_url``).

    When that fails (port taken, no token) the node stays reachable over Ray only: the
    ingress streams from a node without a ``data_url`` through the actor."""
    port = settings.node.data_port
    try:
        token = await asyncio.to_thread(data_token, settings)
        server = NodeHTTPServer(
            agent,
            token=token,
            host=host,
            port=port,
            instance=ray.get_runtime_context().get_actor_id() or "",
        )
        agent.data_url = await server.start()
    except (OSError, FleetUnavailable) as exc:
        log.error(
            "node %s: no HTTP data plane on %s:%s (%s); serving over Ray only",
            agent.node_id,
            host,
            port or "any",
            exc,
        )
        return None
    log.info("node %s: HTTP data plane on %s", agent.node_id, agent.data_url)
    return server
