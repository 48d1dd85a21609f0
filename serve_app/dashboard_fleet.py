"""The dashboard's view of the live fleet (:class:`dashboard.fleet.Fleet`) over Ray.

Status and runtime toggles come from the RouterActor; pulls and deletes go through
:class:`herd.dispatch.model_ops.ModelOps`, the same code as ``/api/pull`` and ``/api/delete``.
Every call is bounded by ``FLEET_ACTOR_CALL_TIMEOUT``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from dashboard.fleet import group_settings
from herd.errors import HerdError
from serve_app.service import HerdService


class RayFleet:
    def __init__(self, svc: HerdService) -> None:
        self.svc = svc
        self.ops = svc.dispatcher.models

    async def status(self) -> dict[str, Any]:
        status: dict[str, Any] = await self.svc.fleet_status()
        return status

    async def settings(self) -> dict[str, dict[str, Any]]:
        return group_settings(self.svc.settings)

    async def toggles(self) -> dict[str, bool]:
        result: dict[str, bool] = await self.svc.dispatcher.call_router("get_toggles")
        return result

    async def set_toggles(self, changes: dict[str, bool]) -> dict[str, bool]:
        result: dict[str, bool] = await self.svc.dispatcher.call_router("set_toggles", changes)
        return result

    async def pull(self, model: str, node: str | None) -> AsyncIterator[dict[str, Any]]:
        try:
            started = await self.ops.pull(model, node)
            if started.first is not None:
                yield {**started.first, "node": started.node}
            async for line in started.rest:
                yield {**line, "node": started.node}
        except HerdError as exc:
            yield {"status": "error", "error": exc.message}

    async def delete(self, model: str, node: str | None) -> dict[str, Any]:
        try:
            deleted = await self.ops.delete(model, node)
        except HerdError as exc:
            return {"deleted": [], "errors": {node or "*": exc.message}}
        return {"deleted": deleted, "errors": {}}
