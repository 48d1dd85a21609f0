"""Auto-pull (runtime toggle ``auto_pull``): a model no node has is pulled onto the best
node instead of answering 404, then the request is routed as usual.

The pull goes where ``/api/pull`` without a node would send it (the online Ollama node
with the most free memory that has the disk for it), through the same checks: a
registry outside FLEET_PULL_REGISTRIES or a fleet without the disk answers 404 with the
reason. It has no total limit, only the pull's stall limit
(FLEET_NODE_PULL_STALL_TIMEOUT): the request waits for a large model as long as it
downloads. Concurrent requests for the model join the one pull on that node. The
node's heartbeat is pushed right after, so the router knows the model before the
request is routed again.
"""

from __future__ import annotations

import logging

from herd.dispatch.model_ops import ModelOps
from herd.errors import HerdError, ModelNotFound
from herd.settings import Settings

log = logging.getLogger("herd.dispatch.auto_pull")


async def auto_pull(settings: Settings, models: ModelOps, model: str) -> str:
    """Pull ``model`` onto the best node; returns the node id. Raises ``ModelNotFound``
    (with the reason) when the pull cannot be done."""
    try:
        started = await models.pull(model)
        last = started.first or {}
        async for line in started.rest:
            last = line
        if last.get("error") or last.get("status") not in ("success", None):
            raise ModelNotFound(f"model '{model}' not found (auto-pull: {last})")
        await models.call(started.node, "push_heartbeat")
    except ModelNotFound:
        raise
    except HerdError as exc:
        reason = exc.message
        raise ModelNotFound(f"model '{model}' not found (auto-pull failed: {reason})") from None
    log.info("auto-pulled %s onto %s", model, started.node)
    return str(started.node)
