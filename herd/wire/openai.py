"""OpenAI request bodies (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``), as openai-python and other real clients send them.

Everything the conversion to Ollama cannot honour is rejected here with a 400:
``n`` other than 1, token-array inputs, ``http(s)`` image URLs (Ollama's own message),
bad data URIs or base64, tool-call arguments that are not a JSON object, an empty
``messages`` array, unknown ``encoding_format`` and ``reasoning_effort`` values.

herd extensions accepted on top of OpenAI's fields: ``fallback_models``,
``metadata.tags`` (see :class:`herd.wire.common.HerdFields`), and the Ollama-only
``options``, ``keep_alive`` and ``think`` (chat), passed to the backend as given.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from herd.wire.common import (
    HerdFields,
    Int64,
    JSONInput,
    KeepAlive,
    ModelName,
    Options,
    Think,
    WireModel,
    bare,
    field_error,
    validate,
)
from herd.wire.limits import Limits, limits_of
from herd.wire.ollama import check_input_count
from herd.wire.openai_messages import (
    IMAGE_URL_UNSUPPORTED,
    AudioPart,
    ChatMessage,
    ContentPart,
    FunctionCall,
    ImagePart,
    ImageURL,
    InputAudio,
    RefusalPart,
    TextPart,
    ToolCall,
    image_data,
)

REASONING_EFFORT: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}


# -- request options ------------------------------------------------------------------


class StreamOptions(WireModel):
    include_usage: bool | None = None


class JSONSchemaFormat(WireModel):
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(WireModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class FunctionDef(WireModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(WireModel):
    type: Literal["function"] = "function"
    function: FunctionDef


def _range(value: float | None, low: float, high: float) -> float | None:
    if value is not None and not low <= value <= high:
        raise field_error(f"must be between {low:g} and {high:g}")
    return value


def check_max_tokens(value: int | None, info: ValidationInfo, low: int) -> int | None:
    """``max_tokens`` / ``max_completion_tokens``: ``low`` (OpenAI: 1 for chat, 0 for
    legacy completions) up to ``FLEET_MAX_PREDICT``; OpenAI's wording below the floor."""
    if value is None:
        return value
    name = info.field_name
    if value < low:
        raise bare(
            f"Invalid '{name}': integer below minimum value. "
            f"Expected a value >= {low}, but got {value} instead."
        )
    limit = limits_of(info).predict
    if value > limit:
        raise bare(f"Invalid '{name}': at most {limit} tokens per request (FLEET_MAX_PREDICT)")
    return value


