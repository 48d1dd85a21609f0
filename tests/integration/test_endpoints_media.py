"""Images and speech-to-text through the fleet, on real engines (the ``gemma`` node runs
the tiny random diffusers pipeline and faster-whisper tiny.en), judged by the official
openai client, plain HTTP for herd's own endpoints, and the Python actor client."""

from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

IMAGE_MODEL = "tiny-sd:random"
ASR_MODEL = "whisper:tiny.en"
SPOKEN = "The quick brown fox jumps over the lazy dog"
BIG = 65 * 1024 * 1024  # over the default FLEET_MAX_BODY_BYTES (64 MiB)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WAV of a known sentence, spoken by espeak-ng."""
    path = tmp_path_factory.mktemp("audio") / "fox.wav"
    subprocess.run(["espeak-ng", "-w", str(path), SPOKEN], check=True, timeout=60)
    return path


@pytest.fixture
def oai(endpoint: str) -> Any:
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="not-needed", max_retries=0)
    yield client
    client.close()


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


# --- images ------------------------------------------------------------------------------


def test_openai_images_generate_b64(oai: Any) -> None:
    raw = oai.images.with_raw_response.generate(
        model=IMAGE_MODEL, prompt="a red fox", size="256x256", response_format="b64_json"
    )
    result = raw.parse()
    assert raw.headers["x-herd-node"] == "gemma"
    assert raw.headers["x-herd-model"] == IMAGE_MODEL
    assert result.created > 0 and len(result.data) == 1
    assert png_size(base64.b64decode(result.data[0].b64_json)) == (256, 256)


def test_openai_images_url_n_and_custom_size(oai: Any) -> None:
    result = oai.images.generate(
        model=IMAGE_MODEL,
        prompt="two foxes",
        size="64x128",
        n=2,
        response_format="url",
        extra_body={"seed": 7, "steps": 2},
    )
    assert len(result.data) == 2
    images = []
    for item in result.data:
        assert item.url.startswith("data:image/png;base64,")
        images.append(base64.b64decode(item.url.split(",", 1)[1]))
        assert png_size(images[-1]) == (64, 128)
    assert images[0] != images[1]  # seeds 7 and 8


def test_openai_images_default_model_is_the_fleets_image_model(oai: Any) -> None:
    raw = oai.images.with_raw_response.generate(prompt="a meadow", size="64x64")
    assert raw.headers["x-herd-model"] == IMAGE_MODEL
    assert png_size(base64.b64decode(raw.parse().data[0].b64_json)) == (64, 64)


