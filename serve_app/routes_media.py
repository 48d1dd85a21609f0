"""Image generation and speech-to-text, in OpenAI's form and herd's (the seed's):

* ``POST /v1/images/generations``: JSON in, ``{"created", "data": [{"b64_json"}]}`` out
  (``response_format: "url"`` gives ``data:`` URLs); ``n`` images are ``n`` routed jobs.
* ``POST /api/generate-image``: JSON in (``model``, ``prompt``, ``width``, ``height``,
  optional ``steps``, ``seed``, ``negative_prompt``), ``image/png`` out.
* ``POST /v1/audio/transcriptions``: multipart (``file``, ``model``, ``language``,
  ``prompt``, ``response_format`` json / text / srt / verbose_json / vtt).
* ``POST /api/transcribe``: multipart ``file`` + ``model`` (+ ``language``, ``prompt``),
  JSON out (text, language, duration, segments).
* ``POST /v1/audio/speech``: JSON in (``herd.wire.speech``), the audio file out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from herd.convert.headers import header_value
from herd.convert.media import (
    herd_transcription,
    image_headers,
    image_request,
    openai_images_body,
    openai_transcription,
    transcribe_request,
)
from herd.convert.speech import speech_headers, speech_request
from herd.errors import ModelNotFound
from herd.routing import model_targets as model_ops
from herd.wire.audio import audio_seconds
from herd.wire.limits import Limits
from herd.wire.media import (
    TranscriptionRequest,
    parse_generate_image_request,
    parse_image_generation_request,
    parse_transcription_form,
)
from herd.wire.speech import parse_speech_request
from serve_app.service import HerdService, herd_headers, json_response


def add_media_routes(app: FastAPI, svc: HerdService) -> None:
    limits = Limits.from_settings(svc.settings)  # FLEET_MAX_IMAGE*, FLEET_MAX_AUDIO_SECONDS

    def meta(request: Request) -> dict[str, Any]:
        return {**svc.request_meta(request), "limits": limits}

    async def image_model(requested: str | None) -> str:
        if requested:
            return requested
        found = model_ops.default_model(await svc.catalog(), "image")
        if found is None:
            raise ModelNotFound("no node in the fleet has an image generation model")
        return found

    @app.post("/v1/images/generations")
    async def images_generations(request: Request) -> Response:
        parsed = parse_image_generation_request(await svc.read_body(request), limits)
        base = meta(request)
        model = await image_model(parsed.model)
        jobs = [
            image_request(parsed, model=model, dialect="openai", index=i, **base)
            for i in range(parsed.count)
        ]
        done = await svc.media.run_all(jobs)
        body = openai_images_body(
            [d.result for d in done],
            created=int(time.time()),
            response_format=parsed.response_format,
        )
        headers = herd_headers(done[0].decision, sum(d.retries for d in done))
        if len(done) > 1:
            headers["X-Herd-Node"] = header_value(",".join(d.decision.node_id for d in done))
        return json_response(body, headers=headers)

    @app.post("/api/generate-image")
    async def generate_image(request: Request) -> Response:
        parsed = parse_generate_image_request(await svc.read_body(request), limits)
        job = image_request(parsed, model=parsed.model, dialect="ollama", **meta(request))
        done = await svc.media.run(job)
        headers = herd_headers(done.decision, done.retries) | image_headers(done.result)
        return Response(bytes(done.result["image"]), media_type="image/png", headers=headers)

    async def transcription(request: Request) -> TranscriptionRequest:
        """The validated form; the audio's length is measured by decoding it (in a thread,
        stopping at FLEET_MAX_AUDIO_SECONDS: 413 beyond, 400 when it does not decode)."""
        fields, audio, filename = await svc.read_form(request)
        parsed = parse_transcription_form(fields, audio, filename, limits)
        await asyncio.to_thread(audio_seconds, parsed.audio, limits.audio_seconds, parsed.filename)
        return parsed

    @app.post("/v1/audio/transcriptions")
    async def audio_transcriptions(request: Request) -> Response:
        parsed = await transcription(request)
        job = transcribe_request(parsed, dialect="openai", **meta(request))
        done = await svc.media.run(job)
        body, media_type = openai_transcription(done.result, parsed.response_format)
        headers = herd_headers(done.decision, done.retries)
        if isinstance(body, str):
            return Response(body, media_type=media_type, headers=headers)
        return json_response(body, headers=headers)

    @app.post("/v1/audio/speech")
    async def audio_speech(request: Request) -> Response:
        """Text to speech, OpenAI's form. Who: inference callers (an inference key when
        keys are set). Bounds: the body size limit; ``input`` and ``instructions`` at most
        FLEET_MAX_SPEECH_CHARS characters; speed 0.25-4.0; one synthesis on one node,
        bounded there by FLEET_NODE_TTS_TIMEOUT. Out: the audio file with OpenAI's
        Content-Type (audio/mpeg, audio/opus, audio/aac, audio/flac, audio/wav,
        audio/pcm: 24 kHz 16-bit mono samples)."""
        parsed = parse_speech_request(await svc.read_body(request), limits)
        done = await svc.media.run(speech_request(parsed, dialect="openai", **meta(request)))
        headers = herd_headers(done.decision, done.retries) | speech_headers(done.result)
        audio, media_type = bytes(done.result["audio"]), str(done.result["media_type"])
        return Response(audio, media_type=media_type, headers=headers)

    @app.post("/api/transcribe")
    async def transcribe(request: Request) -> Response:
        parsed = await transcription(request)
        job = transcribe_request(parsed, dialect="ollama", **meta(request))
        done = await svc.media.run(job)
        body = herd_transcription(done.result, done.decision.model)
        return json_response(body, headers=herd_headers(done.decision, done.retries))
