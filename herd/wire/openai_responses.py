"""OpenAI Responses request body (``POST /v1/responses``), as openai-python, Codex and
the AI SDK send it. herd is stateless:

* ``previous_response_id`` and ``conversation`` are a 400 (nothing is stored to refer
  to: send the whole history as ``input`` items); ``background: true`` is a 400 too;
  ``item_reference`` input items are a 400 for the same reason.
* ``store`` is accepted and ignored (OpenAI's default is true; herd stores nothing and
  answers ``store: false``).

``input`` is a string (one user message) or a list of items: messages (``role`` user /
assistant / system / developer; ``content`` a string or ``input_text`` /
``input_image`` / ``output_text`` / ``refusal`` parts), ``function_call`` and
``function_call_output`` items; ``reasoning`` items are accepted and dropped.
``tools`` are function tools only. ``max_output_tokens`` is bounded by
``FLEET_MAX_PREDICT`` like ``max_tokens`` elsewhere.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

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
from herd.wire.limits import Limits
from herd.wire.ollama import tool_arguments
from herd.wire.openai import REASONING_EFFORT, check_max_tokens
from herd.wire.openai_messages import image_data

STATELESS = (
    "herd is stateless and stores no responses: {what} is not supported; "
    "send the whole conversation as input items"
)


# -- input items --------------------------------------------------------------------


class InputText(WireModel):
    type: Literal["input_text", "output_text", "text"]
    text: str


class InputRefusal(WireModel):
    type: Literal["refusal"]
    refusal: str


class InputImage(WireModel):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None

    @field_validator("image_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            image_data(value)
        return value

    @model_validator(mode="after")
    def _has_url(self) -> InputImage:
        if self.image_url is None:
            if self.file_id is not None:
                raise bare("input_image.file_id is not supported: send image_url as a data URI")
            raise bare("input_image needs image_url (a base64 data URI)")
        return self

    @property
    def data(self) -> str:
        """The validated base64 payload of the data URI."""
        return (self.image_url or "").partition(",")[2]


def _part_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind in ("input_text", "output_text", "text"):
        return "text"
    if kind in ("refusal", "input_image"):
        return str(kind)
    raise bare(
        f"content part type {kind!r} is not supported: use input_text, input_image, "
        "output_text or refusal"
    )


ContentPart = Annotated[
    Annotated[InputText, Tag("text")]
    | Annotated[InputRefusal, Tag("refusal")]
    | Annotated[InputImage, Tag("input_image")],
    Discriminator(_part_tag),
]


class MessageItem(WireModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(WireModel):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: dict[str, Any]
    id: str | None = None
    status: str | None = None

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments(cls, value: Any) -> Any:
        return tool_arguments(value)


class FunctionCallOutputItem(WireModel):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class ReasoningItem(WireModel):
    """A reasoning item from an earlier turn: accepted, not sent to the model."""

    type: Literal["reasoning"]


_ITEM_TAGS = ("message", "function_call", "function_call_output", "reasoning")


def _item_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind is None:
        return "message"
    if kind == "item_reference":
        raise bare(STATELESS.format(what="item_reference"))
    if kind not in _ITEM_TAGS:
        raise bare(
            f"input item type {kind!r} is not supported: use message, function_call or "
            "function_call_output"
        )
    return str(kind)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(_item_tag),
]


# -- tools and text format ----------------------------------------------------------


class FunctionTool(WireModel):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


def _tool(value: Any) -> Any:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind != "function":
        raise bare(f"tool type {kind!r} is not supported: only function tools are")
    return value


class TextFormat(WireModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(WireModel):
    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningConfig(WireModel):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None

    @field_validator("effort")
    @classmethod
    def _effort(cls, value: str | None) -> str | None:
        if value is not None and value not in REASONING_EFFORT:
            raise field_error("must be one of " + ", ".join(REASONING_EFFORT))
        return value


def _range(value: float | None, low: float, high: float) -> float | None:
    if value is not None and not low <= value <= high:
        raise field_error(f"must be between {low:g} and {high:g}")
    return value


class ResponsesRequest(HerdFields):
    """``POST /v1/responses``."""

    model: ModelName
    input: str | list[InputItem]
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None
    user: str | None = None
    seed: Int64 | None = None
    options: Options = None
    keep_alive: KeepAlive = None
    think: Think = None

    @field_validator("input")
    @classmethod
    def _input(cls, value: str | list[Any]) -> str | list[Any]:
        if isinstance(value, list) and not value:
            raise bare("input must not be empty")
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _tools(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_tool(tool) for tool in value]
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str) and value not in ("none", "auto", "required"):
            raise field_error("must be 'none', 'auto', 'required' or a function object")
        if isinstance(value, dict) and (
            value.get("type") != "function" or not isinstance(value.get("name"), str)
        ):
            raise field_error("only {'type': 'function', 'name': ...} is supported")
        return value

    @field_validator("max_output_tokens")
    @classmethod
    def _max_tokens(cls, value: int | None, info: ValidationInfo) -> int | None:
        return check_max_tokens(value, info, 1)

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float | None) -> float | None:
        return _range(value, 0, 2)

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, value: float | None) -> float | None:
        return _range(value, 0, 1)

    @field_validator("previous_response_id")
    @classmethod
    def _previous(cls, value: str | None) -> str | None:
        if value is not None:
            raise bare(STATELESS.format(what="previous_response_id"))
        return value

    @field_validator("conversation")
    @classmethod
    def _conversation(cls, value: Any) -> Any:
        if value is not None:
            raise bare(STATELESS.format(what="conversation"))
        return value

    @field_validator("background")
    @classmethod
    def _background(cls, value: bool | None) -> bool | None:
        if value:
            raise bare("background responses are not supported: herd answers in the request")
        return value

    @property
    def streaming(self) -> bool:
        return bool(self.stream)


def parse_responses_request(raw: JSONInput, limits: Limits | None = None) -> ResponsesRequest:
    """Body of ``/v1/responses`` -> :class:`ResponsesRequest`, or BadRequest."""
    return validate(ResponsesRequest, raw, limits)


__all__ = [
    "STATELESS",
    "ContentPart",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "FunctionTool",
    "InputImage",
    "InputItem",
    "InputRefusal",
    "InputText",
    "MessageItem",
    "ReasoningItem",
    "ResponsesRequest",
    "TextConfig",
    "TextFormat",
    "parse_responses_request",
]
