"""OpenAI ``/v1/embeddings`` responses from Ollama ``/api/embed`` responses."""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import Any


def embedding_base64(vector: Sequence[float]) -> str:
    """Base64 of the vector as little-endian float32 (what openai-python decodes)."""
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def openai_embedding_response(
    response: Mapping[str, Any], *, model: str, encoding_format: str | None = None
) -> dict[str, Any]:
    """An Ollama ``/api/embed`` (or legacy ``/api/embeddings``) response -> OpenAI's
    ``list`` of ``embedding`` objects; ``encoding_format="base64"`` packs each vector.

    openai-python asks for base64 unless the caller sets ``encoding_format``.
    """
    vectors = response.get("embeddings")
    if vectors is None:
        single = response.get("embedding")
        vectors = [single] if single else []
    packed = encoding_format == "base64"
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": embedding_base64(vector) if packed else vector,
        }
        for index, vector in enumerate(vectors)
    ]
    tokens = response.get("prompt_eval_count") or 0
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
