"""A node's media engines (embeddings, images, speech-to-text, text-to-speech) as the
NodeAgent uses them.

:class:`NodeMedia` wraps the :class:`~herd.backends.media.MediaEngines` found on the
device: their models go into the heartbeat (with their category), and requests for
them run here instead of on the LLM backend. Results come back as plain dicts in the
Ollama style (durations in nanoseconds) so they cross Ray like any other answer:

* ``embed`` -> ``{"model", "embeddings", "total_duration", "load_duration",
  "prompt_eval_count"}``; legacy ``embeddings`` -> ``{"embedding": [...]}``;
* ``image`` -> ``{"model", "created_at", "image": <png bytes>, "width", "height",
  "seed", "steps", "total_duration", "load_duration"}``;
* ``transcribe`` -> ``{"model", "created_at", "text", "language", "duration",
  "segments", "total_duration", "load_duration"}``;
* ``speech`` -> ``{"model", "created_at", "audio": <file bytes>, "format", "media_type",
  "sample_rate", "duration", "voice", "total_duration", "load_duration"}``.

Image requests for a model no engine here serves go to an Ollama backend that lists it
as an image model (Ollama's native image generation); anything else is a 400.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from herd.backends.base import Backend
from herd.backends.media import ImageResult, MediaEngine, MediaEngines
from herd.convert.ollama_show import show_body
from herd.domain import LoadedModel, ModelOnDisk, RequestKind, canonical_model
from herd.errors import BadRequest

MEDIA_KINDS: frozenset[str] = frozenset({"image", "transcribe", "speech"})
EMBED_KINDS: frozenset[str] = frozenset({"embed", "embeddings"})

_KIND_WORDS = {
    "chat": "chat",
    "generate": "generate",
    "embed": "embeddings",
    "embeddings": "embeddings",
    "image": "image generation",
    "transcribe": "speech-to-text",
    "speech": "text-to-speech",
}


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unsupported(model: str, kind: str) -> BadRequest:
    """Ollama's wording for a model asked to do what it cannot: ``"m" does not support x``."""
    return BadRequest(f'"{model}" does not support {_KIND_WORDS.get(kind, kind)}')


