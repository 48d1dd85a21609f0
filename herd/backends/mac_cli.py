"""macOS (Apple Silicon, MLX) tools at their command-line boundary: argv, runs, outputs.

The engines built on these are in :mod:`herd.backends.mac_engines`.

Each job runs the tool once in a fresh temporary directory, with a timeout, and reads the
file it writes. Detection: the platform is ``darwin`` and the tool is on PATH (or in
``~/.local/bin``, ``/opt/homebrew/bin``, ``/usr/local/bin``, where ``uv tool`` and
Homebrew put them and where a node started by launchd cannot see them on PATH).

Models and the commands they run (the seed's names):

- mflux (``uv tool install mflux``): ``z-image-turbo`` -> ``mflux-generate-z-image-turbo``;
  ``flux-dev`` / ``flux-schnell`` -> ``mflux-generate --model dev|schnell``; with
  ``--prompt --width --height --steps --seed --quantize 8 --output x.png``.
- DiffusionKit (``uv tool install diffusionkit``): ``sd3-medium`` / ``sd3.5-large`` ->
  ``diffusionkit-cli --model-version argmaxinc/mlx-stable-diffusion-3-medium`` (3.5-large
  adds ``--t5``) with ``--prompt --width --height --steps --seed --output-path x.png``.
- mlx-qwen3-asr (``pip install mlx-qwen3-asr``): ``qwen3-asr`` (Qwen/Qwen3-ASR-0.6B) and
  ``qwen3-asr:1.7b`` -> ``mlx-qwen3-asr AUDIO --model ID -f json -o DIR --quiet``.

A CLI loads its model on every run, so ``load_s`` is 0.0 and ``loaded()`` is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import struct
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from herd.errors import BackendError, BackendTimeout, BadRequest

MacTool = Literal["mflux", "diffusionkit", "qwen3-asr"]
Which = Callable[[str], str | None]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_STDERR_TAIL = 600


@dataclass(frozen=True, slots=True)
class CliImageModel:
    name: str
    tool: MacTool
    binary: str
    base_args: tuple[str, ...]
    default_steps: int

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True, slots=True)
class CliAsrModel:
    name: str
    binary: str
    model_id: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)


IMAGE_MODELS: tuple[CliImageModel, ...] = (
    CliImageModel("z-image-turbo", "mflux", "mflux-generate-z-image-turbo", (), 9),
    CliImageModel("flux-dev", "mflux", "mflux-generate", ("--model", "dev"), 25),
    CliImageModel("flux-schnell", "mflux", "mflux-generate", ("--model", "schnell"), 4),
    CliImageModel(
        "sd3-medium",
        "diffusionkit",
        "diffusionkit-cli",
        ("--model-version", "argmaxinc/mlx-stable-diffusion-3-medium"),
        28,
    ),
    CliImageModel(
        "sd3.5-large",
        "diffusionkit",
        "diffusionkit-cli",
        ("--model-version", "argmaxinc/mlx-stable-diffusion-3.5-large", "--t5"),
        28,
    ),
)
ASR_MODELS: tuple[CliAsrModel, ...] = (
    CliAsrModel("qwen3-asr", "mlx-qwen3-asr", "Qwen/Qwen3-ASR-0.6B"),
    CliAsrModel("qwen3-asr:1.7b", "mlx-qwen3-asr", "Qwen/Qwen3-ASR-1.7B"),
)

# The 30 languages Qwen3-ASR takes, by ISO-639 code (its CLI wants the English name).
QWEN_LANGUAGES: Mapping[str, str] = {
    "zh": "Chinese", "en": "English", "yue": "Cantonese", "ar": "Arabic", "de": "German",
    "fr": "French", "es": "Spanish", "pt": "Portuguese", "id": "Indonesian", "it": "Italian",
    "ko": "Korean", "ru": "Russian", "th": "Thai", "vi": "Vietnamese", "ja": "Japanese",
    "tr": "Turkish", "hi": "Hindi", "ms": "Malay", "nl": "Dutch", "sv": "Swedish",
    "da": "Danish", "fi": "Finnish", "pl": "Polish", "cs": "Czech", "fil": "Filipino",
    "fa": "Persian", "el": "Greek", "ro": "Romanian", "hu": "Hungarian", "mk": "Macedonian",
}  # fmt: skip
LANGUAGE_CODES = {name.lower(): code for code, name in QWEN_LANGUAGES.items()}


# --------------------------------------------------------------------------- argv (pure)


def image_argv(
    model: CliImageModel,
    executable: str,
    *,
    prompt: str,
    width: int,
    height: int,
    steps: int,
    seed: int,
    output: Path,
    negative_prompt: str | None = None,
    quantize: int | None = 8,
) -> list[str]:
    """The command line that makes one image with ``model``'s tool."""
    argv = [executable, *model.base_args, "--prompt", prompt]
    argv += ["--width", str(width), "--height", str(height)]
    argv += ["--steps", str(steps), "--seed", str(seed)]
    if model.tool == "diffusionkit":
        argv += ["--output-path", str(output)]
        if negative_prompt:
            argv += ["--negative_prompt", negative_prompt]
    else:
        if quantize is not None:
            argv += ["--quantize", str(quantize)]
        argv += ["--output", str(output)]
        if negative_prompt:
            argv += ["--negative-prompt", negative_prompt]
    return argv


