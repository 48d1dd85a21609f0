"""Model management across the fleet: ``/api/show``, ``/api/pull``, ``/api/delete``.

These do not go through the scorer (they are not inference): show asks a node that
holds the model (loaded first), pull goes to a named node or the online Ollama node with
the most free memory (among those with the disk for it), delete goes to a named node or
every node that holds the model. Which node(s): :mod:`herd.routing.model_targets`; what
a pull must pass first (registry allow-list, disk): :mod:`herd.dispatch.pull_checks`;
here the calls and their bounds. A pull has no total limit: it is stopped when no
progress line came for FLEET_NODE_PULL_STALL_TIMEOUT (the node enforces it; this side
waits that long plus a margin for the hop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from herd.dispatch import pull_checks
from herd.dispatch.attempts import MARGIN_S, as_herd_error
from herd.dispatch.ports import NodePort
from herd.dispatch.router_link import RouterLink
from herd.errors import BackendError, BackendTimeout, HerdError, ModelNotFound, NodeUnavailable
from herd.routing import model_targets
from herd.settings import Settings

Line = dict[str, Any]


@dataclass(slots=True)
class Pull:
    """A pull that has started on ``node``: its first progress line and the rest."""

    node: str
    first: Line | None
    rest: AsyncIterator[Line]


class ModelOps:
    def __init__(self, settings: Settings, link: RouterLink, nodes: NodePort) -> None:
        self.settings = settings
        self.link = link
        self.nodes = nodes
        self.aliases = settings.model_alias_table()

    async def catalog(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.link.call("catalog")
        return result

    async def node_list(self) -> list[dict[str, Any]]:
        status: dict[str, Any] = await self.link.status()
        return list(status["nodes"])

    async def call(self, node_id: str, method: str, *args: Any) -> Any:
        """``node.<method>(*args)`` within FLEET_ACTOR_CALL_TIMEOUT."""
        try:
            async with asyncio.timeout(self.settings.actor_call_timeout):
                return await self.nodes.call(node_id, method, *args)
        except Exception as exc:
            raise as_herd_error(exc, node_id) from None

    # --- show ----------------------------------------------------------------------------
    async def show(self, model: str, verbose: bool = False) -> tuple[str, dict[str, Any]]:
        """(node, ``/api/show`` body) from the first holder that answers; an alias
        (``FLEET_MODEL_ALIASES``) shows its target."""
        model = self.aliases.resolve(model)
        last: HerdError | None = None
        for node_id in model_targets.show_targets(await self.catalog(), model):
            try:
                return node_id, await self.call(node_id, "show", model, verbose)
            except (ModelNotFound, NodeUnavailable, BackendError) as exc:
                last = exc  # gone since its last heartbeat: ask the next holder
        raise last or ModelNotFound(f"model '{model}' not found")

    # --- pull ----------------------------------------------------------------------------
    async def pull(self, model: str, node: str | None = None, insecure: bool = False) -> Pull:
        """Start a pull and wait for its first line, so a failure before any progress is
        an HTTP error, not a stream that ends with one. A registry outside
        FLEET_PULL_REGISTRIES is refused (403) before any node is asked; a node without
        the disk for it is not picked (503 when it was named, or no node has room)."""
        pull_checks.check_registry(self.settings.pull_registries, model)
        nodes, catalog = await asyncio.gather(self.node_list(), self.catalog())
        reserve = self.settings.node.pull_reserve_bytes
        node_id = pull_checks.pick_pull_node(nodes, catalog, model, node, reserve)
        rest = self._lines(node_id, model, insecure)
        try:
            first: Line | None = await anext(rest)
        except StopAsyncIteration:
            first = None
        return Pull(node_id, first, rest)

    async def _lines(self, node_id: str, model: str, insecure: bool) -> AsyncIterator[Line]:
        limit = self.settings.node.pull_stall_timeout + MARGIN_S
        lines = self.nodes.pull(node_id, model, insecure)
        try:
            while True:
                try:
                    async with asyncio.timeout(limit):
                        line = await anext(lines)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise BackendTimeout(
                        f"no progress from node {node_id} pulling '{model}' for {limit:g}s "
                        "(FLEET_NODE_PULL_STALL_TIMEOUT)",
                        retryable=False,
                    ) from None
                yield line
        except HerdError:
            raise
        except Exception as exc:
            raise as_herd_error(exc, node_id) from None

    # --- delete --------------------------------------------------------------------------
    async def delete(self, model: str, node: str | None = None) -> list[str]:
        """Delete from ``node`` or from every holder; the nodes it was deleted from.
        Fails only when it failed everywhere (with the first node's error)."""
        catalog, nodes = await asyncio.gather(self.catalog(), self.node_list())
        targets = model_targets.delete_targets(catalog, nodes, model, node)
        results = await asyncio.gather(
            *(self.call(t, "delete", model) for t in targets), return_exceptions=True
        )
        done = [t for t, r in zip(targets, results, strict=True) if r is True]
        if not done:
            first = results[0]
            raise first if isinstance(first, HerdError) else as_herd_error(first, targets[0])
        return done
