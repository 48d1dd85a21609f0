"""OpenAI chat messages: content parts, image data URIs, assistant tool calls.

``http(s)`` image URLs are refused with Ollama's own message; only the data URI forms
Ollama accepts (``data:image/<png|jpeg|jpg|webp>;base64,`` and ``data:;base64,``) pass,
and their base64 must decode.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from herd.wire.common import WireModel, bare, check_base64, field_error
from herd.wire.ollama import tool_arguments

IMAGE_URL_UNSUPPORTED = (
    "image URLs are not currently supported, please use base64 encoded data instead"
)
_IMAGE_PREFIXES = (
    "data:image/png;base64,",
    "data:image/jpeg;base64,",
    "data:image/jpg;base64,",
    "data:image/webp;base64,",
    "data:;base64,",
)


def image_data(url: str) -> str:
    """The base64 payload of an image data URI (Ollama's accepted forms), else 400."""
    if url.startswith(("http://", "https://")):
        raise bare(IMAGE_URL_UNSUPPORTED)
    head = url[:32].lower()
    for prefix in _IMAGE_PREFIXES:
        if head.startswith(prefix):
            data = url[len(prefix) :]
            break
    else:
        raise bare("invalid image input")
    if not data or not check_base64(data):
        raise bare("invalid image input")
    return data


# -- message content ------------------------------------------------------------------


class TextPart(WireModel):
    type: Literal["text"]
    text: str


class RefusalPart(WireModel):
    type: Literal["refusal"]
    refusal: str


class ImageURL(WireModel):
    url: str
    detail: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        image_data(value)
        return value

    @property
    def data(self) -> str:
        """The validated base64 payload (everything after the first comma)."""
        return self.url.partition(",")[2]


class ImagePart(WireModel):
    type: Literal["image_url"]
    image_url: ImageURL

    @field_validator("image_url", mode="before")
    @classmethod
    def _bare_string(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value


class InputAudio(WireModel):
    data: str
    format: str | None = None

    @field_validator("data")
    @classmethod
    def _data(cls, value: str) -> str:
        if not value or not check_base64(value):
            raise bare("invalid input_audio data: expected base64")
        return value


class AudioPart(WireModel):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[TextPart | RefusalPart | ImagePart | AudioPart, Field(discriminator="type")]


class FunctionCall(WireModel):
    name: str
    arguments: dict[str, Any]

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments(cls, value: Any) -> Any:
        return tool_arguments(value)


class ToolCall(WireModel):
    id: str | None = None
    type: str | None = "function"
    function: FunctionCall


class ChatMessage(WireModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("content", mode="before")
    @classmethod
    def _content_kind(cls, value: Any) -> Any:
        if value is None or isinstance(value, str | list):
            return value
        raise field_error("must be a string or an array of content parts")

    @model_validator(mode="after")
    def _content_or_calls(self) -> ChatMessage:
        if self.content is None and not self.tool_calls:
            raise field_error(
                "content must be a string or an array of parts (null only with tool_calls)"
            )
        return self
