"""The API's exception handlers: every error becomes the client's dialect's error body
(:mod:`herd.convert.errors`, the one mapper per dialect); ``/v1/messages*`` speaks
Anthropic's, the rest of ``/v1/*`` OpenAI's."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from herd.convert.errors import ErrorDialect, error_body, retry_headers
from herd.errors import BadRequest, HerdError

log = logging.getLogger("herd.serve")


def dialect_of(path: str) -> ErrorDialect:
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    return "openai" if path.startswith("/v1/") else "ollama"


def error_response(path: str, exc: HerdError) -> JSONResponse:
    body = error_body(dialect_of(path), exc)
    return JSONResponse(body, status_code=exc.status, headers=retry_headers(exc))


async def herd_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HerdError)
    return error_response(request.url.path, exc)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    err = HerdError(str(exc.detail))
    err.status = exc.status_code
    err.code = "not_found" if exc.status_code == 404 else "http_error"
    return error_response(request.url.path, err)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    return error_response(request.url.path, BadRequest(f"invalid request: {exc}"))


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return error_response(request.url.path, HerdError(f"internal error: {type(exc).__name__}"))
