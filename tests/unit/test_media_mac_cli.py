"""The macOS engines at their command-line boundary.

The argv builders are pure and tested against tables. Then stand-in executables, put on
PATH in a temporary directory under the real command names, prove the subprocess path
end to end: detection finds them, the engine runs them with that argv, reads the PNG or
the transcript they write, and maps exit codes and hangs to herd errors. (mflux,
DiffusionKit and mlx-qwen3-asr need Apple Silicon, so the stand-ins are the boundary.)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest

from herd.backends.mac_cli import (
    ASR_MODELS,
    IMAGE_MODELS,
    asr_argv,
    image_argv,
    png_size,
    qwen_language,
    read_transcript,
    safe_filename,
)
from herd.backends.mac_engines import (
    MacImageCliEngine,
    MacQwenAsrEngine,
    detect_mac_asr,
    detect_mac_image,
)
from herd.errors import BackendError, BackendTimeout, BadRequest
from herd.settings import load_settings

MODEL = {m.name: m for m in IMAGE_MODELS}
OUT = Path("/tmp/job/image.png")


@pytest.mark.parametrize(
    ("name", "extra", "expected"),
    [
        (
            "z-image-turbo",
            {},
            ["mflux-generate-z-image-turbo", "--prompt", "a fox", "--width", "512",
             "--height", "256", "--steps", "9", "--seed", "7", "--quantize", "8",
             "--output", str(OUT)],
        ),
        (
            "flux-dev",
            {"negative_prompt": "blurry"},
            ["mflux-generate", "--model", "dev", "--prompt", "a fox", "--width", "512",
             "--height", "256", "--steps", "9", "--seed", "7", "--quantize", "8",
             "--output", str(OUT), "--negative-prompt", "blurry"],
        ),
        (
            "flux-schnell",
            {"quantize": None},
            ["mflux-generate", "--model", "schnell", "--prompt", "a fox", "--width", "512",
             "--height", "256", "--steps", "9", "--seed", "7", "--output", str(OUT)],
        ),
        (
            "sd3-medium",
            {"negative_prompt": "text"},
            ["diffusionkit-cli", "--model-version", "argmaxinc/mlx-stable-diffusion-3-medium",
             "--prompt", "a fox", "--width", "512", "--height", "256", "--steps", "9",
             "--seed", "7", "--output-path", str(OUT), "--negative_prompt", "text"],
        ),
        (
            "sd3.5-large",
            {},
            ["diffusionkit-cli", "--model-version", "argmaxinc/mlx-stable-diffusion-3.5-large",
             "--t5", "--prompt", "a fox", "--width", "512", "--height", "256", "--steps", "9",
             "--seed", "7", "--output-path", str(OUT)],
        ),
    ],
)  # fmt: skip
def test_image_argv(name: str, extra: dict[str, Any], expected: list[str]) -> None:
    model = MODEL[name]
    argv = image_argv(
        model, model.binary, prompt="a fox", width=512, height=256, steps=9, seed=7,
        output=OUT, **extra,
    )  # fmt: skip
    assert argv == expected


@pytest.mark.parametrize(
    ("model", "extra", "expected"),
    [
        (
            0,
            {},
            ["mlx-qwen3-asr", "/j/a.wav", "--model", "Qwen/Qwen3-ASR-0.6B",
             "-f", "json", "-o", "/j/out", "--quiet", "--no-progress"],
        ),
        (
            1,
            {"language": "English", "context": "herd fleet"},
            ["mlx-qwen3-asr", "/j/a.wav", "--model", "Qwen/Qwen3-ASR-1.7B",
             "--language", "English", "--context", "herd fleet",
             "-f", "json", "-o", "/j/out", "--quiet", "--no-progress"],
        ),
    ],
)  # fmt: skip
def test_asr_argv(model: int, extra: dict[str, str], expected: list[str]) -> None:
    argv = asr_argv(
        ASR_MODELS[model], "mlx-qwen3-asr", audio=Path("/j/a.wav"), output_dir=Path("/j/out"),
        **extra,
    )  # fmt: skip
    assert argv == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, None), ("", None), ("en", "English"), ("ZH", "Chinese"), ("yue", "Cantonese"),
     ("japanese", "Japanese"), ("Filipino", "Filipino")],
)  # fmt: skip
def test_qwen_language(given: str | None, expected: str | None) -> None:
    assert qwen_language(given) == expected


@pytest.mark.parametrize("given", ["xx", "Klingon", "en-US"])
def test_qwen_language_unsupported(given: str) -> None:
    with pytest.raises(BadRequest, match="does not support language"):
        qwen_language(given)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("meeting.wav", "meeting.wav"), ("../../etc/passwd", "passwd"), ("", "audio.wav"),
     ("my talk (final).mp3", "my_talk__final_.mp3"), (".hidden.ogg", "hidden.ogg")],
)  # fmt: skip
def test_safe_filename(given: str, expected: str) -> None:
    assert safe_filename(given) == expected


def make_png(width: int, height: int) -> bytes:
    """A valid grey PNG, written by hand (the stand-in tools use the same encoder)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_png_size() -> None:
    assert png_size(make_png(48, 16)) == (48, 16)
    with pytest.raises(BackendError, match="not a PNG"):
        png_size(b"GIF89a" + b"\0" * 40)


