"""What the dashboard needs from the live fleet, as a Protocol, plus an in-memory fleet.

The lead's adapter over the RouterActor implements :class:`Fleet`;
:class:`StaticFleet` implements it over a plain status dict for tests and demos.
:func:`group_settings` turns a ``Settings`` into the read-only, per-category tables of
the Settings view (secrets in URLs masked), for ``Fleet.settings``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

TOGGLES = ("auto_pull", "vram_fallback")


class Fleet(Protocol):
    async def status(self) -> dict[str, Any]:
        """``herd.routing.core.RouterCore.status()``; nodes may add ``is_router`` (bool) and
        ``model_details`` (``[{"name", "size"}]``, disk sizes); or the top level may hold
        ``router_node_id``."""
        ...

    async def settings(self) -> dict[str, dict[str, Any]]:
        """Read-only configuration grouped by category (see :func:`group_settings`)."""
        ...

    async def toggles(self) -> dict[str, bool]:
        """``{"auto_pull": bool, "vram_fallback": bool}``."""
        ...

    async def set_toggles(self, changes: dict[str, bool]) -> dict[str, bool]:
        """Apply validated toggle changes; returns all toggles after the change."""
        ...

    def pull(self, model: str, node: str | None) -> AsyncIterator[dict[str, Any]]:
        """An async generator of Ollama pull progress (``{"status", "completed"?, "total"?,
        "node"?}``); ``node`` None lets the fleet pick."""
        ...

    async def delete(self, model: str, node: str | None) -> dict[str, Any]:
        """``{"deleted": [node ids], "errors": {node: message}}``; None: every node."""
        ...


class StaticFleet:
    """A :class:`Fleet` over a status dict (tests, demos, the dashboard without Ray)."""

    def __init__(
        self,
        status: Mapping[str, Any] | None = None,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        toggles: Mapping[str, bool] | None = None,
    ) -> None:
        self._status: dict[str, Any] = copy.deepcopy(dict(status or {"nodes": []}))
        self._settings = {k: dict(v) for k, v in (settings or {}).items()}
        self._toggles = {"auto_pull": True, "vram_fallback": True, **(toggles or {})}
        self.status_calls = 0

    async def status(self) -> dict[str, Any]:
        self.status_calls += 1
        return copy.deepcopy(self._status)

    async def settings(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._settings)

    async def toggles(self) -> dict[str, bool]:
        return dict(self._toggles)

    async def set_toggles(self, changes: dict[str, bool]) -> dict[str, bool]:
        self._toggles.update(changes)
        return dict(self._toggles)

    def _targets(self, node: str | None) -> list[dict[str, Any]]:
        nodes = [n for n in self._status.get("nodes", []) if n.get("status") != "offline"]
        return [n for n in nodes if node is None or n.get("node_id") == node]

    async def pull(self, model: str, node: str | None) -> AsyncIterator[dict[str, Any]]:
        targets = self._targets(node)
        if not targets:
            raise LookupError(f"no online node {node!r}")
        target = targets[0]
        for done in (0, 50, 100):
            await asyncio.sleep(0)
            yield {"status": "pulling", "completed": done, "total": 100, "node": target["node_id"]}
        if model not in target.setdefault("models", []):
            target["models"].append(model)
        yield {"status": "success", "node": target["node_id"]}

    async def delete(self, model: str, node: str | None) -> dict[str, Any]:
        deleted = []
        for n in self._targets(node):
            if model in n.get("models", []):
                n["models"].remove(model)
                deleted.append(n["node_id"])
        return {"deleted": deleted, "errors": {}}


# --- settings, grouped for the Settings view ------------------------------------------------
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Server", ("host", "port", "ray_", "serve_", "data_plane", "max_body")),
    ("Heartbeats", ("heartbeat_",)),
    ("Routing and scoring", ("score_", "weight_", "max_retries", "holding_", "rebalance",
                             "prewarm", "context_", "vram_", "auto_pull", "zombie")),
    ("Timeouts", ("timeout", "_timeout")),
    ("Storage and logs", ("data_dir", "database_url", "log_", "trace")),
)  # fmt: skip


def _mask(value: Any) -> Any:
    if isinstance(value, str) and "://" in value and "@" in value:
        parts = urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return _mask(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def group_settings(settings: BaseModel) -> dict[str, dict[str, Any]]:
    """``{category: {FLEET_NAME: value}}`` for every field; nested ``node`` settings become
    the "Node" category (``FLEET_NODE_*``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in settings:
        if isinstance(value, BaseModel):
            out["Node"] = {f"FLEET_NODE_{k.upper()}": _plain(v) for k, v in value}
            continue
        category = next((c for c, keys in _CATEGORIES if any(k in name for k in keys)), "Other")
        out.setdefault(category, {})[f"FLEET_{name.upper()}"] = _plain(value)
    return out
