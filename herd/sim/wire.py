"""aiohttp helpers: JSON bodies in, JSON / NDJSON out, errors as ``{"error": ...}``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from herd.sim.device import Device
from herd.sim.protocol import OllamaError

DEVICE: web.AppKey[Device] = web.AppKey("device", Device)

JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(obj: Any) -> bytes:
    return _encode(obj).encode()


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type=JSON_TYPE, charset="utf-8")


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


async def read_json(request: web.Request, struct: str) -> dict[str, Any]:
    """The request body as an object, with Ollama's 400s for a missing or bad body."""
    raw = await request.read()
    if not raw.strip():
        raise OllamaError(400, "missing request body")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OllamaError(400, f"invalid character in JSON body: {exc}") from None
    if not isinstance(body, dict):
        kind = {list: "array", str: "string", bool: "bool"}.get(type(body), "number")
        if body is None:
            raise OllamaError(400, "missing request body")
        raise OllamaError(400, f"json: cannot unmarshal {kind} into Go value of type api.{struct}")
    return body


class NdjsonWriter:
    """Writes one JSON object per line; with ``batch`` the lines are sent in one write.

    Never emits a blank line. The response is prepared lazily, so an error raised
    before the first line still becomes a normal error status.
    """

    def __init__(self, request: web.Request, *, batch: bool = False) -> None:
        self.request = request
        self.response = web.StreamResponse(status=200)
        self.response.content_type = NDJSON_TYPE
        self.batch = batch
        self.lines = 0
        self._buf: list[bytes] = []
        self._prepared = False

    @property
    def started(self) -> bool:
        return self._prepared

    async def send(self, obj: Any) -> None:
        self._buf.append(dumps(obj) + b"\n")
        self.lines += 1
        if not self.batch:
            await self.flush()

    async def flush(self) -> None:
        if not self._prepared:
            await self.response.prepare(self.request)
            self._prepared = True
        if self._buf:
            data = b"".join(self._buf)
            self._buf.clear()
            await self.response.write(data)

    async def finish(self) -> web.StreamResponse:
        await self.flush()
        await self.response.write_eof()
        return self.response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OllamaError as exc:
        return error_response(exc.status, exc.message)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return web.Response(status=404, text="404 page not found")
