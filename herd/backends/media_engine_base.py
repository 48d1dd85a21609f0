"""Base classes of the node-side media engines: what every engine here does the same way.

:class:`LocalMediaEngine` holds an engine's model entries, the cache of the models it has
loaded and its job timeout, and answers ``models`` / ``loaded`` / ``resolve`` / ``close``.
:class:`LocalImageEngine` and :class:`LocalAsrEngine` add the request checks, the timing
and the result of an image or a transcription job. An engine keeps only its own part: how
an entry is listed (:meth:`~LocalMediaEngine.model_on_disk`) and how a job runs
(:meth:`~LocalImageEngine.render`, :meth:`~LocalAsrEngine.run_transcription`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from herd.backends.media import ImageResult, TranscriptResult
from herd.backends.media_util import (
    ModelStore,
    check_audio,
    check_image_request,
    run_job,
    seed_to_use,
)
from herd.domain import LoadedModel, ModelOnDisk, canonical_model
from herd.errors import ModelNotFound

T = TypeVar("T")


class EngineModel(Protocol):
    """One model entry of an engine: its primary name and every name it answers to."""

    @property
    def name(self) -> str: ...

    @property
    def names(self) -> tuple[str, ...]: ...


M = TypeVar("M", bound=EngineModel)


class LocalMediaEngine(ABC, Generic[M]):
    """An engine over a fixed list of model entries, models loaded once and kept."""

    kind: str
    tool_label = ""  # how "not found on this node's ..." names the engine ("": its kind)

    def __init__(self, models: Sequence[M], *, timeout: float = 600.0) -> None:
        self._models = tuple(models)
        self._timeout = timeout
        self._store: ModelStore[Any] = ModelStore()

    @abstractmethod
    def model_on_disk(self, entry: M, name: str) -> ModelOnDisk:
        """The /api/tags entry of ``entry`` under one of its names."""

    def models(self) -> tuple[ModelOnDisk, ...]:
        return tuple(self.model_on_disk(m, name) for m in self._models for name in m.names)

    def loaded(self) -> tuple[LoadedModel, ...]:
        return self._store.loaded()

    def resolve(self, model: str) -> M:
        key = canonical_model(model)
        for m in self._models:
            if any(canonical_model(n) == key for n in m.names):
                return m
        where = self.tool_label or self.kind
        raise ModelNotFound(f"model '{model}' not found on this node's {where}")

    async def run(self, work: Callable[[], T], *, what: str) -> T:
        """Blocking ``work`` in a thread, bounded by this engine's timeout."""
        return await run_job(work, timeout=self._timeout, what=what)

    async def close(self) -> None:
        self._store.clear()


@dataclass(frozen=True, slots=True)
class ImageJob:
    """An image request that passed the checks, with the seed it runs with."""

    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int | None  # None: the model's default
    seed: int


@dataclass(frozen=True, slots=True)
class Picture:
    """What an image engine made of an :class:`ImageJob`."""

    png: bytes
    width: int
    height: int
    steps: int
    load_s: float = 0.0


class LocalImageEngine(LocalMediaEngine[M]):
    """An :class:`~herd.backends.media.ImageEngine`; subclasses :meth:`render` a job."""

    size_multiple = 8  # width and height must be multiples of this
    seed_modulus = 2**63  # seeds are folded into [0, seed_modulus)

    def max_side(self, entry: M) -> int:
        return 2048

    @abstractmethod
    async def render(self, entry: M, job: ImageJob) -> Picture: ...

    async def generate(
        self,
        model: str,
        prompt: str,
        *,
        width: int,
        height: int,
        steps: int | None,
        seed: int | None,
        negative_prompt: str | None,
    ) -> ImageResult:
        started = time.perf_counter()
        entry = self.resolve(model)
        check_image_request(
            prompt,
            negative_prompt,
            width,
            height,
            steps,
            seed,
            multiple=self.size_multiple,
            max_side=self.max_side(entry),
        )
        job = ImageJob(
            prompt, negative_prompt, width, height, steps, seed_to_use(seed, self.seed_modulus)
        )
        picture = await self.render(entry, job)
        return ImageResult(
            png=picture.png,
            width=picture.width,
            height=picture.height,
            seed=job.seed,
            steps=picture.steps,
            total_s=time.perf_counter() - started,
            load_s=picture.load_s,
            model=entry.name,
        )


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a speech-to-text engine made of one audio file."""

    text: str
    language: str
    duration_s: float
    segments: list[dict[str, object]]
    load_s: float = 0.0


class LocalAsrEngine(LocalMediaEngine[M]):
    """An :class:`~herd.backends.media.AsrEngine`; subclasses run the transcription."""

    @abstractmethod
    async def run_transcription(
        self, entry: M, audio: bytes, *, filename: str, language: str | None, prompt: str | None
    ) -> Transcript: ...

    async def transcribe(
        self,
        model: str,
        audio: bytes,
        *,
        filename: str,
        language: str | None,
        prompt: str | None,
    ) -> TranscriptResult:
        started = time.perf_counter()
        entry = self.resolve(model)
        data = check_audio(audio)
        done = await self.run_transcription(
            entry, data, filename=filename, language=language, prompt=prompt
        )
        return TranscriptResult(
            text=done.text,
            language=done.language,
            duration_s=done.duration_s,
            segments=done.segments,
            total_s=time.perf_counter() - started,
            load_s=done.load_s,
            model=entry.name,
        )
