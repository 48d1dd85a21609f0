"""The dispatcher's link to the router: its fleet mirror, event reports and traces.

Three background tasks per event loop, all through the :class:`RouterPort`: one
long-polls ``view`` and loads it into the :class:`~herd.routing.mirror.FleetMirror`, one
sends begin/end events in numbered batches (``report``), one ships finished request
traces (``record_traces``, :class:`~herd.dispatch.trace_shipper.TraceShipper`). Every
router call is bounded by ``FLEET_ACTOR_CALL_TIMEOUT``. Each view loaded or confirmed
ends the attempts open on nodes it shows offline (:mod:`herd.dispatch.fences`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

from herd.dispatch.fences import Fences
from herd.dispatch.ports import RouterPort
from herd.dispatch.trace_shipper import TraceShipper
from herd.errors import FleetUnavailable, HerdError
from herd.routing.decide import weights_from
from herd.routing.events import REPORT_BATCH, REPORT_EVERY_S
from herd.routing.mirror import STALE_AFTER_S, FleetMirror
from herd.settings import Settings


@dataclass(frozen=True, slots=True)
class LinkTiming:
    """How the link paces its router calls (seconds). Fixed in production; the fleet
    benchmark divides them by its time scale, like every other time setting."""

    view_wait: float = 0.5  # long-poll of router.view: the router answers at once on a change
    view_gap: float = 0.1  # at least this long between two views (under load, one per report)
    view_retry: float = 1.0  # after a failed view call
    stale_after: float = STALE_AFTER_S  # a mirror not confirmed for this long is not used
    report_every: float = REPORT_EVERY_S  # pending events are sent at least this often

    def scaled(self, factor: float) -> LinkTiming:
        return LinkTiming(*(getattr(self, f) / factor for f in self.__slots__))


class RouterLink:
    def __init__(
        self,
        settings: Settings,
        router: RouterPort,
        local_routing: bool = True,
        timing: LinkTiming | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.local_routing = local_routing
        self.timing = timing = timing or LinkTiming()
        self.mirror = FleetMirror(
            uuid.uuid4().hex,
            weights_from(settings),
            settings.heartbeat_timeout,
            settings.heartbeat_offline,
            stale_after=timing.stale_after,
            report_every=timing.report_every,
        )
        self.traces = TraceShipper(self._send_traces)
        self.fences = Fences()  # the open attempts, by node
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._send_lock: asyncio.Lock | None = None
        self._kick: asyncio.Event | None = None

    # --- background ---------------------------------------------------------------------
    def ensure_background(self) -> None:
        """Start the mirror refresher, the reporter and the trace shipper on the running
        loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and all(not t.done() for t in self._tasks):
            return
        self.stop()
        self._loop = loop
        self._send_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._tasks = [loop.create_task(self._report_loop()), loop.create_task(self.traces.run())]
        if self.local_routing:
            self._tasks.append(loop.create_task(self._refresh_loop()))

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def _refresh_loop(self) -> None:
        mirror, timing = self.mirror, self.timing
        while True:
            try:
                async with asyncio.timeout(timing.view_wait + self.settings.actor_call_timeout):
                    data = await self.router.view(mirror.epoch, mirror.version, timing.view_wait)
                now = time.time()
                if data is None:
                    mirror.confirm(now)
                else:
                    mirror.load(data, now)
                if self.fences:
                    self.fences.check(mirror.snapshot(now), mirror.epoch)
                await asyncio.sleep(timing.view_gap)
            except asyncio.CancelledError:
                raise
            except Exception:  # router gone or slow: route through acquire meanwhile
                mirror.invalidate()
                self.router.forget()
                await asyncio.sleep(timing.view_retry)

    async def _report_loop(self) -> None:
        assert self._kick is not None
        kick = self._kick
        while True:
            with contextlib.suppress(TimeoutError):  # not wait_for: it can eat a cancel (3.11)
                async with asyncio.timeout(self.mirror.next_due_in(time.time())):
                    await kick.wait()
            kick.clear()
            if self.mirror.due(time.time()):
                await self.flush()

    def kicked(self) -> None:
        """An event was added: send now when a full batch is pending."""
        if self._kick is not None and self.mirror.pending >= REPORT_BATCH:
            self._kick.set()

    async def flush(self) -> None:
        """Send every pending begin/end event to the router (one batch at a time, in order)."""
        if self._send_lock is None:
            return
        async with self._send_lock:
            batch = self.mirror.take_batch()
            if batch is None:
                return
            seq, events = batch
            try:
                async with asyncio.timeout(self.settings.actor_call_timeout):
                    await self.router.report(self.mirror.source, seq, events)
            except Exception:  # the router is gone; its restart rebuilds from heartbeats
                self.mirror.batch_lost(seq)
                self.router.forget()

    async def _send_traces(self, batch: list[Any]) -> None:
        async with asyncio.timeout(self.settings.actor_call_timeout):
            await self.router.call("record_traces", batch)

    # --- calls --------------------------------------------------------------------------
    async def call(self, method: str, *args: Any) -> Any:
        """``router.<method>(*args)`` within FLEET_ACTOR_CALL_TIMEOUT. Errors the router
        raised pass through (a BadRequest: the arguments were bad); a router that is
        gone or silent is FleetUnavailable."""
        try:
            async with asyncio.timeout(self.settings.actor_call_timeout):
                return await self.router.call(method, *args)
        except HerdError:
            raise
        except TimeoutError:
            self.router.forget()
            raise FleetUnavailable(f"router unavailable: no answer to {method}") from None

    async def status(self) -> dict[str, Any]:
        await self.flush()  # so the router's in-flight book includes what we started
        result: dict[str, Any] = await self.call("status")
        # This ingress's mirror: the router's version it last loaded.
        result["ingress_view_version"] = self.mirror.version
        return result
