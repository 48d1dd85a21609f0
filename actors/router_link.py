"""The dispatcher's link to the RouterActor: its routing view, reports and traces.

Two background tasks per event loop keep the local routing view
(:class:`~herd.routing.mirror.FleetMirror`) in step with the router: one long-polls
``router.view``, the other sends begin/end events in numbered batches
(``router.report``). A third ships finished request traces (``router.record_traces``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import ray

from actors import NAMESPACE, ROUTER_NAME
from actors.errors import unwrap
from actors.trace_shipper import TraceShipper
from herd.errors import BadRequest, FleetUnavailable, HerdError
from herd.routing.mirror import REPORT_BATCH, FleetMirror, weights_from
from herd.settings import Settings

_VIEW_WAIT = 0.5  # long-poll of router.view: the router answers at once on a change
_VIEW_GAP = 0.1  # at least this long between two views (under load every report is one)
_VIEW_RETRY = 1.0  # after a failed view call


class RouterLink:
    def __init__(self, settings: Settings, router: Any = None, local_routing: bool = True) -> None:
        self.settings = settings
        self._router = router
        self.local_routing = local_routing
        self.view = FleetMirror(
            uuid.uuid4().hex,
            weights_from(settings),
            settings.heartbeat_timeout,
            settings.heartbeat_offline,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._send_lock: asyncio.Lock | None = None
        self._kick: asyncio.Event | None = None
        self.traces = TraceShipper(settings, self.router)

    # --- the routing view (background) -----------------------------------------------
    def _ensure_background(self) -> None:
        """Start the view refresher and the reporter on the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and all(not t.done() for t in self._tasks):
            return
        for task in self._tasks:
            task.cancel()
        self._loop = loop
        self._send_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._tasks = [loop.create_task(self._report_loop()), loop.create_task(self.traces.run())]
        if self.local_routing:
            self._tasks.append(loop.create_task(self._refresh_loop()))

    async def _refresh_loop(self) -> None:
        view = self.view
        while True:
            try:
                async with asyncio.timeout(_VIEW_WAIT + self.settings.actor_call_timeout):
                    data = await self.router().view.remote(view.epoch, view.version, _VIEW_WAIT)
                if data is None:
                    view.confirm(time.time())
                else:
                    view.load(data, time.time())
                await asyncio.sleep(_VIEW_GAP)
            except asyncio.CancelledError:
                raise
            except Exception:  # router gone or slow: route through acquire meanwhile
                view.invalidate()
                self._router = None
                await asyncio.sleep(_VIEW_RETRY)

    async def _report_loop(self) -> None:
        assert self._kick is not None
        kick = self._kick
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kick.wait(), timeout=self.view.next_due_in(time.time()))
            kick.clear()
            if self.view.due(time.time()):
                await self.flush()

    async def flush(self) -> None:
        """Send every pending begin/end event to the router (one batch at a time, in order)."""
        if self._send_lock is None:
            return
        async with self._send_lock:
            batch = self.view.take_batch()
            if batch is None:
                return
            seq, events = batch
            try:
                async with asyncio.timeout(self.settings.actor_call_timeout):
                    await self.router().report.remote(self.view.source, seq, events)
            except Exception:  # the router is gone; its restart rebuilds from heartbeats
                self.view.batch_lost(seq)
                self._router = None

    # --- handles ----------------------------------------------------------------------
    def router(self) -> Any:
        if self._router is None:
            try:
                self._router = ray.get_actor(ROUTER_NAME, namespace=NAMESPACE)
            except ValueError:
                raise FleetUnavailable(
                    "the herd router is not running (run `herd deploy`)"
                ) from None
        return self._router

    async def call_router(self, method: str, *args: Any) -> Any:
        """``router.<method>.remote(*args)`` within FLEET_ACTOR_CALL_TIMEOUT. herd errors
        pass through (so does a BadRequest the router raised: the arguments were bad);
        anything else -> FleetUnavailable."""
        try:
            async with asyncio.timeout(self.settings.actor_call_timeout):
                return await getattr(self.router(), method).remote(*args)
        except HerdError:
            raise
        except Exception as exc:
            err = unwrap(exc)
            if isinstance(err, BadRequest):
                raise err from None
            raise FleetUnavailable(f"router unavailable: {err.message}") from None

    def _kicked(self) -> None:
        if self._kick is not None and self.view.pending >= REPORT_BATCH:
            self._kick.set()

    async def status(self) -> dict[str, Any]:
        await self.flush()  # so the router's in-flight book includes what we started
        try:
            async with asyncio.timeout(self.settings.actor_call_timeout):
                result: dict[str, Any] = await self.router().status.remote()
                # This ingress's routing view: the router's version it last loaded.
                result["ingress_view_version"] = self.view.version
                return result
        except HerdError:
            raise
        except Exception as exc:
            self._router = None
            raise FleetUnavailable(f"router unavailable: {unwrap(exc).message}") from None
