"""Text-to-speech with Piper (``piper-tts``: VITS voices run by onnxruntime, in the node
process; its phonemizer is espeak-ng, compiled into the wheel with its own data, so
the Debian package is not needed).

Models: one per Piper voice, a ``<voice>.onnx`` next to its ``<voice>.onnx.json``, in
:func:`~herd.backends.tts_voices.shared_voices_dir` (where ``make setup`` puts
``en_US-joe-medium``) and ``FLEET_NODE_PIPER_VOICES_DIR``; each is ``piper:<voice>``.
The packaged voice also answers OpenAI's model names (``tts-1``, ``tts-1-hd``,
``gpt-4o-mini-tts``).

Voices: a voice file's speakers (one for most voices: the data set's name, ``joe``; or
the config's ``speaker_id_map``). OpenAI's voice names map to them in a fixed order
(:data:`~herd.backends.tts_common.OPENAI_VOICES`, the i-th to speaker i mod N).
Speed: Piper's ``length_scale`` divided by ``speed`` within 0.5..1.5 (beyond, a VITS
voice hardly changes pace: 4x asked gives 2x), the rest by stretching the audio.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herd.backends.media_util import modified_at, package_dir
from herd.backends.tts_common import OPENAI_VOICES, LocalTtsEngine, Pcm, unknown_voice
from herd.backends.tts_voices import PACKAGED_VOICES, shared_voices_dir
from herd.domain import ModelOnDisk, canonical_model

if TYPE_CHECKING:
    from herd.settings import Settings

_PACE_MIN, _PACE_MAX = 0.5, 1.5  # speeds Piper's length_scale reaches itself


@dataclass(frozen=True, slots=True)
class PiperVoiceFile:
    """One Piper voice on this device and the names it answers to."""

    names: tuple[str, ...]  # names[0] is the primary name: piper:<voice>
    path: Path
    config_path: Path
    speakers: tuple[str, ...]  # speaker names, by speaker id
    speaker_ids: tuple[int, ...] | None  # their ids (None: a single-speaker voice)
    sample_rate: int
    size: int = 0
    modified_at: str = ""
    language: str = ""

    @property
    def name(self) -> str:
        return self.names[0]


def _voice_file(onnx: Path) -> PiperVoiceFile | None:
    """The voice of ``onnx`` (None when its config is missing or not a Piper config)."""
    config_path = onnx.with_name(onnx.name + ".json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        rate = int(config["audio"]["sample_rate"])
        size = onnx.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    stem = onnx.name.removesuffix(".onnx")
    by_id = config.get("speaker_id_map") or {}
    ids: tuple[int, ...] | None = None
    if int(config.get("num_speakers") or 1) > 1 and by_id:
        ordered = sorted(by_id.items(), key=lambda kv: int(kv[1]))
        speakers = tuple(str(name) for name, _ in ordered)
        ids = tuple(int(sid) for _, sid in ordered)
    else:
        speakers = (str(config.get("dataset") or stem).lower(),)
    packaged = PACKAGED_VOICES.get(stem)
    names = (f"piper:{stem}", *(packaged.aliases if packaged is not None else ()))
    language = str((config.get("language") or {}).get("code") or "")
    return PiperVoiceFile(
        names, onnx, config_path, speakers, ids, rate, size, modified_at(onnx), language
    )


def find_piper_voices(dirs: Sequence[Path | None]) -> list[PiperVoiceFile]:
    """The Piper voices in ``dirs`` (in order; a name already found is skipped)."""
    found: list[PiperVoiceFile] = []
    seen: set[str] = set()
    for directory in dirs:
        if directory is None or not directory.is_dir():
            continue
        for onnx in sorted(directory.glob("*.onnx")):
            voice = _voice_file(onnx)
            if voice is None or canonical_model(voice.name) in seen:
                continue
            seen.add(canonical_model(voice.name))
            found.append(voice)
    return found


def piper_installed() -> bool:
    """``piper-tts`` (not the unrelated ``piper`` package): its bundled espeak-ng data."""
    return package_dir("piper", "espeak-ng-data") is not None


def detect_piper_engine(settings: Settings) -> PiperEngine | None:
    if not piper_installed():
        return None
    voices = find_piper_voices([shared_voices_dir(), settings.node.piper_voices_dir])
    if not voices:
        return None
    return PiperEngine(voices, timeout=settings.node.tts_timeout)


def _load(voice: PiperVoiceFile) -> Any:
    from piper import PiperVoice

    return PiperVoice.load(voice.path, config_path=voice.config_path, use_cuda=False)


class PiperEngine(LocalTtsEngine[PiperVoiceFile]):
    """A :class:`~herd.backends.media.TtsEngine` over local Piper voices."""

    kind = "piper"

    def model_on_disk(self, entry: PiperVoiceFile, name: str) -> ModelOnDisk:
        return ModelOnDisk(
            name=name,
            size=entry.size,
            family="piper",
            quantization_level="F32",
            modified_at=entry.modified_at,
            category="tts",
        )

    def voice_for(self, entry: PiperVoiceFile, voice: str) -> str:
        key = voice.strip().lower()
        if key in OPENAI_VOICES:
            return entry.speakers[OPENAI_VOICES.index(key) % len(entry.speakers)]
        for speaker in entry.speakers:
            if speaker.lower() == key:
                return speaker
        raise unknown_voice(voice, entry.name, entry.speakers)

    def render(self, entry: PiperVoiceFile, text: str, voice: str, speed: float) -> Pcm:
        from piper import SynthesisConfig

        piper, load_s = self._store.get(entry.name, lambda: _load(entry), size=entry.size)
        ids = entry.speaker_ids
        speaker = ids[entry.speakers.index(voice)] if ids is not None else None
        pace = min(max(speed, _PACE_MIN), _PACE_MAX)
        scale = float(piper.config.length_scale or 1.0) / pace
        chunks = piper.synthesize(text, SynthesisConfig(speaker_id=speaker, length_scale=scale))
        samples = b"".join(chunk.audio_int16_bytes for chunk in chunks)
        rate = int(piper.config.sample_rate)
        return Pcm(samples, rate, load_s=load_s, tempo=speed / pace)
