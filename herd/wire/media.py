"""Image-generation and speech-to-text request bodies, in both herd's and OpenAI's form.

* ``POST /v1/images/generations`` (OpenAI, JSON): :class:`ImageGenerationRequest`.
* ``POST /api/generate-image`` (herd, JSON in, PNG out): :class:`GenerateImageRequest`.
* ``POST /v1/audio/transcriptions`` (OpenAI) and ``POST /api/transcribe`` (herd), both
  ``multipart/form-data``: :func:`parse_transcription_form` over the form's text fields
  plus the uploaded file.

Values a local engine cannot honour are rejected with a 400 here: ``n`` outside
1..``FLEET_MAX_IMAGES``, a size that is not ``auto`` or ``WIDTHxHEIGHT`` (64..4096 px,
multiples of 8, at most ``FLEET_MAX_IMAGE_PIXELS`` in all), ``steps`` outside
1..``FLEET_MAX_IMAGE_STEPS``, an ``output_format`` other than png, ``stream``,
``diarized_json``, word timestamps, an empty audio file. The audio's length is measured
by decoding it (:mod:`herd.wire.audio`). herd extensions on the OpenAI image body:
``steps``, ``seed``, ``negative_prompt`` (what the local engines take), ``metadata.tags``
and ``fallback_models``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from herd.errors import BadRequest
from herd.wire.common import (
    HerdFields,
    Int64,
    JSONInput,
    ModelName,
    bare,
    render_error,
    validate,
)
from herd.wire.limits import Limits, limits_of, model_name_problem

MIN_SIDE = 64
MAX_SIDE = 4096
SIDE_STEP = 8
DEFAULT_SIDE = 1024

SIZE_HELP = (
    f"size must be 'auto' or WIDTHxHEIGHT such as '1024x1024' "
    f"({MIN_SIDE} to {MAX_SIDE} pixels, multiples of {SIDE_STEP})"
)


def check_side(value: int, name: str) -> int:
    if not MIN_SIDE <= value <= MAX_SIDE or value % SIDE_STEP:
        raise bare(
            f"{name} must be between {MIN_SIDE} and {MAX_SIDE} and a multiple of {SIDE_STEP}"
        )
    return value


def parse_size(size: str | None) -> tuple[int, int]:
    """``"1024x768"`` -> ``(1024, 768)``; ``None`` / ``"auto"`` -> 1024x1024 (OpenAI's
    default). Raises ``PydanticCustomError`` (inside validators) for anything else."""
    if size is None or size == "auto":
        return DEFAULT_SIDE, DEFAULT_SIDE
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size.strip().lower())
    if match is None:
        raise bare(SIZE_HELP)
    width, height = int(match[1]), int(match[2])
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE or side % SIDE_STEP:
            raise bare(SIZE_HELP)
    return width, height


def check_pixels(width: int, height: int, limits: Limits) -> None:
    """One image's width x height: at most ``FLEET_MAX_IMAGE_PIXELS``."""
    if width * height > limits.image_pixels:
        raise bare(
            f"{width}x{height} is {width * height} pixels; at most {limits.image_pixels} "
            "per image (FLEET_MAX_IMAGE_PIXELS)"
        )


def _check_steps(value: int | None, limits: Limits) -> int | None:
    if value is not None and not 1 <= value <= limits.image_steps:
        raise bare(f"steps must be between 1 and {limits.image_steps} (FLEET_MAX_IMAGE_STEPS)")
    return value


def _check_prompt(value: str) -> str:
    if not value.strip():
        raise bare("prompt must not be empty")
    return value


class _ImageCommon(HerdFields):
    prompt: str
    steps: int | None = None
    seed: Int64 | None = None
    negative_prompt: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return _check_prompt(value)

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: int | None, info: ValidationInfo) -> int | None:
        return _check_steps(value, limits_of(info))