def asr_argv(
    model: CliAsrModel,
    executable: str,
    *,
    audio: Path,
    output_dir: Path,
    language: str | None = None,
    context: str | None = None,
) -> list[str]:
    """The command line that transcribes ``audio`` into ``output_dir/<stem>.json``."""
    argv = [executable, str(audio), "--model", model.model_id]
    if language:
        argv += ["--language", language]
    if context:
        argv += ["--context", context]
    argv += ["-f", "json", "-o", str(output_dir), "--quiet", "--no-progress"]
    return argv


def qwen_language(language: str | None) -> str | None:
    """ISO code or English name -> the name Qwen3-ASR takes; BadRequest if unsupported."""
    if language is None or not language.strip():
        return None
    key = language.strip().lower()
    if key in QWEN_LANGUAGES:
        return QWEN_LANGUAGES[key]
    if key in LANGUAGE_CODES:
        return QWEN_LANGUAGES[LANGUAGE_CODES[key]]
    raise BadRequest(f"qwen3-asr does not support language {language!r}")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; BackendError if ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        raise BackendError("the image tool wrote a file that is not a PNG", retryable=False)
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def safe_filename(filename: str, default: str = "audio.wav") -> str:
    """A plain file name (no directories, no odd characters) that keeps the extension."""
    name = Path(filename or "").name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name[:100] if name else default


# --------------------------------------------------------------------------- running


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_cli(argv: Sequence[str], *, timeout: float, cwd: Path) -> tuple[bytes, bytes]:
    """Run one tool invocation; (stdout, stderr). Nonzero exit -> BackendError, too slow
    -> BackendTimeout (the tool and its children are killed)."""
    tool = Path(argv[0]).name
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise BackendError(f"cannot run {tool}: {exc}", retryable=False) from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise BackendTimeout(f"{tool} took longer than {timeout:g}s") from None
    except asyncio.CancelledError:
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip()[-_STDERR_TAIL:]
        raise BackendError(f"{tool} exited with status {proc.returncode}: {tail}", retryable=False)
    return out, err


_EXTRA_BIN_DIRS = (
    Path.home() / ".local" / "bin",
    Path("/opt/homebrew/bin"),
    Path("/usr/local/bin"),
)


def find_binary(name: str, which: Which) -> str | None:
    found = which(name)
    if found:
        return found
    for directory in _EXTRA_BIN_DIRS:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


# --------------------------------------------------------------------------- transcripts


def wav_seconds(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate() or 1)
    except (wave.Error, EOFError, OSError):
        return 0.0


def read_transcript(output_dir: Path, stem: str, stdout: bytes) -> dict[str, object]:
    """The JSON mlx-qwen3-asr wrote (``<stem>.json``, else any .json), else stdout text."""
    candidates = [output_dir / f"{stem}.json", *sorted(output_dir.glob("*.json"))]
    for path in candidates:
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BackendError(f"unreadable transcript {path.name}: {exc}") from None
            if isinstance(data, dict) and isinstance(data.get("text"), str):
                return data
    text = stdout.decode(errors="replace").strip()
    if text:
        return {"text": text}
    raise BackendError("mlx-qwen3-asr wrote no transcript", retryable=False)


def transcript_segments(data: Mapping[str, object]) -> list[dict[str, object]]:
    raw = data.get("segments")
    if not isinstance(raw, list):
        return []
    out: list[dict[str, object]] = []
    for i, seg in enumerate(raw):
        if isinstance(seg, dict):
            out.append(
                {
                    "id": i,
                    "start": float(seg.get("start", 0.0) or 0.0),
                    "end": float(seg.get("end", 0.0) or 0.0),
                    "text": str(seg.get("text", "")).strip(),
                }
            )
    return out
