"""HTTP routes: the Ollama dialect (``/``, ``/api/*``), OpenAI (``/v1/*``) and ``/fleet/*``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from herd import __version__, convert, wire
from herd.errors import HerdError, ModelNotFound
from herd.models import ModelOnDisk, canonical_model
from serve_app.errors import (
    herd_error_handler,
    http_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from serve_app.service import NDJSON, SSE, HerdService, NdjsonWriter, herd_headers, json_response

OLLAMA_COMPAT_VERSION = "0.12.0"


def _models(catalog: list[dict[str, Any]]) -> list[ModelOnDisk]:
    return [ModelOnDisk(**entry["model"]) for entry in catalog]


def _tags_body(catalog: list[dict[str, Any]]) -> dict[str, Any]:
    body = convert.ollama_tags_body(_models(catalog))
    where = {canonical_model(e["model"]["name"]): e for e in catalog}
    for entry in body["models"]:
        held = where.get(canonical_model(entry["name"]))
        if held is not None:
            entry["nodes"] = held["nodes"]
            entry["loaded_on"] = held["loaded_on"]
    return body


def _ps_body(running: list[dict[str, Any]]) -> dict[str, Any]:
    models = []
    for item in running:
        loaded, disk = item["loaded"], item.get("model") or {}
        models.append(
            {
                "name": loaded["name"],
                "model": loaded["name"],
                "size": loaded["size"],
                "size_vram": loaded["size_vram"],
                "digest": disk.get("digest", ""),
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": disk.get("family", ""),
                    "families": [disk["family"]] if disk.get("family") else None,
                    "parameter_size": disk.get("parameter_size", ""),
                    "quantization_level": disk.get("quantization_level", ""),
                },
                "expires_at": loaded["expires_at"] or "0001-01-01T00:00:00Z",
                "context_length": loaded["context_length"],
                "node": item["node"],
            }
        )
    models.sort(key=lambda m: m["expires_at"], reverse=True)
    return {"models": models}


def add_ollama_routes(app: FastAPI, svc: HerdService) -> None:
    @app.get("/", response_class=PlainTextResponse)
    @app.head("/", response_class=PlainTextResponse)
    async def root() -> str:
        return "Ollama is running"

    @app.get("/api/version")
    @app.head("/api/version")
    async def version() -> Response:
        return json_response({"version": OLLAMA_COMPAT_VERSION, "herd": __version__})

    @app.get("/api/tags")
    async def tags() -> Response:
        return json_response(_tags_body(await svc.catalog()))

    @app.get("/api/ps")
    async def ps() -> Response:
        return json_response(_ps_body(await svc.running()))

    async def generate_like(request: Request, parse: Any, build: Any) -> Response:
        raw = await svc.read_body(request)
        req = build(parse(raw), **svc.request_meta(request))
        if req.stream:
            return await svc.run_stream(req, NDJSON, lambda _d: NdjsonWriter())
        decision, retries, result = await svc.run_complete(req)
        return json_response(result, headers=herd_headers(decision, retries))

    @app.post("/api/chat")
    async def chat(request: Request) -> Response:
        return await generate_like(request, wire.parse_chat_request, convert.ollama_chat_request)

    @app.post("/api/generate")
    async def generate(request: Request) -> Response:
        return await generate_like(
            request, wire.parse_generate_request, convert.ollama_generate_request
        )

    @app.post("/api/embed")
    async def embed(request: Request) -> Response:
        raw = await svc.read_body(request)
        req = convert.ollama_embed_request(
            wire.parse_embed_request(raw), **svc.request_meta(request)
        )
        decision, retries, result = await svc.run_complete(req)
        return json_response(result, headers=herd_headers(decision, retries))

    @app.post("/api/embeddings")
    async def embeddings(request: Request) -> Response:
        raw = await svc.read_body(request)
        parsed = wire.parse_embeddings_request(raw)
        req = convert.ollama_embeddings_request(parsed, **svc.request_meta(request))
        decision, retries, result = await svc.run_complete(req)
        body = convert.ollama_embeddings_body(result)
        return json_response(body, headers=herd_headers(decision, retries))


def add_openai_routes(app: FastAPI, svc: HerdService) -> None:
    async def openai_generate_like(
        request: Request, parse: Any, build: Any, writer: Any, fold: Any, id_prefix: str
    ) -> Response:
        """Chat and legacy completions share everything but their parsers and writers."""
        raw = await svc.read_body(request)
        parsed = parse(raw)
        req = build(parsed, **svc.request_meta(request))
        created = int(time.time())
        completion_id = convert.new_completion_id(id_prefix)
        if req.stream:
            return await svc.run_stream(
                req,
                SSE,
                lambda d: writer(d.model, created, completion_id, parsed.include_usage),
            )
        decision, retries, result = await svc.run_complete(req)
        body = fold(result, model=decision.model, created=created, completion_id=completion_id)
        return json_response(body, headers=herd_headers(decision, retries))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await openai_generate_like(
            request,
            wire.parse_chat_completion_request,
            convert.openai_chat_request,
            convert.OpenAIChatStream,
            convert.openai_chat_completion,
            "chatcmpl-",
        )

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await openai_generate_like(
            request,
            wire.parse_completion_request,
            convert.openai_completion_request,
            convert.OpenAICompletionStream,
            convert.openai_completion,
            "cmpl-",
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        raw = await svc.read_body(request)
        parsed = wire.parse_embedding_request(raw)
        req = convert.openai_embedding_request(parsed, **svc.request_meta(request))
        decision, retries, result = await svc.run_complete(req)
        body = convert.openai_embedding_response(
            result, model=decision.model, encoding_format=parsed.encoding_format
        )
        return json_response(body, headers=herd_headers(decision, retries))

    @app.get("/v1/models")
    async def models() -> Response:
        return json_response(convert.openai_model_list(_models(await svc.catalog())))

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> Response:
        key = canonical_model(model_id)
        for entry in _models(await svc.catalog()):
            if canonical_model(entry.name) == key:
                return json_response(convert.openai_model(entry))
        raise ModelNotFound(f"The model `{model_id}` does not exist")


def add_fleet_routes(app: FastAPI, svc: HerdService) -> None:
    @app.get("/fleet/status")
    async def fleet_status() -> Response:
        return json_response(await svc.fleet_status())


def build_app(svc: HerdService) -> FastAPI:
    app = FastAPI(
        title="herd",
        version=__version__,
        docs_url="/fleet/docs",
        redoc_url=None,
        openapi_url="/fleet/openapi.json",
    )
    app.add_exception_handler(HerdError, herd_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    add_ollama_routes(app, svc)
    add_openai_routes(app, svc)
    add_fleet_routes(app, svc)
    return app
