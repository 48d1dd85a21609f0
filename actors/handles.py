"""Named-actor handles, looked up off the event loop and cached.

``ray.get_actor`` is a blocking GCS call: on an event loop (the ingress, a NodeActor,
the RouterActor) it runs in a thread, bounded by FLEET_ACTOR_CALL_TIMEOUT. A handle is
kept until its holder reports a failure (:meth:`HandleCache.forget`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from actors import NAMESPACE


def lookup(name: str) -> Any | None:
    """The handle of the actor called ``name`` in herd's namespace (blocking), or None."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


class HandleCache:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._handles: dict[str, Any] = {}

    def cached(self, name: str) -> Any | None:
        return self._handles.get(name)

    async def get(self, name: str) -> Any | None:
        """The handle (None when no such actor is registered); TimeoutError when the GCS
        does not answer in time."""
        handle = self._handles.get(name)
        if handle is None:
            async with asyncio.timeout(self.timeout):
                handle = await asyncio.to_thread(lookup, name)
            if handle is not None:
                self._handles[name] = handle
        return handle

    def forget(self, name: str) -> None:
        self._handles.pop(name, None)
