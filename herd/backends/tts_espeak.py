"""Text-to-speech with espeak-ng (formant synthesis: robotic, tiny, always there).

The ``espeak-ng`` binary (Debian's ``espeak-ng`` package; ``make system-deps`` installs
it) runs once per request: the text goes in on stdin (never on the command line, never
as SSML), a WAV comes out on stdout. Model name: ``espeak-ng``.

Voices: OpenAI's names map to fixed espeak-ng voices (:data:`OPENAI_TO_ESPEAK`, an
English voice and a variant each); espeak-ng's own names pass too: a language of
``espeak-ng --voices`` (``en-us``, ``de``, ``fr-fr``, or its prefix ``fr``) with an
optional ``+variant`` of ``espeak-ng --voices=variant`` (``en-gb+f3``). Speed: 175 words
a minute times ``speed``; espeak-ng does not go below 80, so slower speeds are stretched
afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from herd.backends.audio_encode import read_wav
from herd.backends.media_util import has_module
from herd.backends.tts_common import OPENAI_VOICES, LocalTtsEngine, Pcm, unknown_voice
from herd.domain import ModelOnDisk
from herd.errors import BackendError, BackendTimeout

if TYPE_CHECKING:
    from herd.settings import Settings

MODEL_NAME = "espeak-ng"
WORDS_PER_MINUTE = 175  # espeak-ng's default rate
MIN_WPM = 80  # espeak-ng clamps below this

OPENAI_TO_ESPEAK: dict[str, str] = {
    "alloy": "en-us",
    "ash": "en-us+m3",
    "ballad": "en-gb-x-rp+m2",
    "coral": "en-us+f2",
    "echo": "en-us+m4",
    "fable": "en-gb+m1",
    "onyx": "en-us+m7",
    "nova": "en-us+f3",
    "sage": "en-us+f4",
    "shimmer": "en-us+f5",
    "verse": "en-us+m2",
    "marin": "en-us+f1",
    "cedar": "en-us+m5",
}
assert tuple(OPENAI_TO_ESPEAK) == OPENAI_VOICES


@dataclass(frozen=True, slots=True)
class EspeakModel:
    """The one model entry: espeak-ng's binary."""

    binary: str
    names: tuple[str, ...] = (MODEL_NAME,)

    @property
    def name(self) -> str:
        return self.names[0]


def detect_espeak_engine(settings: Settings) -> EspeakEngine | None:
    binary = shutil.which("espeak-ng")
    if binary is None or not has_module("av"):  # PyAV encodes its speech ([media])
        return None
    return EspeakEngine([EspeakModel(binary)], timeout=settings.node.tts_timeout)


def _listing(binary: str, arg: str, column: int, timeout: float) -> frozenset[str]:
    """One column of ``espeak-ng --voices[=variant]`` (lower-cased), without the header."""
    done = subprocess.run(
        [binary, arg], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise BackendError(f"espeak-ng {arg} failed: {done.stderr.strip()[:200]}")
    out: set[str] = set()
    for line in done.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) > column:
            out.add(parts[column].lower().removeprefix("!v/"))
    return frozenset(out)


class EspeakEngine(LocalTtsEngine[EspeakModel]):
    """A :class:`~herd.backends.media.TtsEngine` over the espeak-ng binary."""

    kind = "espeak-ng"

    def __init__(self, models: list[EspeakModel], *, timeout: float = 120.0) -> None:
        super().__init__(models, timeout=timeout)
        self._voices: tuple[frozenset[str], frozenset[str]] | None = None
        self._voices_lock = threading.Lock()

    def model_on_disk(self, entry: EspeakModel, name: str) -> ModelOnDisk:
        return ModelOnDisk(name=name, family="espeak-ng", category="tts")

    def native_voices(self, entry: EspeakModel) -> tuple[frozenset[str], frozenset[str]]:
        """(languages, variants) this espeak-ng knows, read once from the binary."""
        with self._voices_lock:
            if self._voices is None:
                self._voices = (
                    _listing(entry.binary, "--voices", 1, self._timeout),
                    _listing(entry.binary, "--voices=variant", 4, self._timeout),
                )
            return self._voices

    def voice_for(self, entry: EspeakModel, voice: str) -> str:
        key = voice.strip().lower()
        if key in OPENAI_TO_ESPEAK:
            return OPENAI_TO_ESPEAK[key]
        languages, variants = self.native_voices(entry)
        language, plus, variant = key.partition("+")
        known = language in languages or any(v.startswith(f"{language}-") for v in languages)
        if known and (not plus or variant in variants):
            return key  # espeak-ng takes a language's prefix too: "fr" is fr-fr
        raise unknown_voice(voice, entry.name, tuple(sorted(languages)))

    def render(self, entry: EspeakModel, text: str, voice: str, speed: float) -> Pcm:
        wpm = round(WORDS_PER_MINUTE * speed)
        tempo = 1.0
        if wpm < MIN_WPM:  # espeak-ng would clamp: speak at its slowest, stretch the rest
            tempo, wpm = wpm / MIN_WPM, MIN_WPM
        cmd = [entry.binary, "--stdout", "-b", "1", "-v", voice, "-s", str(wpm), "--stdin"]
        try:
            done = subprocess.run(
                cmd, input=text.encode("utf-8"), capture_output=True, timeout=self._timeout
            )
        except subprocess.TimeoutExpired:
            raise BackendTimeout(
                f"espeak-ng took longer than {self._timeout:g}s (FLEET_NODE_TTS_TIMEOUT)"
            ) from None
        if done.returncode != 0 or not done.stdout:
            why = done.stderr.decode("utf-8", "replace").strip()[:200] or "no audio"
            raise BackendError(f"espeak-ng failed: {why}", retryable=False)
        samples, rate = read_wav(done.stdout)
        return Pcm(samples, rate, tempo=tempo)
