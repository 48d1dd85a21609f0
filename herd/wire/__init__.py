"""Request bodies as clients send them (pydantic v2, unknown fields kept).

Each ``parse_*`` function takes the raw body (bytes/str) or an already-decoded JSON
object and returns a validated model, or raises :class:`herd.errors.BadRequest` with
one readable line. Nothing else escapes a parse function.
"""

from herd.wire.common import JSONInput
from herd.wire.ollama import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    parse_chat_request,
    parse_embed_request,
    parse_embeddings_request,
    parse_generate_request,
)
from herd.wire.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_chat_completion_request,
    parse_completion_request,
    parse_embedding_request,
)

__all__ = [
    "ChatCompletionRequest",
    "ChatRequest",
    "CompletionRequest",
    "EmbedRequest",
    "EmbeddingRequest",
    "EmbeddingsRequest",
    "GenerateRequest",
    "JSONInput",
    "parse_chat_completion_request",
    "parse_chat_request",
    "parse_completion_request",
    "parse_embed_request",
    "parse_embedding_request",
    "parse_embeddings_request",
    "parse_generate_request",
]