class NodeMedia:
    def __init__(self, engines: MediaEngines | None = None) -> None:
        self.engines = engines or MediaEngines()
        # Engines list their models once, at detection: index them for the request path.
        self._index: dict[str, tuple[str, MediaEngine]] = {}
        for category, group in (
            ("embedding", self.engines.embedding),
            ("image", self.engines.image),
            ("asr", self.engines.asr),
            ("tts", self.engines.tts),
        ):
            for engine in group:
                for m in engine.models():
                    self._index.setdefault(canonical_model(m.name), (category, engine))

    # --- what this node offers ----------------------------------------------------------
    def models(self) -> tuple[ModelOnDisk, ...]:
        """Every media model name (aliases included), each with its category."""
        categories = self.engines.categories()
        return tuple(
            replace(m, category=categories.get(m.name, m.category)) for m in self.engines.models()
        )

    def loaded(self) -> tuple[LoadedModel, ...]:
        return self.engines.loaded()

    def kinds(self) -> tuple[str, ...]:
        return self.engines.kinds()

    def engine_for(self, model: str) -> tuple[str, MediaEngine] | None:
        """(category, engine) of the engine serving ``model`` here, if any."""
        if not self._index:
            return None
        return self._index.get(canonical_model(model))

    def handles(self, kind: RequestKind, model: str) -> bool:
        """Does this request run here rather than on the LLM backend?"""
        if kind in MEDIA_KINDS:
            return True
        if kind in EMBED_KINDS:
            found = self.engine_for(model)
            return found is not None and found[0] == "embedding"
        return False

    def refuse_mismatch(self, kind: RequestKind, model: str) -> None:
        """A media model asked for what it cannot do (chat or generate on any of them,
        embeddings on an image or speech-to-text model): 400 before anything is sent."""
        found = self.engine_for(model)
        if found is None:
            return
        if kind in ("chat", "generate") or (kind in EMBED_KINDS and found[0] != "embedding"):
            raise unsupported(model, kind)

    def show(self, model: str) -> dict[str, Any] | None:
        """An ``/api/show`` body for a media model, or None when no engine serves it."""
        found = self.engine_for(model)
        if found is None:
            return None
        key = canonical_model(model)
        entry = next(m for m in self.models() if canonical_model(m.name) == key)
        return show_body(entry, engine=found[1].kind)

    # --- running requests -------------------------------------------------------------
    async def run(
        self, kind: RequestKind, model: str, body: Mapping[str, Any], backend: Backend | None
    ) -> dict[str, Any]:
        if kind in EMBED_KINDS:
            return await self._embed(kind, model, body)
        if kind == "image":
            return await self._image(model, body, backend)
        if kind == "transcribe":
            return await self._transcribe(model, body)
        if kind == "speech":
            return await self._speech(model, body)
        raise unsupported(model, kind)

    async def _embed(
        self, kind: RequestKind, model: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        engine = self.engines.embedding_for(model)
        if engine is None:
            raise unsupported(model, kind)
        if kind == "embeddings":
            prompt = body.get("prompt") or ""
            if not prompt:
                return {"embedding": []}
            single = await engine.embed(model, [str(prompt)])
            return {"embedding": single.embeddings[0] if single.embeddings else []}
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else list(raw or ())
        if not inputs:  # Ollama: an empty input only loads the model
            return {"model": model, "embeddings": []}
        result = await engine.embed(
            model,
            [str(text) for text in inputs],
            truncate=body.get("truncate") is not False,
            dimensions=body.get("dimensions"),
        )
        return {
            "model": model,
            "embeddings": result.embeddings,
            "total_duration": _ns(result.total_s),
            "load_duration": _ns(result.load_s),
            "prompt_eval_count": result.prompt_tokens,
        }

    async def _image(
        self, model: str, body: Mapping[str, Any], backend: Backend | None
    ) -> dict[str, Any]:
        width, height = int(body["width"]), int(body["height"])
        steps, seed = body.get("steps"), body.get("seed")
        params: dict[str, Any] = {
            "width": width,
            "height": height,
            "steps": steps,
            "seed": seed,
            "negative_prompt": body.get("negative_prompt"),
        }
        engine = self.engines.image_for(model)
        if engine is not None:
            result = await engine.generate(model, str(body["prompt"]), **params)
            return {**_image_body(model, result), "load_duration": _ns(result.load_s)}
        generate_image = getattr(backend, "generate_image", None)
        if generate_image is None or not await _backend_has_image_model(backend, model):
            raise unsupported(model, "image")
        started = time.perf_counter()
        png = await generate_image(model, str(body["prompt"]), **params)
        made = ImageResult(
            png=png,
            width=width,
            height=height,
            seed=seed if seed is not None else -1,
            steps=steps or 0,
            total_s=time.perf_counter() - started,
            load_s=0.0,
        )
        return _image_body(model, made)

    async def _transcribe(self, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
        engine = self.engines.asr_for(model)
        if engine is None:
            raise unsupported(model, "transcribe")
        result = await engine.transcribe(
            model,
            bytes(body["audio"]),
            filename=str(body.get("filename") or "audio"),
            language=body.get("language"),
            prompt=body.get("prompt"),
        )
        return {
            "model": model,
            "created_at": _now(),
            "text": result.text,
            "language": result.language,
            "duration": result.duration_s,
            "segments": list(result.segments),
            "total_duration": _ns(result.total_s),
            "load_duration": _ns(result.load_s),
        }

    async def _speech(self, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
        engine = self.engines.tts_for(model)
        if engine is None:
            raise unsupported(model, "speech")
        result = await engine.synthesize(
            model,
            str(body.get("input") or ""),
            voice=str(body.get("voice") or ""),
            speed=body.get("speed", 1.0),
            response_format=str(body.get("response_format") or "mp3"),
        )
        return {
            "model": model,
            "created_at": _now(),
            "audio": result.audio,
            "format": result.format,
            "media_type": result.media_type,
            "sample_rate": result.sample_rate,
            "duration": result.duration_s,
            "voice": result.voice,
            "total_duration": _ns(result.total_s),
            "load_duration": _ns(result.load_s),
        }

    async def close(self) -> None:
        await self.engines.close()


def _image_body(model: str, result: ImageResult) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": _now(),
        "image": result.png,
        "width": result.width,
        "height": result.height,
        "seed": result.seed,
        "steps": result.steps,
        "total_duration": _ns(result.total_s),
    }


async def _backend_has_image_model(backend: Backend | None, model: str) -> bool:
    if backend is None:
        return False
    state = await backend.probe()
    key = canonical_model(model)
    return any(canonical_model(m.name) == key and m.category == "image" for m in state.models)
