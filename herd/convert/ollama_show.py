"""``/api/show`` bodies for models no Ollama describes (media engines, llama.cpp servers).

An Ollama node answers ``/api/show`` itself; for the others the node builds the same
shape from what it knows (name, size, family, category). ``model_info`` is present (the
ollama client requires the key) with the few GGUF-style keys that can be told.
"""

from __future__ import annotations

from typing import Any

from herd.domain import ModelOnDisk

EPOCH = "1970-01-01T00:00:00Z"

CATEGORY_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "llm": ("completion",),
    "embedding": ("embedding",),
    "image": ("image",),
    "asr": ("transcription",),
    "tts": ("speech",),
}


def capabilities(category: str) -> list[str]:
    """Ollama-style capabilities of a model category (``asr`` -> ``transcription``)."""
    return list(CATEGORY_CAPABILITIES.get(category, ("completion",)))


def details(model: ModelOnDisk, fmt: str = "gguf") -> dict[str, Any]:
    family = model.family
    return {
        "parent_model": "",
        "format": fmt,
        "family": family,
        "families": [family] if family else None,
        "parameter_size": model.parameter_size,
        "quantization_level": model.quantization_level,
    }


def show_body(model: ModelOnDisk, *, engine: str, context_length: int = 0) -> dict[str, Any]:
    """An ``/api/show`` body for ``model`` served by ``engine`` (e.g. ``llamacpp``,
    ``sentence-transformers``, ``faster-whisper``, ``diffusers``)."""
    arch = model.family or engine
    info: dict[str, Any] = {"general.architecture": arch, "general.basename": model.name}
    if context_length:
        info[f"{arch}.context_length"] = context_length
    return {
        "modelfile": f"# served by {engine} through herd\nFROM {model.name}\n",
        "parameters": "",
        "template": "",
        "system": "",
        "details": details(model, "gguf" if engine in ("llamacpp", "openai") else engine),
        "model_info": info,
        "capabilities": capabilities(model.category),
        "modified_at": model.modified_at or EPOCH,
        "herd": {"engine": engine, "category": model.category, "size": model.size},
    }
