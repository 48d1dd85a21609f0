"""Image and speech-to-text requests -> :class:`InferenceRequest`, and node results ->
each endpoint's response body.

A node answers an ``image`` request with ``{"model", "image": <png bytes>, "width",
"height", "seed", "steps", "total_duration", "load_duration"}`` and a ``transcribe``
request with ``{"model", "text", "language", "duration", "segments", "total_duration",
"load_duration"}`` (durations in nanoseconds, as Ollama reports them; ``duration`` is
the audio's length in seconds). The functions here turn those into OpenAI's image and
transcription bodies (json, text, srt, verbose_json, vtt) and herd's own bodies.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from herd.convert.routing import fallback_chain, request_tags
from herd.domain import Dialect, InferenceRequest
from herd.wire.limits import Limits
from herd.wire.media import (
    GenerateImageRequest,
    ImageGenerationRequest,
    TranscriptionRequest,
)

# ISO-639-1 -> the language names OpenAI's verbose_json uses (the common ones).
LANGUAGE_NAMES = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "fi": "finnish",
    "pl": "polish",
    "cs": "czech",
    "ru": "russian",
    "uk": "ukrainian",
    "tr": "turkish",
    "el": "greek",
    "ar": "arabic",
    "he": "hebrew",
    "hi": "hindi",
    "zh": "chinese",
    "ja": "japanese",
    "ko": "korean",
    "vi": "vietnamese",
    "th": "thai",
    "id": "indonesian",
}


def image_request(
    req: ImageGenerationRequest | GenerateImageRequest,
    *,
    model: str,
    dialect: Dialect,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
    index: int = 0,
) -> InferenceRequest:
    """One image job. ``index`` numbers the images of one OpenAI ``n>1`` request: each
    gets its own request id and, when a seed was given, seed + index."""
    if isinstance(req, ImageGenerationRequest):
        width, height = req.dimensions
        client = req.user or client
    else:
        width, height = req.width, req.height
    body: dict[str, Any] = {"prompt": req.prompt, "width": width, "height": height}
    if req.steps is not None:
        body["steps"] = req.steps
    if req.seed is not None:
        body["seed"] = req.seed + index
    if req.negative_prompt:
        body["negative_prompt"] = req.negative_prompt
    return InferenceRequest(
        request_id=request_id if index == 0 else f"{request_id}-{index}",
        kind="image",
        model=model,
        body=body,
        stream=False,
        dialect=dialect,
        fallback_models=fallback_chain(model, req.fallback_models),
        tags=request_tags(req.body_tags, header_tags, limits),
        client=client,
        received_at=received_at,
    )


def transcribe_request(
    req: TranscriptionRequest,
    *,
    dialect: Dialect,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """One speech-to-text job; the audio bytes travel in ``body["audio"]``."""
    body: dict[str, Any] = {"audio": req.audio, "filename": req.filename}
    if req.language:
        body["language"] = req.language
    if req.prompt:
        body["prompt"] = req.prompt
    return InferenceRequest(
        request_id=request_id,
        kind="transcribe",
        model=req.model,
        body=body,
        stream=False,
        dialect=dialect,
        fallback_models=fallback_chain(req.model, req.fallback_models),
        tags=request_tags(req.tags, header_tags, limits),
        client=req.user or client,
        received_at=received_at,
    )


# --- images --------------------------------------------------------------------------


def openai_images_body(
    results: Iterable[Mapping[str, Any]], *, created: int, response_format: str | None
) -> dict[str, Any]:
    """``/v1/images/generations`` body. ``b64_json`` is the default (as for gpt-image);
    ``url`` gives a ``data:image/png;base64,...`` URL, since herd keeps no image files."""
    data = []
    for result in results:
        b64 = base64.b64encode(bytes(result["image"])).decode("ascii")
        if response_format == "url":
            data.append({"url": f"data:image/png;base64,{b64}", "revised_prompt": None})
        else:
            data.append({"b64_json": b64, "revised_prompt": None})
    return {"created": created, "data": data, "output_format": "png"}


def image_headers(result: Mapping[str, Any]) -> dict[str, str]:
    """What ``/api/generate-image`` says about its PNG besides the routing headers."""
    return {
        "X-Herd-Image-Width": str(result.get("width", "")),
        "X-Herd-Image-Height": str(result.get("height", "")),
        "X-Herd-Image-Seed": str(result.get("seed", "")),
        "X-Herd-Image-Steps": str(result.get("steps", "")),
    }


# --- transcripts ---------------------------------------------------------------------


def transcript_segments(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The result's segments as ``{"id", "start", "end", "text"}``; one segment over the
    whole audio when the engine gave none but there is text."""
    segments = []
    for index, seg in enumerate(result.get("segments") or ()):
        segments.append(
            {
                "id": int(seg.get("id", index)),
                "start": float(seg.get("start") or 0.0),
                "end": float(seg.get("end") or 0.0),
                "text": str(seg.get("text") or ""),
            }
        )
    text = str(result.get("text") or "")
    if not segments and text.strip():
        end = float(result.get("duration") or 0.0)
        segments.append({"id": 0, "start": 0.0, "end": end, "text": text})
    return segments


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: Sequence[Mapping[str, Any]]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, blank line between."""
    cues = []
    for number, seg in enumerate(segments, start=1):
        span = f"{_clock(seg['start'], ',')} --> {_clock(seg['end'], ',')}"
        cues.append(f"{number}\n{span}\n{str(seg['text']).strip()}\n")
    return "\n".join(cues)


def vtt(segments: Sequence[Mapping[str, Any]]) -> str:
    """WebVTT: the ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
    cues = ["WEBVTT\n"]
    for seg in segments:
        span = f"{_clock(seg['start'], '.')} --> {_clock(seg['end'], '.')}"
        cues.append(f"{span}\n{str(seg['text']).strip()}\n")
    return "\n".join(cues)


