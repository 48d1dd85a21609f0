"""The macOS CLI engines (mflux, DiffusionKit, mlx-qwen3-asr) and their detection.

The commands, model names and file handling live in :mod:`herd.backends.mac_cli`.
"""

from __future__ import annotations

import asyncio
import tempfile
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
from herd.backends.media_engine_base import (
    ImageJob,
    LocalAsrEngine,
    LocalImageEngine,
    Picture,
    Transcript,
)
from herd.domain import ModelOnDisk
from herd.errors import BackendError

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


class MacImageCliEngine(LocalImageEngine[CliImageModel]):
    """An :class:`~herd.backends.media.ImageEngine` over mflux or DiffusionKit."""

    size_multiple = 16
    seed_modulus = 2**32

    def __init__(
        self,
        kind: MacTool,
        models: Sequence[CliImageModel],
        executables: Mapping[str, str],
        *,
        timeout: float = 600.0,
        quantize: int | None = 8,
    ) -> None:
        super().__init__([m for m in models if m.binary in executables], timeout=timeout)
        self.kind = kind
        self._executables = dict(executables)
        self._quantize = quantize

    def model_on_disk(self, entry: CliImageModel, name: str) -> ModelOnDisk:
        return ModelOnDisk(name=name, family=entry.tool, category="image")

    async def render(self, entry: CliImageModel, job: ImageJob) -> Picture:
        n_steps = job.steps if job.steps is not None else entry.default_steps
        with tempfile.TemporaryDirectory(prefix="herd-image-") as tmp:
            output = Path(tmp) / "image.png"
            argv = image_argv(
                entry,
                self._executables[entry.binary],
                prompt=job.prompt,
                width=job.width,
                height=job.height,
                steps=n_steps,
                seed=job.seed,
                output=output,
                negative_prompt=job.negative_prompt,
                quantize=self._quantize,
            )
            await run_cli(argv, timeout=self._timeout, cwd=Path(tmp))
            png = await asyncio.to_thread(_read_image, output, entry.binary)
        got_width, got_height = png_size(png)
        return Picture(png, got_width, got_height, n_steps)


class MacQwenAsrEngine(LocalAsrEngine[CliAsrModel]):
    """An :class:`~herd.backends.media.AsrEngine` over the ``mlx-qwen3-asr`` CLI."""

    kind = "qwen3-asr"
    tool_label = "mlx-qwen3-asr"

    def __init__(
        self, models: Sequence[CliAsrModel], executable: str, *, timeout: float = 600.0
    ) -> None:
        super().__init__(models, timeout=timeout)
        self._executable = executable

    def model_on_disk(self, entry: CliAsrModel, name: str) -> ModelOnDisk:
        return ModelOnDisk(name=name, family="qwen3-asr", category="asr")

    async def run_transcription(
        self,
        entry: CliAsrModel,
        audio: bytes,
        *,
        filename: str,
        language: str | None,
        prompt: str | None,
    ) -> Transcript:
        lang = qwen_language(language)
        with tempfile.TemporaryDirectory(prefix="herd-asr-") as tmp:
            audio_path = Path(tmp) / safe_filename(filename)
            out_dir = Path(tmp) / "out"
            await asyncio.to_thread(_write_audio, audio_path, audio, out_dir)
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
        return Transcript(
            text=str(data["text"]).strip(),
            language=LANGUAGE_CODES.get(name.lower(), name.lower()),
            duration_s=round(duration, 3),
            segments=segments,
        )


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
