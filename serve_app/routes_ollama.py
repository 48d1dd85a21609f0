"""Ollama dialect inference routes: ``/``, ``/api/version``, chat, generate, embed,
embeddings (legacy). Model management is in ``routes_models``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from herd import __version__, convert, wire
from herd.wire.limits import Limits
from serve_app.service import NDJSON, HerdService, NdjsonWriter, herd_headers, json_response

OLLAMA_COMPAT_VERSION = "0.12.0"


def add_ollama_routes(app: FastAPI, svc: HerdService) -> None:
    limits = Limits.from_settings(svc.settings)  # FLEET_MAX_*: names, tags, tokens, inputs

    def meta(request: Request) -> dict[str, Any]:
        return {**svc.request_meta(request), "limits": limits}

    @app.get("/", response_class=PlainTextResponse)
    @app.head("/", response_class=PlainTextResponse)
    async def root() -> str:
        return "Ollama is running"

    @app.get("/api/version")
    @app.head("/api/version")
    async def version() -> Response:
        return json_response({"version": OLLAMA_COMPAT_VERSION, "herd": __version__})

    async def generate_like(request: Request, parse: Any, build: Any) -> Response:
        raw = await svc.read_body(request)
        req = build(parse(raw, limits), **meta(request))
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
        req = convert.ollama_embed_request(wire.parse_embed_request(raw, limits), **meta(request))
        decision, retries, result = await svc.run_complete(req)
        return json_response(result, headers=herd_headers(decision, retries))

    @app.post("/api/embeddings")
    async def embeddings(request: Request) -> Response:
        raw = await svc.read_body(request)
        parsed = wire.parse_embeddings_request(raw, limits)
        req = convert.ollama_embeddings_request(parsed, **meta(request))
        decision, retries, result = await svc.run_complete(req)
        body = convert.ollama_embeddings_body(result)
        return json_response(body, headers=herd_headers(decision, retries))
