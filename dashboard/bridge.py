"""Calling the (possibly async) dashboard service from Dash's synchronous callbacks.

Dash runs on Flask, which the FastAPI ingress hosts through ``a2wsgi.WSGIMiddleware``:
every callback runs in one of the middleware's worker threads while the ingress's event
loop keeps serving other requests. :class:`SyncBridge` runs a service coroutine on that
host loop (captured by :class:`LoopCapture` on every request that reaches the Dash app)
and waits for it with a timeout, so loop-bound resources (Ray handles, async database
engines, HTTP clients) are used from the loop that owns them. Without a host loop (the
unit tests call callbacks directly, or Dash runs standalone) the bridge runs coroutines
on one private loop thread of its own, started on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


class SyncBridge:
    def __init__(self, service: Any, timeout: float = 20.0) -> None:
        self.service = service
        self.timeout = timeout
        self._host_loop: asyncio.AbstractEventLoop | None = None
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._own_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run coroutines on ``loop`` (the ASGI server's loop) from now on."""
        self._host_loop = loop

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``service.method(*args, **kwargs)``, awaited if it returns an awaitable."""
        result = getattr(self.service, method)(*args, **kwargs)
        if inspect.isawaitable(result):
            return self.wait(result)
        return result

    def wait(self, awaitable: Awaitable[Any]) -> Any:
        return self.spawn(awaitable).result(self.timeout)

    def spawn(self, awaitable: Awaitable[Any]) -> concurrent.futures.Future[Any]:
        """Start ``awaitable`` on the service's loop without waiting for it."""
        try:
            loop = self._loop_for_this_thread()
        except RuntimeError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started: no "was never awaited" warning
            raise
        return asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), loop)

    def _loop_for_this_thread(self) -> asyncio.AbstractEventLoop:
        host = self._host_loop
        if host is not None and host.is_running() and not host.is_closed():
            if _running_loop() is host:
                raise RuntimeError("SyncBridge.call would block the event loop it waits on")
            return host
        return self._private_loop()

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._own_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="dashboard-bridge", daemon=True
                )
                thread.start()
                self._own_loop, self._own_thread = loop, thread
            return self._own_loop

    def close(self) -> None:
        """Stop the private loop, if one was started."""
        with self._lock:
            loop, thread = self._own_loop, self._own_thread
            self._own_loop = self._own_thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


class LoopCapture:
    """ASGI wrapper that hands the serving loop to the bridge before each request."""

    def __init__(self, app: ASGIApp, bridge: SyncBridge) -> None:
        self.app = app
        self.bridge = bridge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.bridge.attach(asyncio.get_running_loop())
        await self.app(scope, receive, send)


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