class ImageGenerationRequest(_ImageCommon):
    """``POST /v1/images/generations``. ``model`` may be left out: the fleet's first
    image model serves (OpenAI picks its own default model too)."""

    model: str | None = None
    n: int | None = None
    size: str | None = None
    response_format: str | None = None
    quality: Literal["standard", "hd", "low", "medium", "high", "auto"] | None = None
    style: Literal["vivid", "natural"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    output_format: str | None = None
    output_compression: Int64 | None = None
    moderation: Literal["low", "auto"] | None = None
    user: str | None = None
    stream: bool | None = None
    partial_images: Int64 | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if not value.strip():
            raise bare("model must not be empty")
        problem = model_name_problem(value, limits_of(info))
        if problem is not None:
            raise bare(problem)
        return value

    @field_validator("n")
    @classmethod
    def _n(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit = limits_of(info).images
        if value is not None and not 1 <= value <= limit:
            raise bare(f"n must be between 1 and {limit} (FLEET_MAX_IMAGES)")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        parse_size(value)
        return value

    @model_validator(mode="after")
    def _pixels(self, info: ValidationInfo) -> ImageGenerationRequest:
        check_pixels(*self.dimensions, limits_of(info))  # the default size counts too
        return self

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: str | None) -> str | None:
        if value is not None and value not in ("b64_json", "url"):
            raise bare("Invalid value for 'response_format': expected 'b64_json' or 'url'")
        return value

    @field_validator("output_format")
    @classmethod
    def _output_format(cls, value: str | None) -> str | None:
        if value is not None and value != "png":
            raise bare(f"output_format '{value}' is not supported: images are png")
        return value

    @field_validator("output_compression")
    @classmethod
    def _compression(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 100:
            raise bare("output_compression must be between 0 and 100")
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: bool | None) -> bool | None:
        if value:
            raise bare("streaming image generation is not supported")
        return value

    @property
    def dimensions(self) -> tuple[int, int]:
        return parse_size(self.size)

    @property
    def count(self) -> int:
        return self.n or 1


class GenerateImageRequest(_ImageCommon):
    """``POST /api/generate-image`` (the seed's endpoint): JSON in, PNG out."""

    model: ModelName
    width: int = DEFAULT_SIDE
    height: int = DEFAULT_SIDE

    @field_validator("width")
    @classmethod
    def _width(cls, value: int) -> int:
        return check_side(value, "width")

    @field_validator("height")
    @classmethod
    def _height(cls, value: int) -> int:
        return check_side(value, "height")

    @model_validator(mode="after")
    def _pixels(self, info: ValidationInfo) -> GenerateImageRequest:
        check_pixels(self.width, self.height, limits_of(info))
        return self


def parse_image_generation_request(
    raw: JSONInput, limits: Limits | None = None
) -> ImageGenerationRequest:
    """Body of ``/v1/images/generations`` -> :class:`ImageGenerationRequest`, or BadRequest."""
    return validate(ImageGenerationRequest, raw, limits)


def parse_generate_image_request(
    raw: JSONInput, limits: Limits | None = None
) -> GenerateImageRequest:
    """Body of ``/api/generate-image`` -> :class:`GenerateImageRequest`, or BadRequest."""
    return validate(GenerateImageRequest, raw, limits)


# --- transcription (multipart form) ------------------------------------------------

TranscriptFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
TRANSCRIPT_FORMATS: tuple[str, ...] = ("json", "text", "srt", "verbose_json", "vtt")

_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")
_TAG_FIELDS = ("metadata[tags][]", "metadata[tags]", "tags[]", "tags")
_FALLBACK_FIELDS = ("fallback_models[]", "fallback_models")


@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    """One validated transcription form (``/v1/audio/transcriptions``, ``/api/transcribe``)."""

    model: str
    audio: bytes
    filename: str
    language: str | None = None
    prompt: str | None = None
    response_format: TranscriptFormat = "json"
    temperature: float | None = None
    user: str | None = None
    tags: tuple[str, ...] = ()
    fallback_models: tuple[str, ...] = ()


class _TranscriptionFields(HerdFields):
    """The text fields of the form (types as form strings; pydantic lax mode converts)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=False)

    model: ModelName
    language: str | None = None
    prompt: str | None = None
    response_format: str | None = None
    temperature: float | None = None
    stream: bool | None = None
    user: str | None = None
    timestamp_granularities: list[str] | None = None

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().lower()
        if not _LANGUAGE.fullmatch(value):
            raise bare("language must be an ISO-639-1 code such as 'en'")
        return value

    @field_validator("response_format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value is not None and value not in TRANSCRIPT_FORMATS:
            raise bare(
                f"response_format '{value}' is not supported: use " + ", ".join(TRANSCRIPT_FORMATS)
            )
        return value

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 1:
            raise bare("temperature must be between 0 and 1")
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: bool | None) -> bool | None:
        if value:
            raise bare("streaming transcription is not supported")
        return value

    @field_validator("timestamp_granularities")
    @classmethod
    def _granularities(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            if item == "word":
                raise bare("word timestamps are not supported: use 'segment'")
            if item != "segment":
                raise bare("timestamp_granularities must be 'segment'")
        return value


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_transcription_form(
    fields: Mapping[str, Sequence[str]],
    audio: bytes | None,
    filename: str | None,
    limits: Limits | None = None,
) -> TranscriptionRequest:
    """The text fields of a multipart form (each name -> its values, in order) and the
    ``file`` upload -> :class:`TranscriptionRequest`, or :class:`BadRequest`.

    Array fields may come as ``name[]`` (openai-python) or repeated ``name``; tags may
    also come as ``metadata[tags][]`` (openai-python's ``extra_body``) or ``tags``, and
    each value may be comma separated.
    """
    data: dict[str, Any] = {}
    for name, values in fields.items():
        if not values or name in _TAG_FIELDS or name in _FALLBACK_FIELDS:
            continue
        key = name[:-2] if name.endswith("[]") else name
        if key == "timestamp_granularities":
            data[key] = list(values)
        else:
            data[key] = values[-1]
    tags = _split([v for name in _TAG_FIELDS for v in fields.get(name, ())])
    fallbacks = _split([v for name in _FALLBACK_FIELDS for v in fields.get(name, ())])
    if tags:
        data["metadata"] = {"tags": tags}  # bounded like a JSON body's (HerdFields)
    if fallbacks:
        data["fallback_models"] = fallbacks
    try:
        parsed = _TranscriptionFields.model_validate(data, context=limits)
    except ValidationError as exc:
        raise BadRequest(render_error(exc)) from None
    if audio is None:
        raise BadRequest("file is required: send the audio as the multipart field 'file'")
    if not audio:
        raise BadRequest("the audio file is empty")
    return TranscriptionRequest(
        model=parsed.model,
        audio=bytes(audio),
        filename=filename or "audio",
        language=parsed.language,
        prompt=parsed.prompt or None,
        response_format=parsed.response_format or "json",  # type: ignore[arg-type]
        temperature=parsed.temperature,
        user=parsed.user or None,
        tags=tuple(tags),
        fallback_models=tuple(fallbacks),
    )
