"""Anthropic Messages request bodies (``/v1/messages``, ``/v1/messages/count_tokens``), as
the official ``anthropic`` client, LangChain's ``ChatAnthropic`` and Claude Code send them.

Checked here, each a 400 in Anthropic's error shape: ``max_tokens`` (required, 1 up to
``FLEET_MAX_PREDICT``), an empty ``messages`` array, roles other than user / assistant /
system (system turns: text only),
``temperature`` and ``top_p`` outside 0..1, a negative ``top_k``, images that are not
base64 of a supported media type (URL and file sources: the node cannot fetch them),
``document`` / ``search_result`` / server-tool blocks and server tools (``web_search``,
``bash``, ...: only custom tools, which the node's model calls, are served), a
``tool_choice`` naming a tool that is not in ``tools``.

Accepted and ignored: ``cache_control``, ``citations``, ``service_tier``, ``container``,
``mcp_servers`` (no node caches prompts or runs MCP), ``thinking.budget_tokens`` (Ollama's
``think`` has no budget). herd extensions, as in the other dialects: ``fallback_models``,
``metadata.tags``, and the Ollama-only ``options`` and ``keep_alive``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from herd.wire.common import (
    HerdFields,
    Int64,
    JSONInput,
    KeepAlive,
    ModelName,
    Options,
    WireModel,
    bare,
    check_base64,
    field_error,
    validate,
)
from herd.wire.limits import Limits, limits_of

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
IMAGE_SOURCE_UNSUPPORTED = (
    "image sources of type {kind!r} are not supported: send the image as "
    '{{"type": "base64", "media_type": ..., "data": ...}}'
)


# -- content blocks -------------------------------------------------------------------


class TextBlock(WireModel):
    type: Literal["text"]
    text: str


class ImageSource(WireModel):
    type: str
    media_type: str | None = None
    data: str | None = None

    @model_validator(mode="after")
    def _base64_only(self) -> ImageSource:
        if self.type != "base64":
            raise bare(IMAGE_SOURCE_UNSUPPORTED.format(kind=self.type))
        if self.media_type not in IMAGE_MEDIA_TYPES:
            raise bare(
                "image source media_type must be one of " + ", ".join(sorted(IMAGE_MEDIA_TYPES))
            )
        if not self.data or not check_base64(self.data):
            raise bare("image source data must be base64")
        return self


class ImageBlock(WireModel):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(WireModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


ToolResultPart = Annotated[TextBlock | ImageBlock, Field(discriminator="type")]


class ToolResultBlock(WireModel):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ToolResultPart] | None = None
    is_error: bool | None = None


class ThinkingBlock(WireModel):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(WireModel):
    type: Literal["redacted_thinking"]
    data: str | None = None


ContentBlock = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock,
    Field(discriminator="type"),
]
_BLOCK_TYPES = ("text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking")


def _known_blocks(value: Any) -> Any:
    """A readable 400 for block types no node can take (documents, server tools' blocks)."""
    if isinstance(value, list):
        for index, block in enumerate(value):
            kind = block.get("type") if isinstance(block, dict) else None
            if isinstance(kind, str) and kind not in _BLOCK_TYPES:
                raise bare(
                    f"content[{index}]: blocks of type {kind!r} are not supported "
                    "(supported: " + ", ".join(_BLOCK_TYPES) + ")"
                )
    return value


class Message(WireModel):
    """A turn. ``system`` turns (newer clients send them among the messages) hold text."""

    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        return _known_blocks(value)

    @model_validator(mode="after")
    def _system_is_text(self) -> Message:
        blocks = [] if isinstance(self.content, str) else self.content
        if self.role == "system" and not all(isinstance(b, TextBlock) for b in blocks):
            raise bare("a system message holds text blocks only")
        return self


# -- tools ----------------------------------------------------------------------------


class Tool(WireModel):
    """A custom tool. Server tools (``type`` other than ``custom``) are refused."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    type: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _custom_only(cls, value: Any) -> Any:
        if isinstance(value, dict):
            kind = value.get("type")
            if kind is not None and kind != "custom":
                raise bare(
                    f"tools of type {kind!r} are not supported: only custom tools "
                    "(name, description, input_schema) run on the fleet's models"
                )
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or len(value) > 128:
            raise field_error("must be 1 to 128 characters")
        return value


class ToolChoice(WireModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _named(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise field_error("name is required when type is 'tool'")
        return self


class Thinking(WireModel):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Int64 | None = None


# -- requests -------------------------------------------------------------------------


def _unit(value: float | None, name: str) -> float | None:
    if value is not None and not 0 <= value <= 1:
        raise bare(f"{name}: must be between 0 and 1")
    return value


class CountTokensRequest(HerdFields):
    """``POST /v1/messages/count_tokens``: what the prompt of a Messages request is."""

    model: ModelName
    messages: list[Message]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[Message]) -> list[Message]:
        if not value:
            raise bare("messages: at least one message is required")
        return value

    @model_validator(mode="after")
    def _choice_in_tools(self) -> CountTokensRequest:
        name = self.tool_choice.name if self.tool_choice else None
        if name and not any(tool.name == name for tool in self.tools or ()):
            raise bare(f"tool_choice names tool {name!r}, which is not in tools")
        return self

    @property
    def system_text(self) -> str:
        if self.system is None:
            return ""
        if isinstance(self.system, str):
            return self.system
        return "\n".join(block.text for block in self.system)


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``."""

    max_tokens: int
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: Int64 | None = None
    options: Options = None
    keep_alive: KeepAlive = None

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens(cls, value: int, info: ValidationInfo) -> int:
        if value < 1:
            raise bare(f"max_tokens: must be at least 1, got {value}")
        limit = limits_of(info).predict
        if value > limit:
            raise bare(f"max_tokens: at most {limit} tokens per request (FLEET_MAX_PREDICT)")
        return value

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float | None) -> float | None:
        return _unit(value, "temperature")

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, value: float | None) -> float | None:
        return _unit(value, "top_p")

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise bare("top_k: must be at least 0")
        return value

    @field_validator("metadata")
    @classmethod
    def _user_id(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        user = (value or {}).get("user_id")
        if user is not None and not isinstance(user, str):
            raise bare("metadata.user_id: must be a string")
        return value

    @property
    def streaming(self) -> bool:
        """Anthropic's default is false."""
        return bool(self.stream)

    @property
    def user_id(self) -> str | None:
        user = (self.metadata or {}).get("user_id")
        return user if isinstance(user, str) and user else None


def parse_messages_request(raw: JSONInput, limits: Limits | None = None) -> MessagesRequest:
    """Body of ``/v1/messages`` -> :class:`MessagesRequest`, or BadRequest."""
    return validate(MessagesRequest, raw, limits)


def parse_count_tokens_request(raw: JSONInput, limits: Limits | None = None) -> CountTokensRequest:
    """Body of ``/v1/messages/count_tokens`` -> :class:`CountTokensRequest`, or BadRequest."""
    return validate(CountTokensRequest, raw, limits)