def test_read_transcript(tmp_path: Path) -> None:
    (tmp_path / "talk.json").write_text(json.dumps({"text": " hi ", "language": "English"}))
    assert read_transcript(tmp_path, "talk", b"")["text"] == " hi "
    other = tmp_path / "other"
    other.mkdir()
    assert read_transcript(other, "talk", b"from stdout\n") == {"text": "from stdout"}
    with pytest.raises(BackendError, match="wrote no transcript"):
        read_transcript(other, "talk", b"")
    (other / "talk.json").write_text("{not json")
    with pytest.raises(BackendError, match="unreadable transcript"):
        read_transcript(other, "talk", b"")


# --------------------------------------------------------------------------- stand-ins

STAND_IN = textwrap.dedent(
    '''\
    #!{python}
    """Stand-in for mflux / DiffusionKit / mlx-qwen3-asr: same flags, same outputs."""
    import json, os, sys, time, zlib
    from pathlib import Path

    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    with open(os.environ["HERD_FAKE_LOG"], "a") as log:
        log.write(json.dumps({{"tool": name, "argv": args, "pid": os.getpid()}}) + "\\n")

    def flag(option, default=None):
        return args[args.index(option) + 1] if option in args else default

    if flag("--prompt") == "fail" or "fail.wav" in args[0]:
        print("Error: Metal device lost", file=sys.stderr)
        sys.exit(3)
    if flag("--prompt") == "hang":
        time.sleep(60)

    if name == "mlx-qwen3-asr":
        audio = Path(args[0])
        language = flag("--language", "English")
        text = f"{{len(audio.read_bytes())}} bytes of {{language}} speech"
        if flag("--context"):
            text += " about " + flag("--context")
        out = Path(flag("-o")) / (audio.stem + ".json")
        segs = [{{"text": "bytes", "start": 0.0, "end": 1.25}}]
        out.write_text(json.dumps({{"text": text, "language": language, "segments": segs}}))
        sys.exit(0)

    width, height = int(flag("--width")), int(flag("--height"))
    def chunk(kind, data):
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    rows = b"".join(b"\\x00" + bytes([int(flag("--seed")) % 256]) * width for _ in range(height))
    png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header)
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    output = flag("--output-path") if name == "diffusionkit-cli" else flag("--output")
    if flag("--prompt") != "no file":
        Path(output).write_bytes(png)
    '''
)

COMMANDS = ("mflux-generate-z-image-turbo", "mflux-generate", "diffusionkit-cli", "mlx-qwen3-asr")


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-ins on PATH; returns the log file each run appends its argv to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = STAND_IN.format(python=sys.executable)
    for command in COMMANDS:
        path = bin_dir / command
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.jsonl"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HERD_FAKE_LOG", str(log))
    return log


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def image_engine(tool: str, timeout: float = 30.0) -> MacImageCliEngine:
    settings = load_settings(node={"image_timeout": timeout})
    engine = detect_mac_image(tool, settings, platform="darwin", which=shutil.which)  # type: ignore[arg-type]
    assert engine is not None, f"{tool} stand-in not found on PATH"
    return engine


