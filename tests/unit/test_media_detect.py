"""Media engine detection: what FLEET_NODE_ENGINES selects, model directories, never
raising, and that detection imports no engine library."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from herd.backends import media_detect
from herd.backends.mac_engines import detect_mac_asr, detect_mac_image
from herd.backends.media import wanted_engines
from herd.backends.media_detect import detect_media_engines
from herd.errors import ConfigError
from herd.node_settings import ENGINE_NAMES
from herd.settings import Settings, load_settings


def settings(**node: object) -> Settings:
    return load_settings(node=node)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("auto", ENGINE_NAMES),
        ("off", ()),
        ("none", ()),
        ("", ()),
        ("diffusers", ("diffusers",)),
        ("faster-whisper,sentence-transformers", ("sentence-transformers", "faster-whisper")),
        ("mflux,qwen3-asr", ("mflux", "qwen3-asr")),
    ],
)
def test_wanted_engines(value: str, expected: tuple[str, ...]) -> None:
    assert wanted_engines(value) == expected


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("AUTO", "auto"),
        (" Off ", "off"),
        ("diffusers, faster-whisper", "diffusers,faster-whisper"),
    ],
)
def test_engines_setting_is_normalised(raw: str, stored: str) -> None:
    assert settings(engines=raw).node.engines == stored


def test_unknown_engine_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"FLEET_NODE_ENGINES.*unknown engine.*whisperx"):
        settings(engines="diffusers,whisperx")


def test_engines_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_NODE_ENGINES", "faster-whisper")
    monkeypatch.setenv("FLEET_NODE_IMAGE_TIMEOUT", "42")
    monkeypatch.setenv("FLEET_NODE_DIFFUSERS_TINY", "false")
    node = load_settings().node
    assert (node.engines, node.image_timeout, node.diffusers_tiny) == ("faster-whisper", 42, False)


def test_off_finds_nothing() -> None:
    found = detect_media_engines(settings(engines="off"))
    assert found.all() == [] and found.models() == ()


def test_selection_limits_detection() -> None:
    found = detect_media_engines(settings(engines="faster-whisper"))
    assert found.kinds() == ("faster-whisper",)
    assert found.embedding == [] and found.image == []


def st_dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "modules.json").write_text("[]")
    (path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    return path


def test_model_directories_are_listed_by_name(tmp_path: Path) -> None:
    st_dir(tmp_path / "embed", "BGE-Small")
    (tmp_path / "embed" / "not-a-model").mkdir()
    whisper = tmp_path / "whisper" / "base.en"
    whisper.mkdir(parents=True)
    (whisper / "model.bin").write_bytes(b"x" * 10)
    (whisper / "config.json").write_text("{}")
    pipe = tmp_path / "diffusers" / "sdxl-turbo"
    pipe.mkdir(parents=True)
    (pipe / "model_index.json").write_text("{}")
    found = detect_media_engines(
        settings(
            engines="sentence-transformers,faster-whisper,diffusers",
            embed_models_dir=tmp_path / "embed",
            whisper_models_dir=tmp_path / "whisper",
            diffusers_models_dir=tmp_path / "diffusers",
            diffusers_tiny=False,
        )
    )
    by_name = {m.name: m for m in found.models()}
    assert by_name["bge-small"].family == "xlm-roberta"
    assert by_name["bge-small"].category == "embedding"
    assert by_name["whisper:base.en"].size == 12
    assert by_name["sdxl-turbo"].category == "image"
    assert "not-a-model" not in by_name
    assert "tiny-sd:random" not in by_name  # FLEET_NODE_DIFFUSERS_TINY=false


def test_a_broken_engine_does_not_stop_detection(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: Settings) -> None:
        raise RuntimeError("half-installed")

    monkeypatch.setattr(media_detect, "_detect_st", broken)
    with caplog.at_level(logging.WARNING, logger="herd.backends.media_detect"):
        found = detect_media_engines(settings(engines="sentence-transformers,faster-whisper"))
    assert found.kinds() == ("faster-whisper",)
    assert "sentence-transformers not usable: half-installed" in caplog.text


def test_detection_imports_no_engine_library() -> None:
    """Auto-detection is cheap: find_spec and PATH lookups, no torch import."""
    code = (
        "import sys\n"
        "from herd.backends.media_detect import detect_media_engines\n"
        "from herd.settings import load_settings\n"
        "found = detect_media_engines(load_settings(node={'engines': 'auto'}))\n"
        "assert found.models(), 'nothing detected'\n"
        "heavy = ('torch', 'transformers', 'diffusers', 'sentence_transformers',"
        " 'faster_whisper', 'ctranslate2', 'av')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def fake_which(installed: set[str]) -> Callable[[str], str | None]:
    return lambda name: f"/opt/tools/{name}" if name in installed else None


@pytest.mark.parametrize(
    ("tool", "installed", "names"),
    [
        ("mflux", {"mflux-generate-z-image-turbo"}, ["z-image-turbo"]),
        ("mflux", {"mflux-generate"}, ["flux-dev", "flux-schnell"]),
        (
            "mflux",
            {"mflux-generate", "mflux-generate-z-image-turbo"},
            ["z-image-turbo", "flux-dev", "flux-schnell"],
        ),
        ("diffusionkit", {"diffusionkit-cli"}, ["sd3-medium", "sd3.5-large"]),
    ],
)
def test_mac_image_tools_on_macos(tool: str, installed: set[str], names: list[str]) -> None:
    engine = detect_mac_image(
        tool,  # type: ignore[arg-type]
        settings(),
        platform="darwin",
        which=fake_which(installed),
    )
    assert engine is not None and engine.kind == tool
    assert [m.name for m in engine.models()] == names


def test_mac_tools_need_macos_and_the_command() -> None:
    every = fake_which({"mflux-generate", "diffusionkit-cli", "mlx-qwen3-asr"})
    assert detect_mac_image("mflux", settings(), platform="linux", which=every) is None
    assert detect_mac_asr(settings(), platform="linux", which=every) is None
    nothing = fake_which(set())
    assert detect_mac_image("diffusionkit", settings(), platform="darwin", which=nothing) is None
    assert detect_mac_asr(settings(), platform="darwin", which=nothing) is None
    asr = detect_mac_asr(settings(), platform="darwin", which=every)
    assert asr is not None
    assert [m.name for m in asr.models()] == ["qwen3-asr", "qwen3-asr:1.7b"]
