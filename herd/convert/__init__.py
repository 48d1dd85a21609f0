"""Format conversion between the client dialects and the internal Ollama-native form.

Requests: ``ollama_*_request`` / ``openai_*_request`` turn a parsed wire model
(:mod:`herd.wire`) into an :class:`herd.domain.InferenceRequest`.
Responses: Ollama chunks -> NDJSON lines or one folded body (Ollama dialect), SSE
events or ``chat.completion`` / ``text_completion`` / embedding / model objects
(OpenAI dialect), and each dialect's error body.
"""

from herd.convert.ollama_request import (
    ollama_chat_request,
    ollama_embed_request,
    ollama_embeddings_request,
    ollama_generate_request,
)
from herd.convert.ollama_response import (
    OllamaAggregator,
    fold_chunks,
    ndjson_line,
    ndjson_lines,
    ollama_embeddings_body,
    ollama_error_body,
    ollama_tags_body,
)
from herd.convert.openai_completion_response import OpenAICompletionStream, openai_completion
from herd.convert.openai_embedding_response import embedding_base64, openai_embedding_response
from herd.convert.openai_models import openai_model, openai_model_list
from herd.convert.openai_request import (
    openai_chat_request,
    openai_completion_request,
    openai_embedding_request,
)
from herd.convert.openai_response import (
    SSE_DONE,
    SSE_KEEPALIVE,
    OpenAIChatStream,
    new_completion_id,
    openai_chat_completion,
    openai_error_body,
    sse_error,
    sse_event,
)
from herd.convert.routing import estimate_tokens, fallback_chain, request_tags

__all__ = [
    "SSE_DONE",
    "SSE_KEEPALIVE",
    "OllamaAggregator",
    "OpenAIChatStream",
    "OpenAICompletionStream",
    "embedding_base64",
    "estimate_tokens",
    "fallback_chain",
    "fold_chunks",
    "ndjson_line",
    "ndjson_lines",
    "new_completion_id",
    "ollama_chat_request",
    "ollama_embed_request",
    "ollama_embeddings_body",
    "ollama_embeddings_request",
    "ollama_error_body",
    "ollama_generate_request",
    "ollama_tags_body",
    "openai_chat_completion",
    "openai_chat_request",
    "openai_completion",
    "openai_completion_request",
    "openai_embedding_request",
    "openai_embedding_response",
    "openai_error_body",
    "openai_model",
    "openai_model_list",
    "request_tags",
    "sse_error",
    "sse_event",
]
