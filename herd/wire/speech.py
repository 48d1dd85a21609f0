"""The text-to-speech request body: ``POST /v1/audio/speech`` (OpenAI's shape, JSON).

Fields: ``model``, ``input`` (1 to ``FLEET_MAX_SPEECH_CHARS`` characters, 4096 by
default: OpenAI's limit), ``voice`` (a name, or OpenAI's custom-voice object
``{"id": ...}``, whose id is taken as the name; which names exist is the engine's to
say), ``response_format`` (mp3, the default, opus, aac, flac, wav, pcm), ``speed``
(0.25 to 4.0, default 1.0), ``instructions`` (accepted, bounded like ``input``, and
ignored: no local engine can steer its delivery from a prompt; OpenAI ignores it for
``tts-1`` too), ``stream_format`` (only ``audio``: the file; ``sse`` is a 400), ``user``,
and herd's ``metadata.tags`` and ``fallback_models``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, field_validator

from herd.wire.common import HerdFields, JSONInput, ModelName, bare, validate
from herd.wire.limits import Limits, limits_of

SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MIN_SPEED, MAX_SPEED = 0.25, 4.0
MAX_VOICE_CHARS = 100


def _check_text(value: str, name: str, limit: int) -> str:
    if len(value) > limit:
        raise bare(f"{name} is {len(value)} characters; at most {limit} (FLEET_MAX_SPEECH_CHARS)")
    return value


class SpeechRequest(HerdFields):
    """``POST /v1/audio/speech``."""

    model: ModelName
    input: str
    voice: str | dict[str, Any]
    instructions: str | None = None
    response_format: str | None = None
    speed: float | None = None
    stream_format: str | None = None
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _input(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise bare("input must not be empty")
        return _check_text(value, "input", limits_of(info).speech_chars)

    @field_validator("instructions")
    @classmethod
    def _instructions(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        return _check_text(value, "instructions", limits_of(info).speech_chars)

    @field_validator("voice")
    @classmethod
    def _voice(cls, value: str | dict[str, Any]) -> str:
        if isinstance(value, dict):
            voice_id = value.get("id")
            if not isinstance(voice_id, str):
                raise bare("voice must be a voice name or an object with a string 'id'")
            value = voice_id
        name = value.strip()
        if not name:
            raise bare("voice must not be empty")
        if len(name) > MAX_VOICE_CHARS or not name.isprintable():
            raise bare(f"voice must be a printable name of at most {MAX_VOICE_CHARS} characters")
        return name

    @field_validator("response_format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value is not None and value not in SPEECH_FORMATS:
            raise bare(
                f"response_format '{value}' is not supported: use " + ", ".join(SPEECH_FORMATS)
            )
        return value

    @field_validator("speed")
    @classmethod
    def _speed(cls, value: float | None) -> float | None:
        if value is not None and not MIN_SPEED <= value <= MAX_SPEED:
            raise bare(f"speed must be between {MIN_SPEED} and {MAX_SPEED} (got {value:g})")
        return value

    @field_validator("stream_format")
    @classmethod
    def _stream_format(cls, value: str | None) -> str | None:
        if value not in (None, "audio"):
            raise bare("stream_format must be 'audio': speech comes back as one audio file")
        return value

    @property
    def voice_name(self) -> str:
        return str(self.voice)

    @property
    def format(self) -> str:
        return self.response_format or "mp3"


def parse_speech_request(raw: JSONInput, limits: Limits | None = None) -> SpeechRequest:
    """Body of ``/v1/audio/speech`` -> :class:`SpeechRequest`, or BadRequest."""
    return validate(SpeechRequest, raw, limits)
