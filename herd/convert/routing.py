"""Routing fields shared by both dialects: tags, fallback models, token estimates."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

from herd.domain import Dialect, InferenceRequest, RequestKind, canonical_model
from herd.wire.common import HerdFields
from herd.wire.limits import DEFAULT_LIMITS, Limits, check_tags

CHARS_PER_TOKEN = 4
"""Prompt-size estimate: about four characters per token for English text."""

IMAGE_TOKENS = 256
"""Rough prompt cost of one image (vision encoders use a few hundred tokens)."""

HERD_BODY_FIELDS = frozenset({"metadata", "fallback_models"})
"""Body fields only herd reads; they are removed before the body reaches a backend."""


def request_tags(
    body_tags: Iterable[str] | None, header: str | None = None, limits: Limits | None = None
) -> tuple[str, ...]:
    """Tags from ``metadata.tags`` and the ``X-Herd-Tags`` header (``"a, b"``).

    Each tag is trimmed and lower-cased; empty tags are dropped and duplicates removed,
    keeping the first occurrence (body tags first, then header tags). Both sources
    together are bounded by ``limits`` (count, length, printable: BadRequest otherwise).
    """
    header_tags = header.split(",") if header else ()
    return check_tags(chain(body_tags or (), header_tags), limits or DEFAULT_LIMITS)


def fallback_chain(primary: str, fallbacks: Iterable[str] | None) -> tuple[str, ...]:
    """Fallback model names, trimmed, in order, without blanks, duplicates or the primary.

    Names are compared with Ollama's rule (case-insensitive, missing tag = ``latest``).
    """
    if not fallbacks:
        return ()
    seen = {canonical_model(primary)}
    out: list[str] = []
    for name in fallbacks:
        name = name.strip()
        if not name:
            continue
        key = canonical_model(name)
        if key not in seen:
            seen.add(key)
            out.append(name)
    return tuple(out)


def estimate_tokens(chars: int, images: int = 0) -> int:
    """Prompt tokens from a character count (rounded up) plus a flat cost per image."""
    return -(-chars // CHARS_PER_TOKEN) + images * IMAGE_TOKENS


def inference_request(
    req: HerdFields,
    *,
    kind: RequestKind,
    model: str,
    body: dict[str, Any],
    stream: bool,
    dialect: Dialect,
    request_id: str,
    received_at: float,
    header_tags: str | None,
    client: str | None,
    prompt_chars: int,
    images: int = 0,
    limits: Limits | None = None,
) -> InferenceRequest:
    """The :class:`InferenceRequest` for a converted ``body``; herd-only fields go to
    their own attributes (they are never in ``body``)."""
    return InferenceRequest(
        request_id=request_id,
        kind=kind,
        model=model,
        body=body,
        stream=stream,
        dialect=dialect,
        fallback_models=fallback_chain(model, req.fallback_models),
        tags=request_tags(req.body_tags, header_tags, limits),
        client=client,
        estimated_tokens=estimate_tokens(prompt_chars, images),
        received_at=received_at,
    )