@pytest.mark.parametrize(
    ("tool", "model", "steps", "default_steps"),
    [
        ("mflux", "z-image-turbo", None, 9),
        ("mflux", "flux-schnell", 2, 4),
        ("diffusionkit", "sd3-medium", None, 28),
        ("diffusionkit", "sd3.5-large", 10, 28),
    ],
)
async def test_image_through_the_command_line(
    tools: Path, tool: str, model: str, steps: int | None, default_steps: int
) -> None:
    engine = image_engine(tool)
    result = await engine.generate(
        model, "a sunset over mountains", width=320, height=192, steps=steps, seed=42,
        negative_prompt="text",
    )  # fmt: skip
    assert result.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert (result.width, result.height) == (320, 192) == png_size(result.png)
    assert (result.seed, result.steps, result.model) == (42, steps or default_steps, model)
    assert result.load_s == 0.0 and result.total_s > 0
    (call,) = calls(tools)
    entry = MODEL[model]
    assert call["tool"] == entry.binary
    output = call["argv"][
        call["argv"].index("--output-path" if tool == "diffusionkit" else "--output") + 1
    ]
    assert call["argv"] == image_argv(
        entry, entry.binary, prompt="a sunset over mountains", width=320, height=192,
        steps=steps or default_steps, seed=42, output=Path(output), negative_prompt="text",
    )[1:]  # fmt: skip
    assert not await asyncio.to_thread(Path(output).exists)  # the job's temp dir is gone


async def test_a_random_seed_is_reported(tools: Path) -> None:
    engine = image_engine("mflux")
    result = await engine.generate(
        "flux-dev", "x", width=64, height=64, steps=1, seed=None, negative_prompt=None
    )
    (call,) = calls(tools)
    assert call["argv"][call["argv"].index("--seed") + 1] == str(result.seed)


@pytest.mark.parametrize(
    ("prompt", "error", "message"),
    [
        ("fail", BackendError, "exited with status 3: Error: Metal device lost"),
        ("no file", BackendError, "wrote no image"),
    ],
)
async def test_image_tool_failures(
    tools: Path, prompt: str, error: type[Exception], message: str
) -> None:
    engine = image_engine("mflux")
    with pytest.raises(error, match=message):
        await engine.generate(
            "flux-dev", prompt, width=64, height=64, steps=1, seed=1, negative_prompt=None
        )


async def test_a_hung_tool_is_killed_at_the_timeout(tools: Path) -> None:
    engine = image_engine("diffusionkit", timeout=1.0)
    with pytest.raises(BackendTimeout, match="diffusionkit-cli took longer than 1s"):
        await engine.generate(
            "sd3-medium", "hang", width=64, height=64, steps=1, seed=1, negative_prompt=None
        )
    (call,) = calls(tools)
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(call["pid"], 0)


def asr_engine() -> MacQwenAsrEngine:
    engine = detect_mac_asr(load_settings(), platform="darwin", which=shutil.which)
    assert engine is not None, "mlx-qwen3-asr stand-in not found on PATH"
    return engine


async def test_transcription_through_the_command_line(tools: Path) -> None:
    engine = asr_engine()
    audio = b"RIFF" + b"\0" * 96
    result = await engine.transcribe(
        "qwen3-asr", audio, filename="../Meeting Notes.mp3", language="de", prompt="herd"
    )
    assert result.text == "100 bytes of German speech about herd"
    assert result.language == "de"
    assert result.segments == [{"id": 0, "start": 0.0, "end": 1.25, "text": "bytes"}]
    assert result.duration_s == 1.25  # from the segments: not a readable WAV
    (call,) = calls(tools)
    assert call["tool"] == "mlx-qwen3-asr"
    audio_path = Path(call["argv"][0])
    assert audio_path.name == "Meeting_Notes.mp3"
    assert call["argv"] == asr_argv(
        ASR_MODELS[0], "x", audio=audio_path, output_dir=audio_path.parent / "out",
        language="German", context="herd",
    )[1:]  # fmt: skip
    assert not await asyncio.to_thread(audio_path.exists)


async def test_transcription_tool_failure(tools: Path) -> None:
    with pytest.raises(BackendError, match="mlx-qwen3-asr exited with status 3"):
        await asr_engine().transcribe(
            "qwen3-asr:1.7b", b"RIFF", filename="fail.wav", language=None, prompt=None
        )
