"""OpenAI Responses: ``POST /v1/responses``, stateless.

Who may call it: inference callers (``herd/guard/access.INFERENCE_POSTS``: open, or an
inference key when ``FLEET_API_KEYS`` is set). What bounds its work: the body size
(``FLEET_MAX_BODY_BYTES``), ``max_output_tokens`` up to ``FLEET_MAX_PREDICT``, the
request bounds of ``herd/wire/limits.py`` (model names, tags, options), and the
dispatcher's silence limits. The body becomes the same Ollama-native chat request as
``/v1/chat/completions`` (``herd/convert/openai_responses_request.py``), so it gets the
same routing, retries, fallbacks and trace (dialect ``openai``, kind ``chat``); the
answer is written as a ``response`` object or its typed SSE events
(``herd/convert/openai_responses_stream.py``). Nothing is stored: ``store`` is ignored,
``previous_response_id`` is a 400.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import Response

from herd.convert.openai_responses_request import openai_responses_request
from herd.convert.openai_responses_stream import (
    OpenAIResponsesStream,
    new_response_id,
    openai_response,
    response_base,
)
from herd.wire.limits import Limits
from herd.wire.openai_responses import parse_responses_request
from serve_app.service import SSE, HerdService, herd_headers, json_response


def add_responses_routes(app: FastAPI, svc: HerdService) -> None:
    limits = Limits.from_settings(svc.settings)

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        raw = await svc.read_body(request)
        parsed = parse_responses_request(raw, limits)
        req = openai_responses_request(parsed, **svc.request_meta(request), limits=limits)
        created = int(time.time())
        response_id = new_response_id()
        if req.stream:
            return await svc.run_stream(
                req,
                SSE,
                lambda d: OpenAIResponsesStream(
                    response_base(
                        parsed, model=d.model, response_id=response_id, created_at=created
                    )
                ),
            )
        decision, retries, result = await svc.run_complete(req)
        base = response_base(
            parsed, model=decision.model, response_id=response_id, created_at=created
        )
        return json_response(openai_response(result, base), headers=herd_headers(decision, retries))
