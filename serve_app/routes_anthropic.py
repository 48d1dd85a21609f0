"""Anthropic Messages routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Who may call them: inference callers (an inference key as ``x-api-key``, which the
official client sends, or as a bearer; anyone when no keys are configured), like every
other inference route (``herd/guard/access.py``). ``anthropic-version`` and
``anthropic-beta`` headers are accepted and not needed.

What bounds their work: the body size (``FLEET_MAX_BODY_BYTES``), ``max_tokens`` (required,
at most ``FLEET_MAX_PREDICT``), model names and tags (``herd/wire/limits.py``).

``/v1/messages`` is translated into an Ollama ``/api/chat`` request
(``herd/convert/anthropic_request.py``) and runs the same dispatcher loop as every other
chat request (routing, retries, fallbacks, trace with dialect ``anthropic``); no node is
sent ``/v1/messages`` itself, so Ollama, llama.cpp and the emulator all serve it.
``count_tokens`` runs on no node: it answers the estimate the router itself uses,
characters / 4 plus 256 per image (``count_prompt_tokens``), since not every backend
exposes a tokenizer. Every error on these paths is in Anthropic's shape
(``serve_app/errors.dialect_of``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from herd.convert.anthropic_request import anthropic_messages_request, count_prompt_tokens
from herd.convert.anthropic_response import AnthropicStream, anthropic_message, new_message_id
from herd.wire.anthropic import parse_count_tokens_request, parse_messages_request
from herd.wire.limits import Limits
from serve_app.service import SSE, HerdService, herd_headers, json_response


def add_anthropic_routes(app: FastAPI, svc: HerdService) -> None:
    limits = Limits.from_settings(svc.settings)

    def meta(request: Request) -> dict[str, Any]:
        return {**svc.request_meta(request), "limits": limits}

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        parsed = parse_messages_request(await svc.read_body(request), limits)
        req = anthropic_messages_request(parsed, **meta(request))
        message_id = new_message_id()
        if req.stream:
            return await svc.run_stream(req, SSE, lambda d: AnthropicStream(d.model, message_id))
        decision, retries, result = await svc.run_complete(req)
        body = anthropic_message(result, model=decision.model, message_id=message_id)
        return json_response(body, headers=herd_headers(decision, retries))

    @app.post("/v1/messages/count_tokens")
    async def count_tokens(request: Request) -> Response:
        parsed = parse_count_tokens_request(await svc.read_body(request), limits)
        return json_response({"input_tokens": count_prompt_tokens(parsed)})
