"""One error mapper per HTTP dialect. Nothing else builds error responses."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from herd.errors import BadRequest, HerdError, ModelNotFound

log = logging.getLogger("herd.serve")

_OPENAI_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
}


def _headers(exc: HerdError) -> dict[str, str]:
    if exc.retry_after is not None:
        return {"Retry-After": str(max(1, round(exc.retry_after)))}
    return {}


def openai_error(exc: HerdError) -> JSONResponse:
    status = exc.status
    code = "model_not_found" if isinstance(exc, ModelNotFound) else exc.code
    body = {
        "error": {
            "message": exc.message,
            "type": _OPENAI_TYPES.get(status, "api_error"),
            "param": None,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=_headers(exc))


def ollama_error(exc: HerdError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=_headers(exc))


def error_response(path: str, exc: HerdError) -> JSONResponse:
    return openai_error(exc) if path.startswith("/v1/") else ollama_error(exc)


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