class OpenAICommon(HerdFields):
    model: ModelName
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: Int64 | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    n: Int64 | None = None
    user: str | None = None
    options: Options = None
    keep_alive: KeepAlive = None

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float | None) -> float | None:
        return _range(value, 0, 2)

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, value: float | None) -> float | None:
        return _range(value, 0, 1)

    @field_validator("frequency_penalty", "presence_penalty")
    @classmethod
    def _penalty(cls, value: float | None) -> float | None:
        return _range(value, -2, 2)

    @field_validator("n")
    @classmethod
    def _n(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise bare("only n=1 is supported: one choice per request")
        return value

    @property
    def streaming(self) -> bool:
        """OpenAI's default is false."""
        return bool(self.stream)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(OpenAICommon):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: Int64 | None = None
    reasoning_effort: str | None = None
    reasoning: dict[str, Any] | None = None
    think: Think = None

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise bare("[] is too short - 'messages'")
        return value

    @field_validator("max_completion_tokens", "max_tokens")
    @classmethod
    def _max_tokens(cls, value: int | None, info: ValidationInfo) -> int | None:
        return check_max_tokens(value, info, 1)

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str) and value not in ("none", "auto", "required"):
            raise field_error("must be 'none', 'auto', 'required' or a function object")
        if isinstance(value, dict) and value.get("type", "function") == "function":
            function = value.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise field_error("function.name is required")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 20:
            raise bare("top_logprobs must be between 0 and 20")
        return value

    @field_validator("reasoning_effort")
    @classmethod
    def _effort(cls, value: str | None) -> str | None:
        if value is not None and value not in REASONING_EFFORT:
            raise field_error("must be one of " + ", ".join(REASONING_EFFORT))
        return value

    @field_validator("reasoning")
    @classmethod
    def _reasoning(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        effort = (value or {}).get("effort")
        if effort is not None and effort not in REASONING_EFFORT:
            raise field_error("effort must be one of " + ", ".join(REASONING_EFFORT))
        return value

    @property
    def effort(self) -> str | None:
        """``reasoning_effort``, else ``reasoning.effort``."""
        if self.reasoning_effort is not None:
            return self.reasoning_effort
        effort = (self.reasoning or {}).get("effort")
        return effort if isinstance(effort, str) else None


def _single_prompt(value: Any) -> Any:
    if isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            if len(value) > 1:
                raise bare("only one prompt per request is supported")
            return value[0]
        if not value:
            raise bare("prompt must not be empty")
        raise bare("token arrays are not supported: send the prompt as a string")
    return value


class CompletionRequest(OpenAICommon):
    """``POST /v1/completions`` (legacy). ``echo`` and ``logprobs`` are ignored."""

    prompt: str
    suffix: str | None = None
    max_tokens: int | None = None
    best_of: Int64 | None = None
    echo: bool | None = None
    logprobs: Int64 | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> Any:
        return _single_prompt(value)

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens(cls, value: int | None, info: ValidationInfo) -> int | None:
        return check_max_tokens(value, info, 0)

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise bare("only best_of=1 is supported")
        return value


def _embedding_input(value: Any) -> Any:
    if isinstance(value, str):
        if not value:
            raise bare("input must not be empty")
        return value
    if isinstance(value, list):
        if not value:
            raise bare("input must not be empty")
        if all(isinstance(v, str) for v in value):
            if not all(value):
                raise bare("input must not contain empty strings")
            return value
        if all(isinstance(v, int | list) for v in value):
            raise bare("token arrays are not supported: send a string or a list of strings")
    raise bare("invalid input type: expected a string or a list of strings")


class EmbeddingRequest(HerdFields):
    """``POST /v1/embeddings``."""

    model: ModelName
    input: str | list[str]
    encoding_format: str | None = None
    dimensions: Int64 | None = None
    user: str | None = None
    truncate: bool | None = None
    options: Options = None
    keep_alive: KeepAlive = None

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any, info: ValidationInfo) -> Any:
        value = _embedding_input(value)
        if isinstance(value, list):
            check_input_count(len(value), limits_of(info))
        return value

    @field_validator("encoding_format")
    @classmethod
    def _encoding(cls, value: str | None) -> str | None:
        if value is not None and value not in ("float", "base64"):
            raise bare("Invalid value for 'encoding_format': expected 'float' or 'base64'")
        return value

    @field_validator("dimensions")
    @classmethod
    def _dimensions(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise bare("dimensions must be a positive integer")
        return value

    @property
    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


def parse_chat_completion_request(
    raw: JSONInput, limits: Limits | None = None
) -> ChatCompletionRequest:
    """Body of ``/v1/chat/completions`` -> :class:`ChatCompletionRequest`, or BadRequest."""
    return validate(ChatCompletionRequest, raw, limits)


def parse_completion_request(raw: JSONInput, limits: Limits | None = None) -> CompletionRequest:
    """Body of ``/v1/completions`` -> :class:`CompletionRequest`, or BadRequest."""
    return validate(CompletionRequest, raw, limits)


def parse_embedding_request(raw: JSONInput, limits: Limits | None = None) -> EmbeddingRequest:
    """Body of ``/v1/embeddings`` -> :class:`EmbeddingRequest`, or BadRequest."""
    return validate(EmbeddingRequest, raw, limits)


__all__ = [
    "IMAGE_URL_UNSUPPORTED",
    "REASONING_EFFORT",
    "AudioPart",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "ContentPart",
    "EmbeddingRequest",
    "FunctionCall",
    "FunctionDef",
    "ImagePart",
    "ImageURL",
    "InputAudio",
    "JSONSchemaFormat",
    "OpenAICommon",
    "RefusalPart",
    "ResponseFormat",
    "StreamOptions",
    "TextPart",
    "ToolCall",
    "ToolDef",
    "image_data",
    "parse_chat_completion_request",
    "parse_completion_request",
    "parse_embedding_request",
]
