"""Media engines map every failure to herd.errors: unknown model -> ModelNotFound, bad
parameters -> BadRequest (both before anything loads), engine failures -> BackendError,
slow jobs -> BackendTimeout. Also the shared model cache."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from herd.backends.diffusers_image import DiffusersImageEngine, find_diffusers_models
from herd.backends.mac_cli import ASR_MODELS, IMAGE_MODELS
from herd.backends.mac_engines import MacImageCliEngine, MacQwenAsrEngine
from herd.backends.media_util import ModelStore, check_image_params, run_job
from herd.backends.st_embed import MINILM_NAMES, SentenceTransformersEngine, StModel
from herd.backends.whisper_asr import TINY_EN_NAMES, FasterWhisperEngine, WhisperModelDir
from herd.errors import BackendError, BackendTimeout, BadRequest, ModelNotFound

MISSING = Path("/nonexistent/model")  # any load would fail loudly: none must happen


def st() -> SentenceTransformersEngine:
    return SentenceTransformersEngine([StModel(names=MINILM_NAMES, path=MISSING)])


def whisper() -> FasterWhisperEngine:
    return FasterWhisperEngine([WhisperModelDir(names=TINY_EN_NAMES, path=MISSING)])


def diffusers() -> DiffusersImageEngine:
    return DiffusersImageEngine(find_diffusers_models(None, tiny=True))


def mflux() -> MacImageCliEngine:
    return MacImageCliEngine("mflux", IMAGE_MODELS, {"mflux-generate": "/nonexistent/mflux"})


def qwen() -> MacQwenAsrEngine:
    return MacQwenAsrEngine(ASR_MODELS, "/nonexistent/mlx-qwen3-asr")


IMAGE = {"width": 64, "height": 64, "steps": None, "seed": 1, "negative_prompt": None}
AUDIO = {"filename": "a.wav", "language": None, "prompt": None}

Call = Callable[[], Awaitable[Any]]

UNKNOWN: dict[str, Call] = {
    "st": lambda: st().embed("nomic-embed-text", ["x"]),
    "whisper": lambda: whisper().transcribe("whisper:large-v3", b"RIFF", **AUDIO),
    "diffusers": lambda: diffusers().generate("sdxl", "a cat", **IMAGE),
    "mflux": lambda: mflux().generate("z-image-turbo", "a cat", **IMAGE),  # not installed
    "qwen": lambda: qwen().transcribe("qwen3-asr:4b", b"RIFF", **AUDIO),
}


@pytest.mark.parametrize("call", UNKNOWN.values(), ids=UNKNOWN.keys())
async def test_unknown_model(call: Call) -> None:
    with pytest.raises(ModelNotFound, match="not found on this node"):
        await call()


def _img(**over: Any) -> Call:
    return lambda: diffusers().generate("tiny-sd:random", "a cat", **{**IMAGE, **over})


BAD: dict[str, tuple[Call, str]] = {
    "inputs not a list": (lambda: st().embed("all-minilm:l6-v2", "text"), "input must be"),  # type: ignore[arg-type]
    "input not a string": (lambda: st().embed("all-minilm:l6-v2", ["a", 3]), "input must be"),  # type: ignore[list-item]
    "dimensions zero": (lambda: st().embed("all-minilm:l6-v2", ["a"], dimensions=0), "dimensions"),
    "dimensions bool": (
        lambda: st().embed("all-minilm:l6-v2", ["a"], dimensions=True),
        "dimensions",
    ),
    "empty audio": (lambda: whisper().transcribe("tiny.en", b"", **AUDIO), "empty"),
    "language format": (
        lambda: whisper().transcribe("tiny.en", b"RIFF", **{**AUDIO, "language": "English!"}),
        "ISO-639-1",
    ),
    "empty prompt": (lambda: diffusers().generate("tiny-sd:random", "  ", **IMAGE), "prompt"),
    "width not multiple": (_img(width=65), "width must be a multiple of 8"),
    "width too small": (_img(width=32), "between 64 and 512"),
    "height too big": (_img(height=1024), "between 64 and 512"),
    "width a string": (_img(width="64"), "width must be an integer"),
    "steps zero": (_img(steps=0), "steps"),
    "steps too many": (_img(steps=201), "steps"),
    "seed a string": (_img(seed="7"), "seed must be an integer"),
    "negative prompt": (_img(negative_prompt=["x"]), "negative_prompt"),
    "mflux size": (
        lambda: mflux().generate("flux-dev", "a cat", **{**IMAGE, "width": 72}),
        "multiple of 16",
    ),
    "qwen empty audio": (lambda: qwen().transcribe("qwen3-asr", b"", **AUDIO), "empty"),
    "qwen language": (
        lambda: qwen().transcribe("qwen3-asr", b"RIFF", **{**AUDIO, "language": "xx"}),
        "does not support language",
    ),
}


@pytest.mark.parametrize(("call", "message"), BAD.values(), ids=BAD.keys())
async def test_bad_parameters_are_bad_requests(call: Call, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        await call()


@pytest.mark.parametrize(
    ("width", "height", "steps", "ok"),
    [
        (64, 64, None, True),
        (2048, 512, 50, True),
        (64, 64, 200, True),
        (56, 64, None, False),
        (64, 2056, None, False),
        (64, 100, None, False),
        (True, 64, None, False),
        (64, 64, 0, False),
        (64, 64, 1.5, False),
    ],
)
def test_check_image_params(width: Any, height: Any, steps: Any, ok: bool) -> None:
    if ok:
        check_image_params(width, height, steps)
    else:
        with pytest.raises(BadRequest):
            check_image_params(width, height, steps)


async def test_run_job_maps_failures() -> None:
    def crash() -> None:
        raise ValueError("weights are corrupt")

    with pytest.raises(BackendError, match="loading failed: ValueError: weights are corrupt") as e:
        await run_job(crash, timeout=5, what="loading")
    assert e.value.retryable is False

    def refuse() -> None:
        raise BadRequest("no")

    with pytest.raises(BadRequest, match="no"):
        await run_job(refuse, timeout=5, what="x")


async def test_run_job_times_out_without_waiting_for_the_thread() -> None:
    release = threading.Event()
    try:
        with pytest.raises(BackendTimeout, match=r"image generation took longer than 0.05s"):
            await run_job(lambda: release.wait(30), timeout=0.05, what="image generation")
    finally:
        release.set()


def test_model_store_loads_once_under_concurrency() -> None:
    store: ModelStore[object] = ModelStore()
    calls = []
    started = threading.Barrier(8)

    def loader() -> object:
        calls.append(1)
        return object()

    def get() -> tuple[object, float]:
        started.wait(5)
        return store.get("m", loader, size=123)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: get(), range(8)))
    assert len(calls) == 1
    assert len({id(model) for model, _ in results}) == 1
    assert sum(1 for _, load_s in results if load_s > 0) == 1
    assert [(m.name, m.size) for m in store.loaded()] == [("m", 123)]
    store.clear()
    assert store.loaded() == ()


async def test_close_drops_nothing_when_nothing_loaded() -> None:
    for engine in (st(), whisper(), diffusers(), mflux(), qwen()):
        await engine.close()
        assert engine.loaded() == ()
