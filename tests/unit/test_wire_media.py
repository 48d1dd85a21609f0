"""Image, transcription and model-management request parsing (herd/wire/media.py,
herd/wire/ollama_models.py): what is accepted, and the one-line 400 for the rest."""

from __future__ import annotations

from typing import Any

import pytest

from herd.errors import BadRequest
from herd.wire.media import (
    parse_generate_image_request,
    parse_image_generation_request,
    parse_size,
    parse_transcription_form,
)
from herd.wire.ollama_models import parse_delete_request, parse_pull_request, parse_show_request

# --- OpenAI images -----------------------------------------------------------------------


def test_openai_image_defaults_and_herd_extensions() -> None:
    req = parse_image_generation_request(
        {
            "prompt": "a fox",
            "model": "tiny-sd:random",
            "n": 3,
            "size": "512x256",
            "response_format": "url",
            "quality": "hd",
            "style": "vivid",
            "output_format": "png",
            "user": "bob",
            "seed": 4,
            "steps": 9,
            "negative_prompt": "blur",
            "metadata": {"tags": ["a"]},
            "fallback_models": ["other"],
            "unknown_future_field": 1,
        }
    )
    assert req.dimensions == (512, 256) and req.count == 3
    assert (req.seed, req.steps, req.negative_prompt) == (4, 9, "blur")
    assert req.body_tags == ["a"] and req.fallback_models == ["other"]
    bare = parse_image_generation_request(b'{"prompt": "x"}')
    assert bare.model is None and bare.count == 1 and bare.dimensions == (1024, 1024)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (None, (1024, 1024)),
        ("auto", (1024, 1024)),
        ("64x4096", (64, 4096)),
        ("256X128", (256, 128)),
    ],
)
def test_sizes(size: str | None, expected: tuple[int, int]) -> None:
    assert parse_size(size) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b"", "missing request body"),
        (b"[1]", "request body must be a JSON object"),
        ({"n": 1}, "prompt is required"),
        ({"prompt": "  "}, "prompt must not be empty"),
        ({"prompt": 3}, "prompt: Input should be a valid string"),
        ({"prompt": "x", "model": ""}, "model must not be empty"),
        ({"prompt": "x", "n": 0}, "n must be between 1 and 4"),
        ({"prompt": "x", "n": 5}, "n must be between 1 and 4"),
        ({"prompt": "x", "n": "2"}, "n: Input should be a valid integer"),
        ({"prompt": "x", "size": "1000x1000x3"}, "size must be 'auto' or WIDTHxHEIGHT"),
        ({"prompt": "x", "size": "60x64"}, "size must be"),
        ({"prompt": "x", "size": "8192x64"}, "size must be"),
        ({"prompt": "x", "size": "100x100"}, "multiples of 8"),
        ({"prompt": "x", "response_format": "png"}, "Invalid value for 'response_format'"),
        ({"prompt": "x", "output_format": "webp"}, "output_format 'webp' is not supported"),
        ({"prompt": "x", "output_compression": 101}, "output_compression must be between"),
        ({"prompt": "x", "quality": "ultra"}, "quality: Input should be"),
        ({"prompt": "x", "stream": True}, "streaming image generation is not supported"),
        ({"prompt": "x", "steps": 0}, "steps must be between 1 and 100"),
        ({"prompt": "x", "metadata": {"tags": [1]}}, "tags must be a list of strings"),
    ],
)
def test_openai_image_rejections(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_image_generation_request(body)
    assert message in err.value.message


# --- herd /api/generate-image --------------------------------------------------------


def test_generate_image_fields_as_in_the_seed() -> None:
    req = parse_generate_image_request(
        b'{"model": "z-image-turbo", "prompt": "a sunset", "width": 1024, "height": 768}'
    )
    assert (req.model, req.width, req.height, req.steps, req.seed) == (
        "z-image-turbo",
        1024,
        768,
        None,
        None,
    )
    assert parse_generate_image_request({"model": "m", "prompt": "p"}).width == 1024


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "p"}, "model is required"),
        ({"model": " ", "prompt": "p"}, "model is required"),
        ({"model": "m"}, "prompt is required"),
        ({"model": "m", "prompt": "p", "width": 63}, "width must be between 64 and 4096"),
        ({"model": "m", "prompt": "p", "height": 100}, "height must be between"),
        ({"model": "m", "prompt": "p", "width": 512.0}, "width: Input should be a valid integer"),
        ({"model": "m", "prompt": "p", "seed": "1"}, "seed: Input should be a valid integer"),
    ],
)
def test_generate_image_rejections(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_generate_image_request(body)
    assert message in err.value.message


# --- transcription forms ---------------------------------------------------------------


def test_transcription_form_as_openai_python_sends_it() -> None:
    fields = {
        "model": ["whisper:tiny.en"],
        "language": ["EN"],
        "prompt": ["llamas"],
        "response_format": ["verbose_json"],
        "temperature": ["0.2"],
        "timestamp_granularities[]": ["segment"],
        "user": ["carol"],
        "metadata[tags][]": ["App-One", "two, three"],
        "fallback_models[]": ["tiny.en"],
        "include[]": ["logprobs"],
    }
    req = parse_transcription_form(fields, b"RIFF", "talk.wav")
    assert (req.model, req.language, req.prompt) == ("whisper:tiny.en", "en", "llamas")
    assert req.response_format == "verbose_json" and req.temperature == 0.2
    assert req.tags == ("App-One", "two", "three") and req.fallback_models == ("tiny.en",)
    assert (req.audio, req.filename, req.user) == (b"RIFF", "talk.wav", "carol")


def test_transcription_form_defaults() -> None:
    req = parse_transcription_form({"model": ["m"], "language": [""]}, b"x", None)
    assert req.response_format == "json" and req.language is None and req.filename == "audio"
    assert req.tags == () and req.prompt is None


@pytest.mark.parametrize(
    ("fields", "audio", "message"),
    [
        ({}, b"x", "model is required"),
        ({"model": [""]}, b"x", "model is required"),
        ({"model": ["m"]}, None, "file is required"),
        ({"model": ["m"]}, b"", "the audio file is empty"),
        ({"model": ["m"], "response_format": ["diarized_json"]}, b"x", "is not supported"),
        ({"model": ["m"], "temperature": ["2"]}, b"x", "temperature must be between 0 and 1"),
        ({"model": ["m"], "temperature": ["warm"]}, b"x", "temperature: Input should be"),
        ({"model": ["m"], "stream": ["true"]}, b"x", "streaming transcription is not supported"),
        ({"model": ["m"], "timestamp_granularities[]": ["word"]}, b"x", "word timestamps"),
        ({"model": ["m"], "timestamp_granularities[]": ["line"]}, b"x", "must be 'segment'"),
        ({"model": ["m"], "language": ["english"]}, b"x", "ISO-639-1"),
    ],
)
def test_transcription_form_rejections(
    fields: dict[str, list[str]], audio: bytes | None, message: str
) -> None:
    with pytest.raises(BadRequest) as err:
        parse_transcription_form(fields, audio, "a.wav")
    assert message in err.value.message


# --- show / pull / delete ------------------------------------------------------------------


def test_model_management_bodies() -> None:
    assert parse_show_request(b'{"model": "x", "verbose": true}').target == "x"
    assert parse_show_request({"name": "old-client"}).target == "old-client"
    pull = parse_pull_request({"model": "m", "node": "beta", "insecure": True})
    assert pull.streaming and pull.node == "beta" and pull.insecure
    assert not parse_pull_request({"model": "m", "stream": False}).streaming
    assert parse_delete_request({"model": "m", "node": "a"}).node == "a"


@pytest.mark.parametrize(
    ("parse", "body", "message"),
    [
        (parse_show_request, {}, "model is required"),
        (parse_show_request, {"model": 1}, "model: Input should be a valid string"),
        (parse_pull_request, {"model": "m", "stream": "no"}, "stream: Input should be"),
        (parse_pull_request, b"{", "invalid JSON"),
        (parse_delete_request, {"name": "  "}, "model is required"),
        (parse_delete_request, b"", "missing request body"),
    ],
)
def test_model_management_rejections(parse: Any, body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse(body)
    assert message in err.value.message
