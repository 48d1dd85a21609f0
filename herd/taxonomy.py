"""What kind of model a name is: one taxonomy for the nodes, the router and the dashboard.

Two levels:

* the **category** (:data:`ModelCategory`): what a model serves, ``llm``, ``embedding``,
  ``image``, ``asr`` (speech-to-text) or ``tts`` (text-to-speech). Nodes classify their models with
  :func:`model_category` (Ollama's ``capabilities`` first, when it lists them; media
  engines know their own) and send it on every ``ModelOnDisk.category``; endpoints and
  the dashboard group by it.
* the **stand-in group** (:func:`standin_group`): the category, with ``llm`` split into
  ``chat``, ``coder`` and ``vision``. VRAM-aware fallback and context upgrades only swap
  a model for another of the same group.

Name rules (a node's own classification wins; first match wins): image when the name
or family is a known image model or says ``flux``, ``sdxl``, ``diffusion``...; tts when
it says ``tts``, ``piper``, ``espeak``, ``kokoro``...; asr when
it says ``whisper``, ``asr``...; embedding when the family is a BERT or the name says
``embed``, ``minilm``, ``bge-``...; else llm. Within llm: ``coder`` when the name says
``code`` (``qwen2.5-coder``, ``codellama``, ``starcoder2``...), ``vision`` when it says
``llava``, ``vision``, ``-vl`` or ``moondream``, else ``chat``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from herd.domain import ModelOnDisk, canonical_model

ModelCategory = Literal["llm", "embedding", "image", "asr", "tts"]
MODEL_CATEGORIES: tuple[ModelCategory, ...] = ("llm", "embedding", "image", "asr", "tts")

_IMAGE_NAMES = frozenset(
    {
        "z-image-turbo",
        "flux-dev",
        "flux-schnell",
        "sd3-medium",
        "sd3.5-large",
        "x/z-image-turbo",
        "x/flux2-klein",
        "tiny-sd",
    }
)
_IMAGE_HINTS = ("stable-diffusion", "sdxl", "flux", "z-image", "diffusion", "-sd:", "dall-e")
_IMAGE_FAMILIES = frozenset({"diffusers", "flux", "sd3", "stable-diffusion", "image"})
_ASR_HINTS = ("whisper", "asr", "speech-to-text", "parakeet", "tiny.en", "base.en")
_ASR_FAMILIES = frozenset({"whisper", "asr"})
_TTS_HINTS = ("tts-", "-tts", ":tts", "piper:", "espeak", "kokoro", "text-to-speech", "speecht5")
_TTS_FAMILIES = frozenset({"piper", "espeak-ng", "tts"})
_EMBED_HINTS = (
    "embed",
    "minilm",
    "bge-",
    "bge:",
    "gte-",
    "e5-",
    "mxbai",
    "snowflake-arctic-embed",
    "paraphrase-",
    "nomic-embed",
    "granite-embedding",
)
_EMBED_FAMILIES = frozenset({"bert", "nomic-bert", "sentence-transformers", "xlm-roberta"})
_VISION_HINTS = ("llava", "vision", "-vl", "moondream")


def model_category(
    name: str, family: str = "", capabilities: Iterable[str] | None = None
) -> ModelCategory:
    """What ``name`` serves, from Ollama's ``capabilities`` when given, else its name and
    family ("llm" by default)."""
    caps = set(capabilities or ())
    if "embedding" in caps:
        return "embedding"
    if "image" in caps:
        return "image"
    if "completion" in caps:
        return "llm"
    key = canonical_model(name)
    base = key.rsplit(":", 1)[0]
    fam = family.strip().lower()
    if base in _IMAGE_NAMES or fam in _IMAGE_FAMILIES or any(h in key for h in _IMAGE_HINTS):
        return "image"
    if fam in _TTS_FAMILIES or any(h in key for h in _TTS_HINTS):
        return "tts"
    if fam in _ASR_FAMILIES or any(h in key for h in _ASR_HINTS):
        return "asr"
    if fam in _EMBED_FAMILIES or fam.endswith("bert") or any(h in key for h in _EMBED_HINTS):
        return "embedding"
    return "llm"


def standin_group(name: str, family: str = "", category: str = "llm") -> str:
    """The group a stand-in model must share with ``name``: its category, or for an LLM
    ``chat``, ``coder`` or ``vision``. ``category`` is the node's classification."""
    kind = category if category and category != "llm" else model_category(name, family)
    if kind != "llm":
        return kind
    base = name.strip().lower().rsplit("/", 1)[-1]
    if "code" in base.split(":", 1)[0]:
        return "coder"
    if any(tag in base for tag in _VISION_HINTS):
        return "vision"
    return "chat"


def group_of(name: str, disk: ModelOnDisk | None) -> str:
    """:func:`standin_group` with what the node reported about the model, if anything."""
    if disk is None:
        return standin_group(name)
    return standin_group(name, disk.family, disk.category)
