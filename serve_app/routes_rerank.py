"""``POST /v1/rerank``: query + documents -> documents scored and sorted, in the shape the
common rerank servers share (Jina, Cohere's v1 client, vLLM, llama.cpp, LocalAI).

It runs on an embedding model: one ``/api/embed`` request for the query and every
document, routed, retried and traced like ``/v1/embeddings`` (trace kind ``rerank``),
then ranked by cosine similarity at the ingress (:mod:`herd.convert.rerank`). No
``/api/rerank``: Ollama has no rerank endpoint (its API has none, its rerank feature
request is still open), so there is no Ollama-side shape to match.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import Response

from herd.convert.rerank import (
    catalog_categories,
    embedding_model_problem,
    rerank_request,
    rerank_response,
    snapshot_categories,
)
from herd.errors import ModelNotFound
from herd.routing import model_targets
from herd.traces.context import current_trace
from herd.wire.limits import Limits
from herd.wire.rerank import parse_rerank_request
from serve_app.service import HerdService, herd_headers, json_response


def add_rerank_routes(app: FastAPI, svc: HerdService) -> None:
    limits = Limits.from_settings(svc.settings)  # FLEET_MAX_RERANK_DOCUMENTS / _CHARS

    async def categories(model: str) -> list[str]:
        """What the nodes call ``model``: from the ingress's mirror when it is fresh (no
        call), else from the router's catalog."""
        now = time.time()
        mirror = svc.dispatcher.mirror
        if mirror.fresh(now):
            return snapshot_categories(mirror.snapshot(now), model)
        return catalog_categories(await svc.catalog(), model)

    async def embedding_model(requested: str | None) -> str:
        if requested:
            return requested
        found = model_targets.default_model(await svc.catalog(), "embedding")
        if found is None:
            raise ModelNotFound("no node in the fleet has an embedding model to rerank with")
        return found

    def traced_as_rerank(model: str) -> None:
        ctx = current_trace.get()
        if ctx is not None:
            ctx.kind = "rerank"  # the node ran an embedding; the client asked for a rerank
            ctx.requested_model = ctx.requested_model or model

    @app.post("/v1/rerank")
    async def rerank(request: Request) -> Response:
        """Who: inference callers (an inference key when ``FLEET_API_KEYS`` is set).
        Bounds: the body (``FLEET_MAX_BODY_BYTES``), ``FLEET_MAX_RERANK_DOCUMENTS``
        documents, the query and each document ``FLEET_MAX_RERANK_CHARS`` characters;
        the model must be an embedding model (400 otherwise, 404 when no node has it)."""
        parsed = parse_rerank_request(await svc.read_body(request), limits)
        model = await embedding_model(parsed.model)
        try:
            for name in (model, *(parsed.fallback_models or ())):
                target = svc.dispatcher.aliases.resolve(name)  # FLEET_MODEL_ALIASES
                problem = embedding_model_problem(target, await categories(target), name)
                if problem is not None:
                    raise problem
            req = rerank_request(parsed, model=model, **svc.request_meta(request), limits=limits)
            decision, retries, result = await svc.run_complete(req)
        finally:
            traced_as_rerank(model)
        body = rerank_response(result, parsed, model=decision.model, response_id=req.request_id)
        return json_response(body, headers=herd_headers(decision, retries))
