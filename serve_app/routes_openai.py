"""OpenAI dialect inference routes: chat completions, legacy completions, embeddings.
Models are in ``routes_models``, images and transcriptions in ``routes_media``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from herd import convert, wire
from herd.wire.limits import Limits
from serve_app.service import SSE, HerdService, herd_headers, json_response


def add_openai_routes(app: FastAPI, svc: HerdService) -> None:
    limits = Limits.from_settings(svc.settings)  # FLEET_MAX_*: names, tags, tokens, inputs

    def meta(request: Request) -> dict[str, Any]:
        return {**svc.request_meta(request), "limits": limits}

    async def openai_generate_like(
        request: Request, parse: Any, build: Any, writer: Any, fold: Any, id_prefix: str
    ) -> Response:
        """Chat and legacy completions share everything but their parsers and writers."""
        raw = await svc.read_body(request)
        parsed = parse(raw, limits)
        req = build(parsed, **meta(request))
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
        parsed = wire.parse_embedding_request(raw, limits)
        req = convert.openai_embedding_request(parsed, **meta(request))
        decision, retries, result = await svc.run_complete(req)
        body = convert.openai_embedding_response(
            result, model=decision.model, encoding_format=parsed.encoding_format
        )
        return json_response(body, headers=herd_headers(decision, retries))
