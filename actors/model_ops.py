"""Model management across the fleet: ``/api/show``, ``/api/pull``, ``/api/delete``.

These do not go through the scorer (they are not inference): show asks a node that
holds the model (loaded first), pull goes to a named node or the online Ollama node with
the most free memory, delete goes to a named node or every node that holds the model.
Which node(s): :mod:`herd.routing.model_targets`; here only the actor calls and their timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from actors.dispatch import Dispatcher
from actors.errors import unwrap
from herd.errors import BackendError, HerdError, ModelNotFound, NodeUnavailable
from herd.routing import model_targets as model_ops

Line = dict[str, Any]


@dataclass(slots=True)
class Pull:
    """A pull that has started on ``node``: its first progress line and the rest."""

    node: str
    first: Line | None
    rest: AsyncIterator[Line]


class ModelOps:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.settings = dispatcher.settings

    async def catalog(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.dispatcher.call_router("catalog")
        return result

    async def nodes(self) -> list[dict[str, Any]]:
        status: dict[str, Any] = await self.dispatcher.status()
        return list(status["nodes"])

    async def _call(self, node_id: str, method: str, *args: Any) -> Any:
        try:
            async with asyncio.timeout(self.settings.actor_call_timeout):
                return await getattr(self.dispatcher.node(node_id), method).remote(*args)
        except Exception as exc:
            raise unwrap(exc, node_id) from None

    # --- show ----------------------------------------------------------------------------
    async def show(self, model: str, verbose: bool = False) -> tuple[str, dict[str, Any]]:
        """(node, ``/api/show`` body) from the first holder that answers."""
        last: HerdError | None = None
        for node_id in model_ops.show_targets(await self.catalog(), model):
            try:
                return node_id, await self._call(node_id, "show", model, verbose)
            except (ModelNotFound, NodeUnavailable, BackendError) as exc:
                last = exc  # gone since its last heartbeat: ask the next holder
        raise last or ModelNotFound(f"model '{model}' not found")

    # --- pull ----------------------------------------------------------------------------
    async def pull(self, model: str, node: str | None = None, insecure: bool = False) -> Pull:
        """Start a pull and wait for its first line, so a failure before any progress is
        an HTTP error, not a stream that ends with one."""
        node_id = model_ops.pick_pull_node(await self.nodes(), model, node)
        try:
            gen = self.dispatcher.node(node_id).pull.remote(model, insecure)
        except Exception as exc:
            raise unwrap(exc, node_id) from None
        rest = self._lines(gen, node_id)
        try:
            first: Line | None = await anext(rest)
        except StopAsyncIteration:
            first = None
        return Pull(node_id, first, rest)

    async def _lines(self, gen: Any, node_id: str) -> AsyncIterator[Line]:
        limit = self.settings.node.request_timeout
        try:
            while True:
                try:
                    async with asyncio.timeout(limit):
                        line: Line = await (await gen.__anext__())
                except StopAsyncIteration:
                    return
                yield line
        except HerdError:
            raise
        except Exception as exc:
            raise unwrap(exc, node_id) from None

    # --- delete --------------------------------------------------------------------------
    async def delete(self, model: str, node: str | None = None) -> list[str]:
        """Delete from ``node`` or from every holder; the nodes it was deleted from.
        Fails only when it failed everywhere (with the first node's error)."""
        catalog, nodes = await asyncio.gather(self.catalog(), self.nodes())
        targets = model_ops.delete_targets(catalog, nodes, model, node)
        results = await asyncio.gather(
            *(self._call(t, "delete", model) for t in targets), return_exceptions=True
        )
        done = [t for t, r in zip(targets, results, strict=True) if r is True]
        if not done:
            first = results[0]
            raise first if isinstance(first, HerdError) else unwrap(first)
        return done
