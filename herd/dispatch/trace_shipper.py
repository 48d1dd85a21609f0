"""Ship finished request traces from a dispatcher to the router, which journals them.

Traces leave the request path at once (:class:`~herd.traces.context.TraceOutbox`); a
background task sends them in batches (``send``: the router's ``record_traces``) and
keeps any batch the router did not acknowledge, so a router restart delays traces but
loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from herd.traces.context import TraceContext, TraceOutbox, current_trace
from herd.traces.records import TraceRecord

log = logging.getLogger("herd.dispatch.traces")

_SEND_EVERY_S = 0.25
_RETRY_S = 1.0


class TraceShipper:
    def __init__(self, send: Callable[[list[TraceRecord]], Awaitable[None]]) -> None:
        self._send = send
        self.outbox = TraceOutbox()
        self._wake: asyncio.Event | None = None
        self.sent = 0

    def open(self) -> tuple[TraceContext, bool]:
        """The request's open trace (from the ingress middleware) or a new one we own."""
        ctx = current_trace.get()
        return (ctx, False) if ctx is not None else (TraceContext(dialect="python"), True)

    def finish(self, ctx: TraceContext) -> None:
        self.outbox.add(ctx.close())
        if self._wake is not None and len(self.outbox) >= 100:
            self._wake.set()

    async def run(self) -> None:
        """Send until cancelled; call once per event loop."""
        self._wake = wake = asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):  # not wait_for: it can eat a cancel (3.11)
                async with asyncio.timeout(_SEND_EVERY_S):
                    await wake.wait()
            wake.clear()
            while len(self.outbox):
                if not await self.send_once():
                    await asyncio.sleep(_RETRY_S)
                    break

    async def send_once(self) -> bool:
        batch = self.outbox.take()
        if not batch:
            return True
        try:
            await self._send(batch)
        except asyncio.CancelledError:
            self.outbox.put_back(batch)
            raise
        except Exception as exc:  # router away: keep them for the next round
            self.outbox.put_back(batch)
            log.warning("could not ship %d traces: %s", len(batch), exc)
            return False
        self.sent += len(batch)
        return True

    async def drain(self) -> None:
        """Send everything now (tests, shutdown)."""
        while len(self.outbox):
            if not await self.send_once():
                return
