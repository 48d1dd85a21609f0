"""A text-to-speech request -> :class:`InferenceRequest` (kind ``speech``).

The node answers it with ``{"model", "audio": <file bytes>, "format", "media_type",
"sample_rate", "duration", "voice", "total_duration", "load_duration"}`` (see
``herd.node.media``); the route sends the bytes as they are, with their Content-Type.

OpenAI's model names (``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts``) are served by herd's
packaged Piper voice; :data:`ALWAYS_THERE` (espeak-ng, on every node with the Debian
package) is their last fallback, so a fleet without Piper still answers them.
"""

from __future__ import annotations

from typing import Any

from herd.backends.tts_common import OPENAI_TTS_MODELS
from herd.convert.headers import header_value
from herd.convert.routing import fallback_chain, request_tags
from herd.domain import Dialect, InferenceRequest, canonical_model
from herd.wire.limits import Limits
from herd.wire.speech import SpeechRequest

_OPENAI_NAMES = frozenset(canonical_model(m) for m in OPENAI_TTS_MODELS)
ALWAYS_THERE = "espeak-ng"


def speech_fallbacks(model: str, fallbacks: list[str] | None) -> tuple[str, ...]:
    """The client's fallbacks, then espeak-ng for OpenAI's model names."""
    chain = list(fallbacks or ())
    if canonical_model(model) in _OPENAI_NAMES:
        chain.append(ALWAYS_THERE)
    return fallback_chain(model, chain)


def speech_headers(result: dict[str, Any]) -> dict[str, str]:
    """What the response says about its audio besides the routing headers."""
    return {
        "X-Herd-Voice": header_value(str(result.get("voice", ""))),
        "X-Herd-Audio-Seconds": str(result.get("duration", "")),
        "X-Herd-Sample-Rate": str(result.get("sample_rate", "")),
    }


def speech_request(
    req: SpeechRequest,
    *,
    dialect: Dialect,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """One synthesis job (``instructions`` is dropped: see :mod:`herd.wire.speech`)."""
    body: dict[str, Any] = {
        "input": req.input,
        "voice": req.voice_name,
        "speed": req.speed if req.speed is not None else 1.0,
        "response_format": req.format,
    }
    return InferenceRequest(
        request_id=request_id,
        kind="speech",
        model=req.model,
        body=body,
        stream=False,
        dialect=dialect,
        fallback_models=speech_fallbacks(req.model, req.fallback_models),
        tags=request_tags(req.body_tags, header_tags, limits),
        client=req.user or client,
        received_at=received_at,
    )
