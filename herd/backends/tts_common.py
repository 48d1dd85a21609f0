"""What the text-to-speech engines do the same way: OpenAI's voices and models, the
request checks, the timing and the encoding of the result.

:class:`LocalTtsEngine` takes a request (model, text, voice, speed, format), checks it
before anything loads, then in one thread job resolves the voice
(:meth:`~LocalTtsEngine.voice_for`: OpenAI's names map to the engine's own voices
deterministically, an engine's native names pass, anything else is a 400) and runs the
engine's :meth:`~LocalTtsEngine.render` and the encoding
(:func:`herd.backends.audio_encode.encode_speech`), bounded by ``FLEET_NODE_TTS_TIMEOUT``.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass

from herd.backends.audio_encode import SPEECH_FORMATS, encode_speech
from herd.backends.media import SpeechResult
from herd.backends.media_engine_base import LocalMediaEngine, M
from herd.errors import BadRequest

OPENAI_VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
"""OpenAI's built-in voices, in a fixed order (an engine with N voices maps the i-th one
to its voice i mod N)."""

OPENAI_TTS_MODELS: tuple[str, ...] = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
"""OpenAI's speech model names; herd's packaged neural voice answers to them."""

MIN_SPEED, MAX_SPEED = 0.25, 4.0


@dataclass(frozen=True, slots=True)
class Pcm:
    """What an engine rendered: 16-bit mono samples, and how to finish them."""

    samples: bytes
    rate: int
    load_s: float = 0.0
    tempo: float = 1.0  # a time stretch still to apply (a speed the engine cannot reach)


def check_speech_request(text: object, speed: object, response_format: object) -> float:
    """The speed as a float; BadRequest for empty text, a speed outside 0.25..4.0 or an
    unknown format (before anything loads)."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("input must be a non-empty string")
    if isinstance(speed, bool) or not isinstance(speed, int | float):
        raise BadRequest(f"speed must be a number (got {speed!r})")
    if not MIN_SPEED <= float(speed) <= MAX_SPEED:
        raise BadRequest(f"speed must be between {MIN_SPEED} and {MAX_SPEED} (got {speed})")
    if response_format not in SPEECH_FORMATS:
        raise BadRequest(f"response_format must be one of {', '.join(SPEECH_FORMATS)}")
    return float(speed)


def unknown_voice(voice: str, model: str, native: tuple[str, ...]) -> BadRequest:
    shown = ", ".join(native[:12]) + (", ..." if len(native) > 12 else "")
    return BadRequest(
        f"voice '{voice}' is not available on {model}: use one of OpenAI's voices "
        f"({', '.join(OPENAI_VOICES)}) or one of the engine's ({shown})"
    )


class LocalTtsEngine(LocalMediaEngine[M]):
    """A :class:`~herd.backends.media.TtsEngine`; subclasses resolve voices and render."""

    @abstractmethod
    def voice_for(self, entry: M, voice: str) -> str:
        """The engine's voice for ``voice`` (an OpenAI name or a native one), or
        BadRequest (:func:`unknown_voice`)."""

    @abstractmethod
    def render(self, entry: M, text: str, voice: str, speed: float) -> Pcm:
        """Blocking synthesis (runs in the engine's thread)."""

    async def synthesize(
        self, model: str, text: str, *, voice: str, speed: float, response_format: str
    ) -> SpeechResult:
        started = time.perf_counter()
        entry = self.resolve(model)
        pace = check_speech_request(text, speed, response_format)

        def work() -> SpeechResult:
            spoken = self.voice_for(entry, voice)  # may ask the engine once: in the thread
            pcm = self.render(entry, text, spoken, pace)
            if not pcm.samples:
                raise BadRequest("input has nothing to speak (no words the voice can say)")
            done = encode_speech(pcm.samples, pcm.rate, response_format, tempo=pcm.tempo)
            return SpeechResult(
                audio=done.data,
                format=done.format,
                media_type=done.media_type,
                sample_rate=done.sample_rate,
                duration_s=round(done.seconds, 3),
                voice=spoken,
                total_s=time.perf_counter() - started,
                load_s=pcm.load_s,
                model=entry.name,
            )

        return await self.run(work, what=f"speech with {entry.name}")
