"""Media conversions (herd/convert/media.py, herd/convert/ollama_show.py) and the choice of
nodes for model management (herd/routing/model_targets.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from herd.convert.media import (
    herd_transcription,
    image_headers,
    image_request,
    language_name,
    openai_images_body,
    openai_transcription,
    srt,
    transcribe_request,
    transcript_segments,
    vtt,
)
from herd.convert.ollama_show import capabilities, show_body
from herd.domain import ModelOnDisk
from herd.errors import BadRequest, ModelNotFound, NoCapacity, NodeUnavailable
from herd.routing import model_targets as model_ops
from herd.wire.media import (
    parse_generate_image_request,
    parse_image_generation_request,
    parse_transcription_form,
)

META: dict[str, Any] = {"request_id": "r1", "received_at": 5.0}

# --- requests ----------------------------------------------------------------------------


def test_openai_image_request_per_index() -> None:
    parsed = parse_image_generation_request(
        {
            "prompt": "fox",
            "size": "128x64",
            "seed": 10,
            "user": "u1",
            "metadata": {"tags": ["App"]},
            "fallback_models": ["b", "tiny-sd:random", "b"],
        }
    )
    first = image_request(
        parsed, model="tiny-sd:random", dialect="openai", header_tags="h", client="ip", **META
    )
    second = image_request(parsed, model="tiny-sd:random", dialect="openai", index=1, **META)
    assert first.kind == "image" and not first.stream
    assert first.body == {"prompt": "fox", "width": 128, "height": 64, "seed": 10}
    assert first.request_id == "r1" and second.request_id == "r1-1"
    assert second.body["seed"] == 11
    assert first.tags == ("app", "h") and first.client == "u1"
    assert first.fallback_models == ("b",)


def test_herd_image_request() -> None:
    parsed = parse_generate_image_request(
        {
            "model": "m",
            "prompt": "p",
            "width": 64,
            "height": 128,
            "steps": 3,
            "negative_prompt": "n",
        }
    )
    req = image_request(parsed, model="m", dialect="ollama", client="10.0.0.1", **META)
    assert req.body == {
        "prompt": "p",
        "width": 64,
        "height": 128,
        "steps": 3,
        "negative_prompt": "n",
    }
    assert req.client == "10.0.0.1" and req.dialect == "ollama"


def test_transcribe_request() -> None:
    parsed = parse_transcription_form(
        {"model": ["w"], "language": ["en"], "user": ["dan"], "tags": ["x"]}, b"abc", "a.mp3"
    )
    req = transcribe_request(parsed, dialect="openai", header_tags="Y", client="ip", **META)
    assert req.kind == "transcribe" and req.model == "w"
    assert req.body == {"audio": b"abc", "filename": "a.mp3", "language": "en"}
    assert req.tags == ("x", "y") and req.client == "dan"


# --- image responses -----------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\nfake"


def test_openai_images_body_b64_and_url() -> None:
    results = [{"image": PNG}, {"image": PNG + b"2"}]
    body = openai_images_body(results, created=7, response_format=None)
    assert body["created"] == 7 and body["output_format"] == "png"
    assert [base64.b64decode(d["b64_json"]) for d in body["data"]] == [PNG, PNG + b"2"]
    url = openai_images_body(results[:1], created=7, response_format="url")["data"][0]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == PNG


def test_image_headers() -> None:
    headers = image_headers({"width": 64, "height": 32, "seed": 5, "steps": 2})
    assert headers["X-Herd-Image-Seed"] == "5" and headers["X-Herd-Image-Width"] == "64"


# --- transcripts ---------------------------------------------------------------------------

RESULT: dict[str, Any] = {
    "text": " Hello there. General Kenobi. ",
    "language": "en",
    "duration": 3725.5,
    "segments": [
        {"id": 1, "start": 0.0, "end": 1.25, "text": " Hello there."},
        {"id": 2, "start": 3723.0, "end": 3725.5, "text": " General Kenobi."},
    ],
    "total_duration": 2_000_000_000,
    "load_duration": 0,
}


def test_srt_and_vtt() -> None:
    segments = transcript_segments(RESULT)
    assert srt(segments) == (
        "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n"
        "2\n01:02:03,000 --> 01:02:05,500\nGeneral Kenobi.\n"
    )
    assert vtt(segments) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n\n"
        "01:02:03.000 --> 01:02:05.500\nGeneral Kenobi.\n"
    )


def test_segments_when_the_engine_gave_none() -> None:
    assert transcript_segments({"text": "hi", "duration": 2.0}) == [
        {"id": 0, "start": 0.0, "end": 2.0, "text": "hi"}
    ]
    assert transcript_segments({"text": "  ", "duration": 2.0}) == []


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [
        ("json", "application/json"),
        ("verbose_json", "application/json"),
        ("text", "text/plain; charset=utf-8"),
        ("srt", "text/plain; charset=utf-8"),
        ("vtt", "text/vtt; charset=utf-8"),
    ],
)
def test_openai_transcription_formats(fmt: str, media_type: str) -> None:
    body, kind = openai_transcription(RESULT, fmt)
    assert kind == media_type
    if fmt == "json":
        assert body == {
            "text": "Hello there. General Kenobi.",
            "usage": {"type": "duration", "seconds": 3725.5},
        }
    elif fmt == "verbose_json":
        assert body["language"] == "english" and body["duration"] == 3725.5
        assert body["task"] == "transcribe" and len(body["segments"]) == 2
        seg = body["segments"][0]
        assert seg["id"] == 1 and seg["seek"] == 0 and seg["tokens"] == []
        assert seg["text"] == " Hello there."
    elif fmt == "text":
        assert body == "Hello there. General Kenobi.\n"
    else:
        assert isinstance(body, str) and "-->" in body


def test_language_names() -> None:
    assert language_name("en") == "english" and language_name("DE") == "german"
    assert language_name("xx") == "xx" and language_name("") == ""


def test_herd_transcription_body() -> None:
    body = herd_transcription(RESULT, "whisper:tiny.en")
    assert body["model"] == "whisper:tiny.en" and body["text"] == "Hello there. General Kenobi."
    assert body["total_duration"] == 2_000_000_000 and "load_duration" not in body
    assert body["segments"][1]["start"] == 3723.0


# --- /api/show bodies ------------------------------------------------------------------------


def test_show_body_for_an_engine_model() -> None:
    model = ModelOnDisk(
        name="all-minilm:l6-v2",
        size=9,
        family="bert",
        quantization_level="F32",
        category="embedding",
    )
    body = show_body(model, engine="sentence-transformers")
    assert body["capabilities"] == ["embedding"]
    assert body["model_info"]["general.architecture"] == "bert"
    assert body["details"]["format"] == "sentence-transformers"
    assert body["modified_at"] == "1970-01-01T00:00:00Z"
    llm = show_body(ModelOnDisk(name="gemma3:270m"), engine="llamacpp", context_length=8192)
    assert llm["model_info"]["llamacpp.context_length"] == 8192
    assert llm["details"]["format"] == "gguf" and llm["capabilities"] == ["completion"]
    assert capabilities("asr") == ["transcription"] and capabilities("image") == ["image"]


# --- model_ops -------------------------------------------------------------------------------


def node(node_id: str, **over: Any) -> dict[str, Any]:
    base = {
        "node_id": node_id,
        "status": "online",
        "backend": "ollama",
        "backend_ok": True,
        "draining": False,
        "memory_available": 1000,
        "models": [],
    }
    return {**base, **over}


CATALOG = [
    {"model": {"name": "tiny:1b", "category": "llm"}, "nodes": ["a", "b", "c"], "loaded_on": ["c"]},
    {"model": {"name": "sd:1", "category": "image"}, "nodes": ["a"], "loaded_on": []},
    {"model": {"name": "sd:2", "category": "image"}, "nodes": ["b"], "loaded_on": ["b"]},
    {"model": {"name": "only-loaded:1b", "size": 3}, "nodes": ["a"], "loaded_on": ["a"]},
]


def test_holders_loaded_first() -> None:
    assert model_ops.holders(CATALOG, "TINY:1b") == ["c", "a", "b"]
    assert model_ops.holders(CATALOG, "nope") == []
    assert model_ops.show_targets(CATALOG, "tiny:1b")[0] == "c"
    with pytest.raises(ModelNotFound):
        model_ops.show_targets(CATALOG, "nope:1b")


def test_pull_goes_to_the_roomiest_ollama_node_without_the_model() -> None:
    nodes = [
        node("a", memory_available=5000, models=["fresh:1b"]),
        node("b", memory_available=3000),
        node("c", memory_available=4000),
        node("d", memory_available=9000, backend="llamacpp"),
        node("e", memory_available=9000, draining=True),
        node("f", memory_available=9000, status="degraded"),
    ]
    assert model_ops.pick_pull_node(nodes, "FRESH:1b") == "c"
    assert model_ops.pick_pull_node(nodes, "other:1b") == "a"
    assert model_ops.pick_pull_node(nodes, "fresh:1b", named="a") == "a"


@pytest.mark.parametrize(
    ("named", "error"),
    [("zz", BadRequest), ("d", BadRequest), ("f", NodeUnavailable)],
)
def test_pull_to_a_named_node_that_cannot(named: str, error: type[Exception]) -> None:
    nodes = [node("a"), node("d", backend="llamacpp"), node("f", status="offline")]
    with pytest.raises(error):
        model_ops.pick_pull_node(nodes, "m", named=named)


def test_pull_with_no_usable_node() -> None:
    with pytest.raises(NoCapacity):
        model_ops.pick_pull_node([node("d", backend="llamacpp")], "m")


def test_delete_targets() -> None:
    nodes = [node("a"), node("b"), node("c")]
    assert model_ops.delete_targets(CATALOG, nodes, "tiny:1b") == ["c", "a", "b"]
    assert model_ops.delete_targets(CATALOG, nodes, "anything", named="b") == ["b"]
    with pytest.raises(ModelNotFound):
        model_ops.delete_targets(CATALOG, nodes, "nope:1b")
    with pytest.raises(BadRequest):
        model_ops.delete_targets(CATALOG, nodes, "tiny:1b", named="zz")


def test_default_model_prefers_a_loaded_one() -> None:
    assert model_ops.default_model(CATALOG, "image") == "sd:2"
    assert model_ops.default_model(CATALOG, "asr") is None
