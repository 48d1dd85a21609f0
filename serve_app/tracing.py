"""ASGI middleware that gives every inference request a trace, whatever happens to it.

It opens a :class:`~herd.traces.context.TraceContext` before the route runs (the
dispatcher fills in the request, routing decisions and the answer), watches the
response go out (status code; the error message of a 4xx/5xx body; whether the last
byte was sent or the client went away) and closes the trace into the dispatcher's
outbox exactly once. Every HTTP response, traced or not, carries the request's id as
``X-Request-Id`` and ``X-Herd-Request-Id`` (:mod:`herd.traces.request_ids`: a valid
incoming ``X-Request-Id`` becomes the trace id). Malformed bodies, unknown models,
full queues and disconnects are therefore traced like served requests. Pure ASGI (no
``BaseHTTPMiddleware``), so streaming responses pass through untouched.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from herd.dispatch.trace_shipper import TraceShipper
from herd.traces.context import TraceContext, current_trace
from herd.traces.request_ids import AssignedId, RequestIds

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Paths whose requests are traced, with the dialect and kind they record.
TRACED: dict[str, tuple[str, str]] = {
    "/api/chat": ("ollama", "chat"),
    "/api/generate": ("ollama", "generate"),
    "/api/embed": ("ollama", "embed"),
    "/api/embeddings": ("ollama", "embeddings"),
    "/api/generate-image": ("ollama", "image"),
    "/api/transcribe": ("ollama", "transcribe"),
    "/v1/chat/completions": ("openai", "chat"),
    "/v1/responses": ("openai", "chat"),
    "/v1/completions": ("openai", "generate"),
    "/v1/embeddings": ("openai", "embed"),
    "/v1/rerank": ("openai", "rerank"),
    "/v1/images/generations": ("openai", "image"),
    "/v1/audio/transcriptions": ("openai", "transcribe"),
    "/v1/audio/speech": ("openai", "speech"),
    "/v1/messages": ("anthropic", "chat"),
}
_ERROR_BODY_LIMIT = 16 * 1024
_ID_HEADERS = (b"x-request-id", b"x-herd-request-id")


def _request_id_header(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            return bytes(value).decode("latin-1")
    return None


def _with_ids(message: Message, ids: AssignedId, echo: bool) -> None:
    """Set the response's id headers (replacing any a route set)."""
    headers = [(k, v) for k, v in message.get("headers") or () if k.lower() not in _ID_HEADERS]
    if echo:
        headers.append((b"x-request-id", ids.echo.encode("latin-1")))
    headers.append((b"x-herd-request-id", ids.trace_id.encode("latin-1")))
    message["headers"] = headers


def error_message(body: bytes) -> str | None:
    """The message of an error body in either dialect (``{"error": "..."}`` for Ollama,
    ``{"error": {"message": ...}}`` for OpenAI); None when it is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text[:500] or None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        err = err.get("message")
    return str(err)[:500] if err else None


class TraceMiddleware:
    def __init__(
        self, app: ASGIApp, shipper: Callable[[], TraceShipper], echo_request_id: bool = True
    ) -> None:
        self.app = app
        self.shipper = shipper
        self.ids = RequestIds()
        # Under Ray Serve its RequestIdMiddleware echoes X-Request-Id (the client's, or
        # one it made up and put in the request's headers, which is then the trace id).
        self.echo = echo_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ids = self.ids.assign(_request_id_header(scope))
        route = TRACED.get(scope.get("path", ""))
        if route is None or scope.get("method") != "POST":

            async def id_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    _with_ids(message, ids, self.echo)
                await send(message)

            await self.app(scope, receive, id_send)
            return
        ctx = TraceContext(dialect=route[0], kind=route[1], request_id=ids.trace_id)
        token = current_trace.set(ctx)
        error_body = bytearray()
        finished = False

        async def traced_send(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                ctx.http_status = int(message["status"])
                _with_ids(message, ids, self.echo)
            elif message["type"] == "http.response.body":
                if (ctx.http_status or 200) >= 400 and len(error_body) < _ERROR_BODY_LIMIT:
                    error_body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    finished = True
            try:
                await send(message)
            except OSError:
                ctx.disconnected = True
                raise

        failed = False
        try:
            await self.app(scope, receive, traced_send)
        except (asyncio.CancelledError, OSError):
            raise  # the client went away
        except Exception as exc:  # answered 500 by the outer error handler
            failed = True
            ctx.served = False
            ctx.fail(f"internal error ({type(exc).__name__})", 500)
            raise
        finally:
            current_trace.reset(token)
            if not finished and not failed:
                ctx.disconnected = True
            if (ctx.http_status or 200) >= 400:
                ctx.served = False
                ctx.fail(error_message(bytes(error_body)) or ctx.error or "request failed")
            self.shipper().finish(ctx)
