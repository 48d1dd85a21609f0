"""A client that hangs up stops its request at once.

Once a request's body has been read, nothing in a route reads from the connection
again, so a client that leaves while its request waits (the holding queue, a node's free
slot, the first token) would go unnoticed until the first write. This middleware keeps
listening: on ``http.disconnect`` before the response is complete it cancels the
request's task, whose cleanup releases the booking (``Dispatcher``'s ``finally``) and
whose trace records the disconnect. Pure ASGI; the app's own ``receive`` calls after the
body see the same disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DISCONNECT: Message = {"type": "http.disconnect"}


class HangupMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        me = asyncio.current_task()
        gone = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        finished = hung_up = False

        async def watch() -> None:
            nonlocal hung_up
            while (await receive())["type"] != "http.disconnect":
                pass  # nothing else should come after the body; ignore it
            gone.set()
            if not finished and me is not None:
                hung_up = True
                me.cancel()

        async def app_receive() -> Message:
            nonlocal watcher
            if watcher is not None or gone.is_set():
                await gone.wait()
                return _DISCONNECT
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                watcher = asyncio.ensure_future(watch())  # the body is complete
            return message

        async def watched_send(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        try:
            await self.app(scope, app_receive, watched_send)
        except asyncio.CancelledError:
            if not hung_up or me is None:
                raise
            me.uncancel()  # our own cancel: the client left, there is nobody to answer
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
