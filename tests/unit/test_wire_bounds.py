"""The request bounds of issue 10 (FLEET_MAX_*), one parser at a time: each bound is
refused with BadRequest (400) or PayloadTooLarge (413, audio length) before anything
reaches a node, and the values just inside each bound pass."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import pytest

from herd import convert, wire
from herd.convert.headers import header_value, model_header
from herd.convert.media import image_request, transcribe_request
from herd.errors import BadRequest, PayloadTooLarge
from herd.settings import load_settings
from herd.wire.audio import audio_seconds, sniff_format
from herd.wire.limits import DEFAULT_LIMITS, MAX_FALLBACK_MODELS, Limits, check_model_name
from herd.wire.media import (
    parse_generate_image_request,
    parse_image_generation_request,
    parse_transcription_form,
)
from herd.wire.ollama_models import (
    parse_delete_request,
    parse_pull_request,
    parse_show_request,
)

SMALL = replace(
    DEFAULT_LIMITS,
    model_name_chars=20,
    tags=2,
    tag_chars=5,
    predict=1000,
    ctx=4096,
    embed_inputs=3,
    images=2,
    image_pixels=256 * 256,
    image_steps=10,
    audio_seconds=2.0,
)
META: dict[str, Any] = {"request_id": "r1", "received_at": 0.0}
MSG = [{"role": "user", "content": "hi"}]


def refused(parse: Any, body: Any, limits: Limits = SMALL) -> str:
    with pytest.raises(BadRequest) as err:
        parse(body, limits)
    return err.value.message


# --- the limits object ----------------------------------------------------------------


def test_limits_come_from_settings_and_default_to_their_defaults() -> None:
    settings = load_settings(max_tags=3, max_predict=77, max_audio_seconds=9.5)
    limits = Limits.from_settings(settings)
    assert (limits.tags, limits.predict, limits.audio_seconds) == (3, 77, 9.5)
    assert Limits.from_settings(load_settings()) == DEFAULT_LIMITS
    with pytest.raises(AttributeError):
        limits.tags = 4  # type: ignore[misc]


# --- model names ---------------------------------------------------------------------

GOOD_NAMES = [
    "llama3.2",
    "tiny:1b",
    "qwen2.5-coder:7b",
    "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
    "registry.ollama.ai/library/gemma3:270m",
    "localhost:5000/x/y:latest",
    "x/flux2-klein:latest",
    "model@sha256:abc123",
    "_private:v1",
    "gpt-4o+tools",
]
BAD_NAMES = [
    "tiny:1b\u3000",  # the 500 of the issue: U+3000 made X-Herd-Model fail to encode
    "tiny:1b\x00",
    "bad name!",
    "tiny\n",
    " tiny:1b",
    "-dash-first",
    "caf\u00e9",
    "a;b",
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_model_names_ollama_accepts_pass(name: str) -> None:
    assert wire.parse_chat_request({"model": name, "messages": MSG}).model == name
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize(
    ("parse", "extra"),
    [
        (wire.parse_chat_request, {"messages": MSG}),
        (wire.parse_generate_request, {"prompt": "p"}),
        (wire.parse_embed_request, {"input": "x"}),
        (wire.parse_embeddings_request, {"prompt": "x"}),
        (wire.parse_chat_completion_request, {"messages": MSG}),
        (wire.parse_completion_request, {"prompt": "p"}),
        (wire.parse_embedding_request, {"input": "x"}),
        (parse_image_generation_request, {"prompt": "p"}),
        (parse_generate_image_request, {"prompt": "p"}),
        (parse_show_request, {}),
        (parse_pull_request, {}),
        (parse_delete_request, {}),
    ],
)
def test_unprintable_or_foreign_model_names_are_400_on_every_route(
    name: str, parse: Any, extra: dict[str, Any]
) -> None:
    assert refused(parse, {"model": name, **extra}).startswith("invalid model name")


def test_model_name_length_bound() -> None:
    at_limit = "m" * 20
    assert wire.parse_chat_request({"model": at_limit, "messages": MSG}, SMALL).model == at_limit
    message = refused(wire.parse_chat_request, {"model": at_limit + "m", "messages": MSG})
    assert message == "model name is longer than 20 characters"
    # the legacy "name" field of show/pull/delete, and a path's model id
    assert "longer than 20" in refused(parse_pull_request, {"name": "n" * 21})
    with pytest.raises(BadRequest, match="longer than 20"):
        check_model_name("x" * 21, SMALL)
    with pytest.raises(BadRequest, match="invalid model name"):
        check_model_name("tiny\u3000")


def test_transcription_form_model_name_is_bounded() -> None:
    for name in ("whisper\u3000", "w" * 21):
        with pytest.raises(BadRequest):
            parse_transcription_form({"model": [name]}, b"RIFF", "a.wav", SMALL)


def test_fallback_models_are_names_too_and_bounded_in_number() -> None:
    body = {"model": "a", "messages": MSG, "fallback_models": ["b\u3000"]}
    assert refused(wire.parse_chat_request, body).startswith("fallback_models: invalid model")
    many = {"model": "a", "messages": MSG, "fallback_models": ["m"] * (MAX_FALLBACK_MODELS + 1)}
    assert "too many fallback_models" in refused(wire.parse_chat_completion_request, many)
    ok = {"model": "a", "messages": MSG, "fallback_models": ["b", " ", "c:1b"]}
    assert wire.parse_chat_request(ok, SMALL).fallback_models == ["b", " ", "c:1b"]
    with pytest.raises(BadRequest, match="fallback_models"):
        parse_transcription_form(
            {"model": ["w"], "fallback_models[]": ["bad name"]}, b"RIFF", "a.wav"
        )


# --- tags ----------------------------------------------------------------------------


def test_body_tags_count_length_and_printable() -> None:
    ok = {"model": "a", "messages": MSG, "metadata": {"tags": ["ab", "AB ", "cd"]}}
    req = wire.parse_chat_request(ok, SMALL)  # "AB " folds into "ab": two tags
    assert convert.ollama_chat_request(req, **META, limits=SMALL).tags == ("ab", "cd")
    for tags, words in (
        (["a", "b", "c"], "too many tags: at most 2"),
        (["abcdef"], "longer than 5 characters"),
        (["a\x00"], "printable"),
        (["a\u3000b"], "printable"),
        ("a,b,c", "too many tags"),  # the comma-separated string form
    ):
        body = {"model": "a", "messages": MSG, "metadata": {"tags": tags}}
        assert words in refused(wire.parse_chat_request, body)
        assert words in refused(wire.parse_embedding_request, {**body, "input": "x"})


def test_header_tags_count_with_the_body_tags() -> None:
    req = wire.parse_chat_request({"model": "a", "messages": MSG, "metadata": {"tags": ["a"]}})
    assert convert.ollama_chat_request(req, **META, header_tags="b, a", limits=SMALL).tags == (
        "a",
        "b",
    )
    for header, words in (("b,c", "too many tags"), ("abcdefg", "longer"), ("\x7f", "print")):
        with pytest.raises(BadRequest, match=words):
            convert.ollama_chat_request(req, **META, header_tags=header, limits=SMALL)
    oai = wire.parse_chat_completion_request({"model": "a", "messages": MSG})
    with pytest.raises(BadRequest, match="too many tags"):
        convert.openai_chat_request(oai, **META, header_tags="x,y,z", limits=SMALL)
    image = parse_image_generation_request({"prompt": "p"})
    with pytest.raises(BadRequest, match="too many tags"):
        image_request(image, model="m", dialect="openai", header_tags="x,y,z", limits=SMALL, **META)
    form = parse_transcription_form({"model": ["w"], "tags": ["x"]}, b"RIFF", "a.wav", SMALL)
    with pytest.raises(BadRequest, match="too many tags"):
        transcribe_request(form, dialect="ollama", header_tags="y,z", limits=SMALL, **META)
    with pytest.raises(BadRequest, match="too many tags"):
        parse_transcription_form({"model": ["w"], "tags[]": ["x,y,z"]}, b"RIFF", "a.wav", SMALL)


# --- max_tokens / num_predict / num_ctx / 64-bit integers ------------------------------


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_openai_max_tokens_range(field: str) -> None:
    body = {"model": "a", "messages": MSG}
    assert wire.parse_chat_completion_request({**body, field: 1000}, SMALL)
    for value in (-5, 0):
        message = refused(wire.parse_chat_completion_request, {**body, field: value})
        assert message == (
            f"Invalid '{field}': integer below minimum value. "
            f"Expected a value >= 1, but got {value} instead."
        )
    for value in (1001, 2**63, 2**64, 10**30):
        assert "FLEET_MAX_PREDICT" in refused(
            wire.parse_chat_completion_request, {**body, field: value}
        )


def test_legacy_completion_max_tokens_allows_zero() -> None:
    body = {"model": "a", "prompt": "p"}
    assert wire.parse_completion_request({**body, "max_tokens": 0}, SMALL).max_tokens == 0
    assert "minimum value" in refused(wire.parse_completion_request, {**body, "max_tokens": -1})
    assert "FLEET_MAX_PREDICT" in refused(
        wire.parse_completion_request, {**body, "max_tokens": 2**64}
    )


@pytest.mark.parametrize(
    ("parse", "extra"),
    [
        (wire.parse_chat_request, {"messages": MSG}),
        (wire.parse_generate_request, {"prompt": "p"}),
        (wire.parse_chat_completion_request, {"messages": MSG}),
        (wire.parse_completion_request, {"prompt": "p"}),
    ],
)
def test_num_predict_and_num_ctx_ranges(parse: Any, extra: dict[str, Any]) -> None:
    def opts(**options: Any) -> dict[str, Any]:
        return {"model": "a", **extra, "options": options}

    for ok in (-2, -1, 0, 1000, 1000.0):
        assert parse(opts(num_predict=ok), SMALL)
    for ok in (1, 4096):
        assert parse(opts(num_ctx=ok), SMALL)
    assert "-1 (no limit), -2" in refused(parse, opts(num_predict=-3))
    assert "at most 1000 (FLEET_MAX_PREDICT)" in refused(parse, opts(num_predict=1001))
    assert "64-bit" in refused(parse, opts(num_predict=2**64))
    for bad in (0, -1, 4097, 2**40):
        assert "num_ctx must be between 1 and 4096" in refused(parse, opts(num_ctx=bad))


@pytest.mark.parametrize(
    "option",
    ["num_batch", "num_gpu", "seed", "top_k", "repeat_last_n", "num_keep", "main_gpu",
     "num_thread", "draft_num_predict", "some_future_int"],
)  # fmt: skip
def test_every_integer_option_must_fit_in_64_bits(option: str) -> None:
    for parse, extra in (
        (wire.parse_chat_request, {"messages": MSG}),
        (wire.parse_embed_request, {"input": "x"}),
        (wire.parse_chat_completion_request, {"messages": MSG}),
        (wire.parse_embedding_request, {"input": "x"}),
    ):
        for value in (2**63 - 1, -(2**63)):
            assert parse({"model": "a", **extra, "options": {option: value}})
        floats = (1e19,) if option != "some_future_int" else ()  # Go converts float to int
        for value in (2**63, 2**64, -(2**63) - 1, *floats):
            body = {"model": "a", **extra, "options": {option: value}}
            assert "64-bit integer" in refused(parse, body, DEFAULT_LIMITS)


def test_non_finite_and_oversized_floats_in_options() -> None:
    raw = b'{"model": "a", "messages": [], "options": {"temperature": 1e400}}'
    assert "finite" in refused(wire.parse_chat_request, raw)
    body = {"model": "a", "messages": MSG, "options": {"top_p": 1e39}}
    assert "out of range" in refused(wire.parse_chat_request, body)


def test_typed_integer_fields_must_fit_in_64_bits() -> None:
    chat = {"model": "a", "messages": MSG}
    for parse, body in (
        (wire.parse_chat_completion_request, {**chat, "seed": 2**64}),
        (wire.parse_completion_request, {"model": "a", "prompt": "p", "logprobs": 2**64}),
        (wire.parse_embed_request, {"model": "a", "input": "x", "dimensions": 2**64}),
        (wire.parse_embedding_request, {"model": "a", "input": "x", "dimensions": 2**64}),
        (wire.parse_generate_request, {"model": "a", "prompt": "p", "context": [1, 2**64]}),
        (parse_image_generation_request, {"prompt": "p", "seed": 2**64}),
        (parse_image_generation_request, {"prompt": "p", "output_compression": 2**64}),
    ):
        assert "64-bit integer" in refused(parse, body), body
    raw = b'{"model": "a", "messages": [], "seed": 18446744073709551616}'
    assert "64-bit integer" in refused(wire.parse_chat_completion_request, raw)


def test_numeric_keep_alive_is_bounded() -> None:
    body = {"model": "a", "messages": MSG}
    assert wire.parse_chat_request({**body, "keep_alive": -1}).keep_alive == -1
    assert wire.parse_chat_request({**body, "keep_alive": "24h"}).keep_alive == "24h"
    for bad in (2**64, 1e300):
        assert "keep_alive" in refused(wire.parse_chat_request, {**body, "keep_alive": bad})


def test_converted_openai_body_carries_the_checked_num_predict() -> None:
    req = wire.parse_chat_completion_request(
        {"model": "a", "messages": MSG, "max_tokens": 1000}, SMALL
    )
    assert convert.openai_chat_request(req, **META).body["options"]["num_predict"] == 1000


# --- embeddings ----------------------------------------------------------------------


def test_embedding_inputs_per_request() -> None:
    assert wire.parse_embed_request({"model": "e", "input": ["a", "b", "c"]}, SMALL)
    assert wire.parse_embedding_request({"model": "e", "input": ["a", "b", "c"]}, SMALL)
    four = ["a", "b", "c", "d"]
    for parse in (wire.parse_embed_request, wire.parse_embedding_request):
        message = refused(parse, {"model": "e", "input": four})
        assert message.startswith("too many inputs: 4 > 3")
    big = {"model": "e", "input": ["x"] * (DEFAULT_LIMITS.embed_inputs + 1)}
    assert "too many inputs" in refused(wire.parse_embed_request, big, DEFAULT_LIMITS)


# --- images --------------------------------------------------------------------------


def test_image_count_pixels_and_steps() -> None:
    ok = parse_image_generation_request({"prompt": "p", "n": 2, "size": "256x256"}, SMALL)
    assert (ok.count, ok.dimensions) == (2, (256, 256))
    assert "n must be between 1 and 2 (FLEET_MAX_IMAGES)" in refused(
        parse_image_generation_request, {"prompt": "p", "n": 3, "size": "64x64"}
    )
    message = refused(parse_image_generation_request, {"prompt": "p", "size": "256x264"})
    assert "FLEET_MAX_IMAGE_PIXELS" in message
    # no size means 1024x1024 (OpenAI's default), over this small pixel bound
    assert "FLEET_MAX_IMAGE_PIXELS" in refused(parse_image_generation_request, {"prompt": "p"})
    native = {"model": "m", "prompt": "p", "width": 256, "height": 256}
    assert parse_generate_image_request(native, SMALL).width == 256
    message = refused(parse_generate_image_request, {**native, "height": 264})
    assert "FLEET_MAX_IMAGE_PIXELS" in message
    for parse, body in (
        (parse_image_generation_request, {"prompt": "p", "size": "64x64"}),
        (parse_generate_image_request, {**native}),
    ):
        assert parse({**body, "steps": 10}, SMALL).steps == 10
        assert "FLEET_MAX_IMAGE_STEPS" in refused(parse, {**body, "steps": 11})
    # the default bounds: 4 images, 2048x2048, 100 steps
    assert parse_image_generation_request({"prompt": "p", "n": 4, "size": "2048x2048"})
    assert "FLEET_MAX_IMAGE_PIXELS" in refused(
        parse_image_generation_request, {"prompt": "p", "size": "2048x2056"}, DEFAULT_LIMITS
    )


# --- audio ---------------------------------------------------------------------------


def _silence(container: str, codec: str, seconds: float, rate: int = 8000) -> bytes:
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, "w", format=container) as box:
        stream = box.add_stream(codec, rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        done, total = 0, int(seconds * rate)
        while done < total:
            count = min(4096, total - done)
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, count), dtype=np.int16), format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, done
            for packet in stream.encode(frame):
                box.mux(packet)
            done += count
        for packet in stream.encode(None):
            box.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize(
    ("container", "codec", "fmt"),
    [("wav", "pcm_s16le", "wav"), ("flac", "flac", "flac"), ("mp3", "libmp3lame", "mp3"),
     ("ipod", "aac", "mov"), ("webm", "libopus", "matroska"), ("adts", "aac", "aac")],
)  # fmt: skip
def test_audio_length_is_measured_by_decoding(container: str, codec: str, fmt: str) -> None:
    rate = 48000 if codec == "libopus" else 8000
    data = _silence(container, codec, 1.5, rate)
    assert sniff_format(data) == fmt
    assert 1.4 < audio_seconds(data, 2.0) < 1.7


def test_a_small_file_that_decodes_to_ten_minutes_is_413() -> None:
    flac = _silence("flac", "flac", 600)
    assert len(flac) < 200_000  # the size says nothing about the length
    assert 599.9 < audio_seconds(flac, 3600) < 600.1
    with pytest.raises(PayloadTooLarge, match="longer than 60 seconds"):
        audio_seconds(flac, 60)


@pytest.mark.parametrize(
    "data",
    [
        b"not audio at all",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:1\nhttp://10.0.0.5/a.ts\n",  # never opened
        b"ffconcat version 1.0\nfile '/etc/passwd'\n",
        b"RIFF\x00\x00\x00\x00WAVEfmt garbage",
        b"fLaC" + b"\x00" * 64,
    ],
)
def test_undecodable_or_foreign_audio_is_400(data: bytes) -> None:
    with pytest.raises(BadRequest) as err:
        audio_seconds(data, 60, "x.wav")
    assert not isinstance(err.value, PayloadTooLarge)
    assert "x.wav" in err.value.message


# --- response headers ----------------------------------------------------------------


def test_header_values_always_encode() -> None:
    assert header_value("alpha") == "alpha"
    assert header_value("node one,b") == "node one,b"
    for text in ("tiny:1b\u3000", "caf\u00e9", "a\r\nX-Evil: 1", "50%"):
        value = header_value(text)
        value.encode("latin-1")
        assert value.isascii() and value.isprintable() and "\r" not in value
    assert header_value("a\r\nb") == "a%0D%0Ab"
    assert model_header("TINY:1B") == "tiny:1b"
    assert model_header("embedder") == "embedder:latest"
