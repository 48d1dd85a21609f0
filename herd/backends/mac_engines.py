"""The macOS CLI engines (mflux, DiffusionKit, mlx-qwen3-asr) and their detection.

The commands, model names and file handling live in :mod:`herd.backends.mac_cli`.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from herd.backends.mac_cli import (
    ASR_MODELS,
    IMAGE_MODELS,
    LANGUAGE_CODES,
    CliAsrModel,
    CliImageModel,
    MacTool,
    Which,
    asr_argv,
    find_binary,
    image_argv,
    png_size,
    qwen_language,
    read_transcript,
    run_cli,
    safe_filename,
    transcript_segments,
    wav_seconds,
)
from herd.backends.media import ImageResult, TranscriptResult
from herd.backends.media_util import check_image_params, new_seed
from herd.errors import BackendError, BadRequest, ModelNotFound
from herd.models import LoadedModel, ModelOnDisk, canonical_model

if TYPE_CHECKING:
    from herd.settings import Settings


# --------------------------------------------------------------------------- engines


def _read_image(output: Path, tool: str) -> bytes:
    if not output.is_file():
        raise BackendError(f"{tool} wrote no image", retryable=False)
    return output.read_bytes()


def _write_audio(path: Path, audio: bytes, out_dir: Path) -> None:
    path.write_bytes(audio)
    out_dir.mkdir()


def _read_outputs(out_dir: Path, audio: Path, stdout: bytes) -> tuple[dict[str, object], float]:
    return read_transcript(out_dir, audio.stem, stdout), wav_seconds(audio)


class MacImageCliEngine:
    """An :class:`~herd.backends.media.ImageEngine` over mflux or DiffusionKit."""

    def __init__(
        self,
        kind: MacTool,
        models: Sequence[CliImageModel],
        executables: Mapping[str, str],
        *,
        timeout: float = 600.0,
        quantize: int | None = 8,
    ) -> None:
        self.kind: str = kind
        self._models = tuple(m for m in models if m.binary in executables)
        self._executables = dict(executables)
        self._timeout = timeout
        self._quantize = quantize

    def models(self) -> tuple[ModelOnDisk, ...]:
        return tuple(
            ModelOnDisk(name=m.name, family=m.tool, category="image") for m in self._models
        )

    def loaded(self) -> tuple[LoadedModel, ...]:
        return ()

    def resolve(self, model: str) -> CliImageModel:
        key = canonical_model(model)
        for m in self._models:
            if canonical_model(m.name) == key:
                return m
        raise ModelNotFound(f"model '{model}' not found on this node's {self.kind}")

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
        if not isinstance(prompt, str) or not prompt.strip():
            raise BadRequest("prompt must be a non-empty string")
        check_image_params(width, height, steps, multiple=16)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise BadRequest(f"seed must be an integer (got {seed!r})")
        used_seed = new_seed() if seed is None else seed % 2**32
        n_steps = steps if steps is not None else entry.default_steps
        with tempfile.TemporaryDirectory(prefix="herd-image-") as tmp:
            output = Path(tmp) / "image.png"
            argv = image_argv(
                entry,
                self._executables[entry.binary],
                prompt=prompt,
                width=width,
                height=height,
                steps=n_steps,
                seed=used_seed,
                output=output,
                negative_prompt=negative_prompt,
                quantize=self._quantize,
            )
            await run_cli(argv, timeout=self._timeout, cwd=Path(tmp))
            png = await asyncio.to_thread(_read_image, output, entry.binary)
        got_width, got_height = png_size(png)
        return ImageResult(
            png=png,
            width=got_width,
            height=got_height,
            seed=used_seed,
            steps=n_steps,
            total_s=time.perf_counter() - started,
            load_s=0.0,
            model=entry.name,
        )

    async def close(self) -> None:
        return None


class MacQwenAsrEngine:
    """An :class:`~herd.backends.media.AsrEngine` over the ``mlx-qwen3-asr`` CLI."""

    kind = "qwen3-asr"

    def __init__(
        self, models: Sequence[CliAsrModel], executable: str, *, timeout: float = 600.0
    ) -> None:
        self._models = tuple(models)
        self._executable = executable
        self._timeout = timeout

    def models(self) -> tuple[ModelOnDisk, ...]:
        return tuple(
            ModelOnDisk(name=m.name, family="qwen3-asr", category="asr") for m in self._models
        )

    def loaded(self) -> tuple[LoadedModel, ...]:
        return ()

    def resolve(self, model: str) -> CliAsrModel:
        key = canonical_model(model)
        for m in self._models:
            if canonical_model(m.name) == key:
                return m
        raise ModelNotFound(f"model '{model}' not found on this node's mlx-qwen3-asr")

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
        if not isinstance(audio, bytes | bytearray) or not audio:
            raise BadRequest("the audio file is empty")
        lang = qwen_language(language)
        with tempfile.TemporaryDirectory(prefix="herd-asr-") as tmp:
            audio_path = Path(tmp) / safe_filename(filename)
            out_dir = Path(tmp) / "out"
            await asyncio.to_thread(_write_audio, audio_path, bytes(audio), out_dir)
            argv = asr_argv(
                entry,
                self._executable,
                audio=audio_path,
                output_dir=out_dir,
                language=lang,
                context=prompt,
            )
            stdout, _ = await run_cli(argv, timeout=self._timeout, cwd=Path(tmp))
            data, duration = await asyncio.to_thread(_read_outputs, out_dir, audio_path, stdout)
        segments = transcript_segments(data)
        if not duration and segments:
            duration = max(float(str(s["end"])) for s in segments)
        name = str(data.get("language") or lang or "")
        return TranscriptResult(
            text=str(data["text"]).strip(),
            language=LANGUAGE_CODES.get(name.lower(), name.lower()),
            duration_s=round(duration, 3),
            segments=segments,
            total_s=time.perf_counter() - started,
            load_s=0.0,
            model=entry.name,
        )

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------- detection


def detect_mac_image(
    tool: MacTool, settings: Settings, *, platform: str, which: Which
) -> MacImageCliEngine | None:
    """mflux or DiffusionKit, when this is macOS and the tool's commands are installed."""
    if platform != "darwin":
        return None
    models = [m for m in IMAGE_MODELS if m.tool == tool]
    executables = {
        m.binary: path for m in models if (path := find_binary(m.binary, which)) is not None
    }
    if not executables:
        return None
    return MacImageCliEngine(tool, models, executables, timeout=settings.node.image_timeout)


def detect_mac_asr(settings: Settings, *, platform: str, which: Which) -> MacQwenAsrEngine | None:
    """mlx-qwen3-asr, when this is macOS and its command is installed."""
    if platform != "darwin":
        return None
    executable = find_binary("mlx-qwen3-asr", which)
    if executable is None:
        return None
    return MacQwenAsrEngine(ASR_MODELS, executable, timeout=settings.node.asr_timeout)