def test_generate_image_endpoint_returns_png(endpoint: str) -> None:
    body = {
        "model": IMAGE_MODEL,
        "prompt": "a sunset over mountains",
        "width": 128,
        "height": 64,
        "seed": 42,
        "steps": 2,
    }
    r = httpx.post(f"{endpoint}/api/generate-image", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-herd-node"] == "gemma"
    assert r.headers["x-herd-image-seed"] == "42"
    assert png_size(r.content) == (128, 64)
    again = httpx.post(f"{endpoint}/api/generate-image", json=body, timeout=120)
    assert again.content == r.content  # same seed, same image


# --- speech-to-text ----------------------------------------------------------------------


def test_openai_transcription_json(oai: Any, speech: Path) -> None:
    with speech.open("rb") as audio:
        raw = oai.audio.transcriptions.with_raw_response.create(model=ASR_MODEL, file=audio)
    text = raw.parse().text
    assert raw.headers["x-herd-node"] == "gemma"
    assert {"quick", "brown", "fox", "lazy", "dog"} <= words(text), text


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt", "verbose_json"])
def test_openai_transcription_formats(oai: Any, speech: Path, fmt: str) -> None:
    with speech.open("rb") as audio:
        result = oai.audio.transcriptions.create(
            model=ASR_MODEL,
            file=audio,
            response_format=fmt,
            language="en",
            timestamp_granularities=["segment"] if fmt == "verbose_json" else openai.omit,
        )
    if fmt == "verbose_json":
        assert result.language == "english" and result.duration > 1.0
        assert result.segments and result.segments[0].end > result.segments[0].start
        assert "fox" in words(result.text)
        return
    assert isinstance(result, str) and "fox" in result.lower()
    if fmt == "srt":
        assert result.startswith("1\n00:00:00,000 --> ")
    if fmt == "vtt":
        assert result.startswith("WEBVTT\n\n00:00:00.000 --> ")


def test_transcribe_endpoint(endpoint: str, speech: Path) -> None:
    files = {"file": ("fox.wav", speech.read_bytes(), "audio/wav")}
    r = httpx.post(
        f"{endpoint}/api/transcribe",
        files=files,
        data={"model": "tiny.en", "language": "en"},
        headers={"X-Herd-Tags": "stt-test"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny.en" and body["language"] == "en"
    assert "fox" in words(body["text"]) and body["duration"] > 1.0
    assert body["segments"] and body["total_duration"] > 0


def test_python_client_image_and_transcribe(fleet: Any, speech: Path) -> None:
    from actors.client import connect_client

    client = connect_client(fleet.cluster.address, settings=fleet.settings)
    try:
        image = client.image(IMAGE_MODEL, "a fox", width=64, height=64, steps=1, seed=1)
        assert png_size(image["image"]) == (64, 64) and image["herd"]["node"] == "gemma"
        heard = client.transcribe(ASR_MODEL, speech.read_bytes(), filename="fox.wav")
        assert "fox" in words(heard["text"]) and heard["herd"]["node"] == "gemma"
    finally:
        client.close()


# --- bad input: the dialect's error body, the right status, never a 500 ------------------

IMAGE_BAD: list[tuple[str, Any, int]] = [
    ("/v1/images/generations", b"{not json", 400),
    ("/v1/images/generations", {"model": IMAGE_MODEL}, 400),  # no prompt
    ("/v1/images/generations", {"model": IMAGE_MODEL, "prompt": 7}, 400),
    ("/v1/images/generations", {"model": IMAGE_MODEL, "prompt": "x", "size": "100x7"}, 400),
    ("/v1/images/generations", {"model": IMAGE_MODEL, "prompt": "x", "size": "big"}, 400),
    ("/v1/images/generations", {"model": IMAGE_MODEL, "prompt": "x", "n": 11}, 400),
    ("/v1/images/generations", {"model": IMAGE_MODEL, "prompt": "x", "n": 0}, 400),
    (
        "/v1/images/generations",
        {"model": IMAGE_MODEL, "prompt": "x", "response_format": "png"},
        400,
    ),
    ("/v1/images/generations", {"model": IMAGE_MODEL, "prompt": "x", "stream": True}, 400),
    (
        "/v1/images/generations",
        {"model": IMAGE_MODEL, "prompt": "x", "output_format": "jpeg"},
        400,
    ),
    ("/v1/images/generations", {"model": "tiny:1b", "prompt": "x", "size": "64x64"}, 400),
    ("/v1/images/generations", {"model": "nope:1b", "prompt": "x"}, 404),
    ("/api/generate-image", b"[1, 2", 400),
    ("/api/generate-image", {"prompt": "x"}, 400),  # no model
    ("/api/generate-image", {"model": IMAGE_MODEL, "prompt": "x", "width": 65}, 400),
    ("/api/generate-image", {"model": IMAGE_MODEL, "prompt": "x", "width": "64"}, 400),
    ("/api/generate-image", {"model": IMAGE_MODEL, "prompt": "x", "steps": 0}, 400),
    ("/api/generate-image", {"model": "tiny:1b", "prompt": "x", "width": 64, "height": 64}, 400),
    ("/api/generate-image", {"model": "nope:1b", "prompt": "x"}, 404),
]


def assert_dialect_error(path: str, r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    if path.startswith("/v1/"):
        assert error["message"] and error["type"]
        if status == 404:
            assert error["code"] == "model_not_found"
    else:
        assert isinstance(error, str) and error


@pytest.mark.parametrize(("path", "body", "status"), IMAGE_BAD)
def test_image_bad_input(endpoint: str, path: str, body: Any, status: int) -> None:
    if isinstance(body, bytes):
        r = httpx.post(f"{endpoint}{path}", content=body, timeout=60)
    else:
        r = httpx.post(f"{endpoint}{path}", json=body, timeout=60)
    assert_dialect_error(path, r, status)


TRANSCRIBE_PATHS = ["/v1/audio/transcriptions", "/api/transcribe"]


def _form_cases(wav: bytes) -> list[tuple[dict[str, Any], dict[str, Any] | None, int]]:
    fox = {"file": ("fox.wav", wav, "audio/wav")}
    return [
        ({"model": ASR_MODEL}, None, 400),  # no file
        ({"model": ASR_MODEL}, {"file": ("empty.wav", b"", "audio/wav")}, 400),
        ({}, fox, 400),  # no model
        ({"model": ASR_MODEL, "response_format": "diarized_json"}, fox, 400),
        ({"model": ASR_MODEL, "timestamp_granularities[]": "word"}, fox, 400),
        ({"model": ASR_MODEL, "temperature": "hot"}, fox, 400),
        ({"model": ASR_MODEL, "language": "English!"}, fox, 400),
        ({"model": ASR_MODEL}, {"file": ("noise.wav", b"not audio at all", "audio/wav")}, 400),
        ({"model": "tiny:1b"}, fox, 400),  # not a speech-to-text model
        ({"model": "nope:1b"}, fox, 404),
    ]


@pytest.mark.parametrize("path", TRANSCRIBE_PATHS)
def test_transcription_bad_input(endpoint: str, speech: Path, path: str) -> None:
    for data, files, status in _form_cases(speech.read_bytes()):
        if files is None:  # a form without the file part
            r = httpx.post(f"{endpoint}{path}", files={"x": ("a", b"1")}, data=data, timeout=60)
        else:
            r = httpx.post(f"{endpoint}{path}", files=files, data=data, timeout=60)
        assert_dialect_error(path, r, status)
    for body in (b'{"model": "whisper:tiny.en"}', b"{bad"):  # not multipart at all
        r = httpx.post(
            f"{endpoint}{path}", content=body, headers={"content-type": "application/json"}
        )
        assert_dialect_error(path, r, 400)


@pytest.fixture(scope="module")
def big() -> bytes:
    return b"x" * BIG


@pytest.mark.parametrize("path", ["/v1/images/generations", "/api/generate-image"])
def test_image_oversized_body_is_413(endpoint: str, big: bytes, path: str) -> None:
    body = b'{"model":"tiny-sd:random","prompt":"' + big + b'"}'
    r = httpx.post(f"{endpoint}{path}", content=body, timeout=120)
    assert_dialect_error(path, r, 413)


@pytest.mark.parametrize("path", TRANSCRIBE_PATHS)
def test_transcription_oversized_body_is_413(endpoint: str, big: bytes, path: str) -> None:
    files = {"file": ("big.wav", big, "audio/wav")}
    r = httpx.post(f"{endpoint}{path}", files=files, data={"model": ASR_MODEL}, timeout=120)
    assert_dialect_error(path, r, 413)