def language_name(code: str) -> str:
    """``"en"`` -> ``"english"`` (OpenAI's verbose_json wording); unknown codes unchanged."""
    return LANGUAGE_NAMES.get(code.lower(), code.lower()) if code else ""


def openai_transcription(result: Mapping[str, Any], response_format: str) -> tuple[Any, str]:
    """(body, media type) for ``/v1/audio/transcriptions``: a JSON object for ``json`` /
    ``verbose_json``, plain text for ``text``, ``srt`` and ``vtt`` (openai-python returns
    those as a str)."""
    text = str(result.get("text") or "").strip()
    duration = float(result.get("duration") or 0.0)
    usage = {"type": "duration", "seconds": round(duration, 3)}
    if response_format == "text":
        return text + "\n", "text/plain; charset=utf-8"
    if response_format == "srt":
        return srt(transcript_segments(result)), "text/plain; charset=utf-8"
    if response_format == "vtt":
        return vtt(transcript_segments(result)), "text/vtt; charset=utf-8"
    if response_format == "verbose_json":
        segments = [
            {
                **seg,
                "seek": 0,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
            }
            for seg in transcript_segments(result)
        ]
        body = {
            "task": "transcribe",
            "language": language_name(str(result.get("language") or "")),
            "duration": duration,
            "text": text,
            "segments": segments,
            "usage": usage,
        }
        return body, "application/json"
    return {"text": text, "usage": usage}, "application/json"


def herd_transcription(result: Mapping[str, Any], model: str) -> dict[str, Any]:
    """``/api/transcribe`` body: the text, its language, the audio's length, segments,
    and Ollama-style timings (nanoseconds)."""
    body: dict[str, Any] = {
        "model": model,
        "text": str(result.get("text") or "").strip(),
        "language": str(result.get("language") or ""),
        "duration": float(result.get("duration") or 0.0),
        "segments": transcript_segments(result),
    }
    for key in ("total_duration", "load_duration"):
        if result.get(key):
            body[key] = int(result[key])
    return body
