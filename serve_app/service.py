"""Request handling for both dialects, independent of how the app is hosted.

``HerdService`` parses a body, asks the :class:`~herd.dispatch.dispatcher.Dispatcher` for a
node (decision, retries, fallbacks) and writes the answer in the client's dialect.
Errors are raised as :mod:`herd.errors` types and mapped by ``serve_app.errors``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from herd import convert
from herd.convert.headers import header_value, model_header
from herd.dispatch.dispatcher import Dispatcher, Served
from herd.dispatch.media import MediaDispatch
from herd.domain import Decision, InferenceRequest
from herd.errors import BadRequest, HerdError, PayloadTooLarge, Unauthorized
from herd.guard.credentials import current_caller, read_admin_token
from herd.json_codec import dumps
from herd.settings import Settings
from herd.traces.context import current_trace
from herd.traces.request_ids import new_request_id

JSON = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

Writer = Callable[[dict[str, Any]], list[bytes]]


def herd_headers(decision: Decision, retries: int) -> dict[str, str]:
    """Which node and model served, documented in the README."""
    return {
        "X-Herd-Request-Id": decision.request_id,
        "X-Herd-Node": header_value(decision.node_id),
        "X-Herd-Model": model_header(decision.model),
        "X-Herd-Fallback": "true" if decision.fallback else "false",
        "X-Herd-Retries": str(retries),
    }


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=status, media_type=JSON, headers=headers)


class HerdService:
    def __init__(self, settings: Settings, dispatcher: Dispatcher | None = None) -> None:
        self.settings = settings
        self.dispatcher = dispatcher or _ray_dispatcher(settings)
        self.media = MediaDispatch(self.dispatcher)
        self.models = self.dispatcher.models
        # The head deploy puts the (generated) token into the settings it deploys with.
        self.admin_token = read_admin_token(settings)
        self._guard_policy: Any = None

    @property
    def guard_policy(self) -> Any:
        """The ingress guard's policy (``serve_app.guard.GuardPolicy``), built once."""
        if self._guard_policy is None:
            from dashboard.views import mutating_outputs
            from serve_app.guard import GuardPolicy

            self._guard_policy = GuardPolicy(self.settings, self.admin_token, mutating_outputs())
        return self._guard_policy

    # --- input ---------------------------------------------------------------------
    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        body = await request.body()
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        return body

    async def read_form(
        self, request: Request
    ) -> tuple[dict[str, list[str]], bytes | None, str | None]:
        """A ``multipart/form-data`` body (size-checked like any other): its text fields
        (name -> values in order) and the ``file`` upload (bytes, filename)."""
        kind = request.headers.get("content-type", "")
        if not kind.lower().startswith("multipart/form-data"):
            raise BadRequest("the body must be multipart/form-data with a 'file' field")
        await self.read_body(request)  # enforces the size limit; form() reuses the bytes
        try:
            form = await request.form(max_files=4, max_fields=256)
        except HerdError:
            raise
        except Exception as exc:  # malformed multipart (Starlette raises HTTP 400 or its own)
            detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or exc
            raise BadRequest(f"invalid multipart body: {detail}") from None
        fields: dict[str, list[str]] = {}
        audio: bytes | None = None
        filename: str | None = None
        try:
            for name, value in form.multi_items():
                if isinstance(value, str):
                    fields.setdefault(name, []).append(value)
                elif name == "file":
                    audio, filename = await value.read(), value.filename
        finally:
            await form.close()
        return fields, audio, filename

    @staticmethod
    def request_meta(request: Request) -> dict[str, Any]:
        return {
            # The trace middleware's id (a valid X-Request-Id, else herd's own).
            "request_id": trace.request_id if (trace := current_trace.get()) else new_request_id(),
            "received_at": time.time(),
            "header_tags": request.headers.get("x-herd-tags"),
            "client": request.client.host if request.client else None,
        }

    # --- running a request -----------------------------------------------------------
    async def run_stream(
        self, req: InferenceRequest, media_type: str, make_writer: Callable[[Decision], Any]
    ) -> StreamingResponse:
        """Route, wait for the first chunks (retrying elsewhere before them), then stream."""
        check_unload(req)
        served = await self.dispatcher.stream(req)
        writer = make_writer(served.decision)
        return StreamingResponse(
            self._body(served, writer),
            media_type=media_type,
            headers=herd_headers(served.decision, served.retries),
        )

    @staticmethod
    async def _body(served: Served, writer: Any) -> AsyncIterator[bytes]:
        feed = writer.feed
        try:
            yield b"".join([out for chunk in served.first for out in feed(chunk)])
            async for batch in served.rest:
                yield b"".join([out for chunk in batch for out in feed(chunk)])
        except HerdError as exc:
            yield writer.error(exc.message)
        finally:
            await served.rest.aclose()  # a client gone at the first write ends the attempt

    async def run_complete(self, req: InferenceRequest) -> tuple[Decision, int, dict[str, Any]]:
        check_unload(req)
        return await self.dispatcher.complete(req)

    # --- fleet reads -----------------------------------------------------------------
    async def catalog(self) -> list[dict[str, Any]]:
        return await self.models.catalog()

    async def running(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.dispatcher.call_router("running")
        return result

    async def fleet_status(self) -> dict[str, Any]:
        return await self.dispatcher.status()


_DURATION = re.compile(r"(?:[+-]?\d*\.?\d+(?:ns|us|µs|ms|s|m|h))+|[+-]?\d*\.?\d+")


def unloads(keep_alive: object) -> bool:
    """Whether a ``keep_alive`` unloads the model at once: 0, or a Go duration whose
    every figure is zero ("0", "0s", "0m0s")."""
    if isinstance(keep_alive, bool):
        return False
    if isinstance(keep_alive, int | float):
        return keep_alive == 0
    if isinstance(keep_alive, str) and _DURATION.fullmatch(keep_alive.strip()):
        figures = re.findall(r"\d*\.?\d+", keep_alive)
        return all(float(f) == 0 for f in figures)
    return False


def check_unload(req: InferenceRequest) -> None:
    """``keep_alive: 0`` unloads the model for everyone: an admin action."""
    if unloads(req.body.get("keep_alive")) and not current_caller.get().admin:
        raise Unauthorized(
            "keep_alive 0 unloads the model: that needs the admin token "
            "('Authorization: Bearer <token>')"
        )


class NdjsonWriter:
    """Ollama dialect stream writer: each chunk is one NDJSON line."""

    __slots__ = ()

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        return [convert.ndjson_line(chunk)]

    def error(self, message: str) -> bytes:
        return convert.ndjson_line(convert.ollama_error_body(message))


def _ray_dispatcher(settings: Settings) -> Dispatcher:
    from actors.ports import ray_dispatcher

    return ray_dispatcher(settings)
