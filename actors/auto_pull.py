"""Auto-pull (runtime toggle ``auto_pull``): a model no node has is pulled onto the best
node instead of answering 404, then the request is routed as usual.

The pull goes where ``/api/pull`` without a node would send it (the online Ollama node
with the most free memory); the node's heartbeat is pushed right after, so the router
knows the model before the request is routed again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.errors import unwrap
from herd.errors import HerdError, ModelNotFound

log = logging.getLogger("herd.actors.auto_pull")


async def auto_pull(dispatcher: Any, model: str) -> str:
    """Pull ``model`` onto the best node; returns the node id. Raises ``ModelNotFound``
    (with the reason) when the pull cannot be done."""
    from actors.model_ops import ModelOps  # model_ops imports the dispatcher module

    settings = dispatcher.settings
    try:
        async with asyncio.timeout(settings.node.request_timeout):
            started = await ModelOps(dispatcher).pull(model)
            last = started.first or {}
            async for line in started.rest:
                last = line
            if last.get("error") or last.get("status") not in ("success", None):
                raise ModelNotFound(f"model '{model}' not found (auto-pull: {last})")
            node = dispatcher.node(started.node)
            async with asyncio.timeout(settings.actor_call_timeout):
                await node.push_heartbeat.remote()
    except TimeoutError:
        raise ModelNotFound(f"model '{model}' not found (auto-pull timed out)") from None
    except HerdError as exc:
        if isinstance(exc, ModelNotFound):
            raise
        reason = exc.message
        raise ModelNotFound(f"model '{model}' not found (auto-pull failed: {reason})") from None
    except Exception as exc:
        reason = unwrap(exc).message
        raise ModelNotFound(f"model '{model}' not found (auto-pull failed: {reason})") from None
    log.info("auto-pulled %s onto %s", model, started.node)
    return str(started.node)
