"""Ollama-native bodies -> :class:`InferenceRequest` (a pass-through).

The body sent to the backend is what the client sent, minus herd's own fields
(``metadata``, ``fallback_models``) and top-level nulls: ``options``, ``format``,
``think``, ``images``, ``tools``, ``keep_alive`` and unknown fields reach Ollama as given.
``stream`` stays tri-state in the body (absent means true); ``InferenceRequest.stream``
holds the resolved value. Tool-call ``arguments`` sent as a JSON string arrive at the
backend as the object Ollama expects.
"""

from __future__ import annotations

from typing import Any

from herd.convert.routing import HERD_BODY_FIELDS, inference_request
from herd.domain import InferenceRequest
from herd.wire.common import HerdFields
from herd.wire.limits import Limits
from herd.wire.ollama import ChatRequest, EmbeddingsRequest, EmbedRequest, GenerateRequest


def backend_body(req: HerdFields) -> dict[str, Any]:
    """The fields the client set, without herd-only fields and top-level nulls."""
    body = req.model_dump(exclude_unset=True, exclude=set(HERD_BODY_FIELDS))
    return {key: value for key, value in body.items() if value is not None}


def ollama_chat_request(
    req: ChatRequest,
    *,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """``/api/chat`` body -> ``InferenceRequest(kind="chat", dialect="ollama")``."""
    chars = 0
    images = 0
    for message in req.messages:
        chars += len(message.content or "")
        if message.images:
            images += len(message.images)
    if req.tools:
        chars += len(str(req.tools))
    return inference_request(
        req,
        limits=limits,
        kind="chat",
        model=req.model,
        body=backend_body(req),
        stream=req.streaming,
        dialect="ollama",
        request_id=request_id,
        received_at=received_at,
        header_tags=header_tags,
        client=client,
        prompt_chars=chars,
        images=images,
    )


def ollama_generate_request(
    req: GenerateRequest,
    *,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """``/api/generate`` body -> ``InferenceRequest(kind="generate", dialect="ollama")``."""
    chars = len(req.prompt or "") + len(req.system or "") + len(req.suffix or "")
    return inference_request(
        req,
        limits=limits,
        kind="generate",
        model=req.model,
        body=backend_body(req),
        stream=req.streaming,
        dialect="ollama",
        request_id=request_id,
        received_at=received_at,
        header_tags=header_tags,
        client=client,
        prompt_chars=chars,
        images=len(req.images or ()),
    )


def ollama_embed_request(
    req: EmbedRequest,
    *,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """``/api/embed`` body -> ``InferenceRequest(kind="embed", stream=False)``."""
    return inference_request(
        req,
        limits=limits,
        kind="embed",
        model=req.model,
        body=backend_body(req),
        stream=False,
        dialect="ollama",
        request_id=request_id,
        received_at=received_at,
        header_tags=header_tags,
        client=client,
        prompt_chars=sum(len(text) for text in req.inputs),
    )


def ollama_embeddings_request(
    req: EmbeddingsRequest,
    *,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """Legacy ``/api/embeddings`` body -> ``InferenceRequest(kind="embeddings")``."""
    return inference_request(
        req,
        limits=limits,
        kind="embeddings",
        model=req.model,
        body=backend_body(req),
        stream=False,
        dialect="ollama",
        request_id=request_id,
        received_at=received_at,
        header_tags=header_tags,
        client=client,
        prompt_chars=len(req.prompt or ""),
    )
