"""Ollama-native request bodies (``/api/chat``, ``/api/generate``, ``/api/embed``,
``/api/embeddings``), as real clients send them.

The models check what a backend would reject anyway (types, ``model``, known option
types, ``format``, ``think``, ``top_logprobs`` range) so the client gets a 400 from the
router instead of a failed attempt. Unknown fields are kept and passed through.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationInfo, field_validator

from herd.wire.common import (
    HerdFields,
    Int64,
    Int64List,
    JSONInput,
    KeepAlive,
    ModelName,
    Options,
    Think,
    WireModel,
    bare,
    validate,
)
from herd.wire.limits import Limits, limits_of


def tool_arguments(value: Any) -> Any:
    """Tool-call arguments as an object; a JSON string holding an object is accepted."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError:
            raise bare("invalid tool call arguments") from None
    if not isinstance(value, dict):
        raise bare("invalid tool call arguments")
    return value


class OllamaToolFunction(WireModel):
    name: str
    arguments: dict[str, Any]

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments(cls, value: Any) -> Any:
        return tool_arguments(value)


class OllamaToolCall(WireModel):
    id: str | None = None
    function: OllamaToolFunction


class OllamaMessage(WireModel):
    role: str
    content: str | None = None
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    @field_validator("role")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class _OllamaCommon(HerdFields):
    model: ModelName
    options: Options = None
    keep_alive: KeepAlive = None
    stream: bool | None = None
    format: str | dict[str, Any] | None = None
    think: Think = None
    logprobs: bool | None = None
    top_logprobs: Int64 | None = None

    @field_validator("format")
    @classmethod
    def _format(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str) and value not in ("", "json"):
            raise bare('format must be "json" or a JSON schema object')
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 20:
            raise bare("top_logprobs must be between 0 and 20")
        return value

    @property
    def streaming(self) -> bool:
        """Ollama's tri-state: absent (or null) means true."""
        return self.stream is not False


class ChatRequest(_OllamaCommon):
    """``POST /api/chat``."""

    messages: list[OllamaMessage] = []
    tools: list[dict[str, Any]] | None = None
    truncate: bool | None = None
    shift: bool | None = None


class GenerateRequest(_OllamaCommon):
    """``POST /api/generate``."""

    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    images: list[str] | None = None
    context: Int64List | None = None
    raw: bool | None = None
    truncate: bool | None = None
    shift: bool | None = None


def _embed_input(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise bare("invalid input type")


def check_input_count(count: int, limits: Limits) -> None:
    """Embedding inputs per request: at most ``FLEET_MAX_EMBED_INPUTS``."""
    if count > limits.embed_inputs:
        raise bare(
            f"too many inputs: {count} > {limits.embed_inputs} per request "
            "(FLEET_MAX_EMBED_INPUTS); send them in several requests"
        )


class EmbedRequest(HerdFields):
    """``POST /api/embed``: ``input`` is a string or a list of strings."""

    model: ModelName
    input: str | list[str] | None = None
    truncate: bool | None = None
    dimensions: Int64 | None = None
    options: Options = None
    keep_alive: KeepAlive = None

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any, info: ValidationInfo) -> Any:
        value = _embed_input(value)
        if isinstance(value, list):
            check_input_count(len(value), limits_of(info))
        return value

    @field_validator("dimensions")
    @classmethod
    def _dimensions(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise bare("dimensions must be a positive integer")
        return value

    @property
    def inputs(self) -> list[str]:
        if self.input is None:
            return []
        return [self.input] if isinstance(self.input, str) else self.input


class EmbeddingsRequest(HerdFields):
    """``POST /api/embeddings`` (legacy): one ``prompt`` string."""

    model: ModelName
    prompt: str | None = None
    options: Options = None
    keep_alive: KeepAlive = None


def parse_chat_request(raw: JSONInput, limits: Limits | None = None) -> ChatRequest:
    """Body of ``/api/chat`` -> :class:`ChatRequest`, or :class:`BadRequest`."""
    return validate(ChatRequest, raw, limits)


def parse_generate_request(raw: JSONInput, limits: Limits | None = None) -> GenerateRequest:
    """Body of ``/api/generate`` -> :class:`GenerateRequest`, or :class:`BadRequest`."""
    return validate(GenerateRequest, raw, limits)


def parse_embed_request(raw: JSONInput, limits: Limits | None = None) -> EmbedRequest:
    """Body of ``/api/embed`` -> :class:`EmbedRequest`, or :class:`BadRequest`."""
    return validate(EmbedRequest, raw, limits)


def parse_embeddings_request(raw: JSONInput, limits: Limits | None = None) -> EmbeddingsRequest:
    """Body of ``/api/embeddings`` -> :class:`EmbeddingsRequest`, or :class:`BadRequest`."""
    return validate(EmbeddingsRequest, raw, limits)
