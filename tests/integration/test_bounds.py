"""Issue 10's request bounds over HTTP on the shared fleet (default FLEET_MAX_* values):
each bound is hit once, in both dialects where the route exists, and answered with its
status and the dialect's error shape before any node is touched; the official clients
still work on normal requests and see the refusals as their own error types."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from herd.settings import Settings

pytestmark = pytest.mark.integration

D = {name: field.default for name, field in Settings.model_fields.items()}
MSG = [{"role": "user", "content": "hi"}]
CHAT = {"/api/chat": {"model": "tiny:1b", "messages": MSG, "stream": False}}
OAI_CHAT = {"/v1/chat/completions": {"model": "tiny:1b", "messages": MSG}}
SIM_NODES = ("alpha", "beta", "gamma")


def assert_error(path: str, r: httpx.Response, status: int, words: str = "") -> None:
    """``r`` is ``status`` with the error body of ``path``'s dialect, naming ``words``."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    if path.startswith("/v1/"):
        assert set(error) >= {"message", "type", "code"}, error
        assert error["type"] == "invalid_request_error"
        message = error["message"]
    else:
        assert isinstance(error, str), error
        message = error
    assert words in message, message


@pytest.fixture
def untouched(sim: Any) -> Iterator[None]:
    """The emulated nodes serve nothing while the test runs: every refusal is the
    ingress's own."""
    before = {node: sim.served(node) for node in SIM_NODES}
    yield
    assert {node: sim.served(node) for node in SIM_NODES} == before


def post(endpoint: str, path: str, body: Any, **kw: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(f"{endpoint}{path}", content=body, timeout=60, **kw)
    return httpx.post(f"{endpoint}{path}", json=body, timeout=60, **kw)


# --- model names ---------------------------------------------------------------------

NAME_ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("/api/chat", {"messages": MSG}),
    ("/api/generate", {"prompt": "p"}),
    ("/api/embed", {"input": "x"}),
    ("/api/embeddings", {"prompt": "x"}),
    ("/api/generate-image", {"prompt": "p"}),
    ("/api/show", {}),
    ("/api/pull", {}),
    ("/v1/chat/completions", {"messages": MSG}),
    ("/v1/completions", {"prompt": "p"}),
    ("/v1/embeddings", {"input": "x"}),
    ("/v1/images/generations", {"prompt": "p"}),
]


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(("path", "extra"), NAME_ROUTES)
def test_model_names_outside_ollamas_rules_are_400(
    endpoint: str, admin: dict[str, str], path: str, extra: dict[str, Any]
) -> None:
    for name, words in (
        ("tiny:1b\u3000", "invalid model name"),  # was served, then a 500 on X-Herd-Model
        ("tiny:1b\x00", "invalid model name"),
        ("m" * (D["max_model_name_chars"] + 1), "longer than 200 characters"),
    ):
        r = post(endpoint, path, {"model": name, **extra}, headers=admin)
        assert_error(path, r, 400, words)


@pytest.mark.usefixtures("untouched")
def test_model_names_on_delete_transcription_and_model_paths(
    endpoint: str, admin: dict[str, str]
) -> None:
    r = httpx.request(
        "DELETE", f"{endpoint}/api/delete", json={"model": "tiny\u3000"}, headers=admin
    )
    assert_error("/api/delete", r, 400, "invalid model name")
    for path in ("/v1/audio/transcriptions", "/api/transcribe"):
        form = {"model": "whisper:tiny.en\u3000"}
        r = httpx.post(
            f"{endpoint}{path}", data=form, files={"file": ("a.wav", b"RIFF", "audio/wav")}
        )
        assert_error(path, r, 400, "invalid model name")
    r = httpx.get(f"{endpoint}/v1/models/tiny:1b%E3%80%80")
    assert_error("/v1/models/x", r, 400, "invalid model name")
    r = httpx.get(f"{endpoint}/v1/models/{'m' * 201}")
    assert_error("/v1/models/x", r, 400, "longer than")


def test_the_model_header_is_the_canonical_name(endpoint: str) -> None:
    r = post(endpoint, "/api/chat", {"model": "TINY:1B", "messages": MSG, "stream": False})
    assert r.status_code == 200, r.text
    assert r.headers["x-herd-model"] == "tiny:1b"
    r = post(endpoint, "/v1/embeddings", {"model": "embedder", "input": "x"})
    assert r.status_code == 200, r.text
    assert r.headers["x-herd-model"] == "embedder:latest"


# --- tags ----------------------------------------------------------------------------


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("route", [CHAT, OAI_CHAT])
def test_tags_count_length_and_printable(endpoint: str, route: dict[str, Any]) -> None:
    (path, body), = route.items()  # fmt: skip
    many = ",".join(f"t{i}" for i in range(D["max_tags"] + 1))
    r = post(endpoint, path, body, headers={"X-Herd-Tags": many})
    assert_error(path, r, 400, "too many tags: at most 16")
    r = post(endpoint, path, {**body, "metadata": {"tags": ["x" * (D["max_tag_chars"] + 1)]}})
    assert_error(path, r, 400, "longer than 64 characters")
    r = post(endpoint, path, {**body, "metadata": {"tags": ["a\x00b"]}})
    assert_error(path, r, 400, "printable")
    half = [f"b{i}" for i in range(9)]  # 9 in the body + 8 in the header = 17
    r = post(
        endpoint, path, {**body, "metadata": {"tags": half}}, headers={"X-Herd-Tags": many[:23]}
    )
    assert_error(path, r, 400, "too many tags")


# --- tokens, context, integers --------------------------------------------------------


@pytest.mark.usefixtures("untouched")
def test_openai_max_tokens_bounds(endpoint: str) -> None:
    path = "/v1/chat/completions"
    base = OAI_CHAT[path]
    for field in ("max_tokens", "max_completion_tokens"):
        for value, words in (
            (-5, "integer below minimum value"),
            (0, "integer below minimum value"),
            (D["max_predict"] + 1, "FLEET_MAX_PREDICT"),
            (2**64, "FLEET_MAX_PREDICT"),
        ):
            assert_error(path, post(endpoint, path, {**base, field: value}), 400, words)
    r = post(endpoint, "/v1/completions", {"model": "tiny:1b", "prompt": "p", "max_tokens": 2**64})
    assert_error("/v1/completions", r, 400, "FLEET_MAX_PREDICT")


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    "path", ["/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions"]
)
def test_num_predict_num_ctx_and_64_bit_options(endpoint: str, path: str) -> None:
    body: dict[str, Any] = {"model": "tiny:1b", "stream": False}
    body |= {"messages": MSG} if "chat" in path else {"prompt": "p"}
    for options, words in (
        ({"num_predict": 2**64}, "64-bit"),
        ({"num_predict": -3}, "-1 (no limit)"),
        ({"num_predict": D["max_predict"] + 1}, "FLEET_MAX_PREDICT"),
        ({"num_ctx": 0}, "num_ctx must be between 1 and 1048576"),
        ({"num_ctx": D["max_ctx"] + 1}, "FLEET_MAX_CTX"),
        ({"num_batch": 2**64}, '"num_batch" must be a 64-bit integer'),
        ({"seed": -(2**63) - 1}, '"seed" must be a 64-bit integer'),
        ({"top_k": 2**63}, '"top_k" must be a 64-bit integer'),
    ):
        r = post(endpoint, path, {**body, "options": options})
        assert_error(path, r, 400, words)
    raw = (
        b'{"model": "tiny:1b", "stream": false, "prompt": "p", "messages": '
        b'[{"role": "user", "content": "hi"}], '
        b'"options": {"repeat_last_n": 18446744073709551616}}'
    )
    assert_error(path, post(endpoint, path, raw), 400, "64-bit integer")


def test_values_at_the_bounds_are_served(endpoint: str) -> None:
    r = post(endpoint, "/api/chat", {**CHAT["/api/chat"], "options": {"num_predict": -2}})
    assert r.status_code == 200, r.text
    r = post(
        endpoint, "/v1/chat/completions", {**OAI_CHAT["/v1/chat/completions"], "max_tokens": 8}
    )
    assert r.status_code == 200, r.text
    tags = ",".join(f"t{i}" for i in range(D["max_tags"]))
    r = post(endpoint, "/api/chat", CHAT["/api/chat"], headers={"X-Herd-Tags": tags})
    assert r.status_code == 200, r.text


# --- embeddings ----------------------------------------------------------------------


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("path", ["/api/embed", "/v1/embeddings"])
def test_embedding_inputs_per_request(endpoint: str, path: str) -> None:
    inputs = ["x"] * (D["max_embed_inputs"] + 1)
    r = post(endpoint, path, {"model": "embedder", "input": inputs})
    assert_error(path, r, 400, "too many inputs: 2049 > 2048")


# --- images --------------------------------------------------------------------------

IMAGE = "tiny-sd:random"


def test_image_count_pixels_and_steps(endpoint: str) -> None:
    oai, native = "/v1/images/generations", "/api/generate-image"
    r = post(endpoint, oai, {"model": IMAGE, "prompt": "p", "n": D["max_images"] + 1})
    assert_error(oai, r, 400, "FLEET_MAX_IMAGES")
    r = post(endpoint, oai, {"model": IMAGE, "prompt": "p", "size": "2048x2056"})
    assert_error(oai, r, 400, "FLEET_MAX_IMAGE_PIXELS")
    r = post(endpoint, native, {"model": IMAGE, "prompt": "p", "width": 4096, "height": 1032})
    assert_error(native, r, 400, "FLEET_MAX_IMAGE_PIXELS")
    for path in (oai, native):
        r = post(endpoint, path, {"model": IMAGE, "prompt": "p", "steps": D["max_image_steps"] + 1})
        assert_error(path, r, 400, "FLEET_MAX_IMAGE_STEPS")


# --- audio ---------------------------------------------------------------------------


def flac_of_silence(seconds: float, rate: int = 8000) -> bytes:
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, "w", format="flac") as box:
        stream = box.add_stream("flac", rate=rate)
        stream.layout = "mono"
        zeros = np.zeros((1, 4096), dtype=np.int16)
        done, total = 0, int(seconds * rate)
        while done < total:
            count = min(4096, total - done)
            frame = av.AudioFrame.from_ndarray(zeros[:, :count], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, done
            for packet in stream.encode(frame):
                box.mux(packet)
            done += count
        for packet in stream.encode(None):
            box.mux(packet)
    return out.getvalue()


@pytest.fixture(scope="module")
def hour_and_a_bit() -> bytes:
    return flac_of_silence(D["max_audio_seconds"] + 5)


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/api/transcribe"])
def test_audio_longer_than_the_cap_is_413_whatever_its_size(
    endpoint: str, hour_and_a_bit: bytes, path: str
) -> None:
    assert len(hour_and_a_bit) < 1_000_000  # a small file: its length shows only when decoded
    files = {"file": ("long.flac", hour_and_a_bit, "audio/flac")}
    started = time.monotonic()
    r = httpx.post(f"{endpoint}{path}", data={"model": "whisper:tiny.en"}, files=files, timeout=120)
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    message = error["message"] if path.startswith("/v1/") else error
    assert "longer than 3600 seconds" in message
    print(f"{path}: 413 for {len(hour_and_a_bit)} bytes after {time.monotonic() - started:.2f} s")
    ten_seconds = {"file": ("short.flac", flac_of_silence(10), "audio/flac")}
    r = httpx.post(
        f"{endpoint}{path}", data={"model": "whisper:tiny.en"}, files=ten_seconds, timeout=300
    )
    assert r.status_code == 200, r.text  # a short file of the same kind is transcribed
    bad = {"file": ("fake.flac", b"fLaC" + b"\x00" * 200, "audio/flac")}
    r = httpx.post(f"{endpoint}{path}", data={"model": "whisper:tiny.en"}, files=bad, timeout=60)
    assert r.status_code == 400, r.text


# --- dashboard events ----------------------------------------------------------------


def test_event_interval_floor_and_stream_cap(endpoint: str, admin: dict[str, str]) -> None:
    url = f"{endpoint}/dashboard/events"
    with httpx.stream("GET", f"{url}?interval=0.01", headers=admin, timeout=30) as r:
        assert r.status_code == 200
        assert next(line for line in r.iter_lines() if line) == "retry: 1000"
    clients = [httpx.Client(headers=admin, timeout=30) for _ in range(D["max_event_streams"])]
    streams = []  # the responses and their line iterators stay referenced: they stay open
    try:
        deadline = time.monotonic() + 20
        for client in clients:
            while True:  # a stream closed just before may still hold its place a moment
                response = client.send(client.build_request("GET", url), stream=True)
                if response.status_code == 200:
                    break
                response.close()
                assert response.status_code == 429 and time.monotonic() < deadline
                time.sleep(0.1)
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            streams.append((response, lines))
        busy = httpx.get(url, headers=admin, timeout=30)
        assert busy.status_code == 429, busy.text
        assert busy.headers["retry-after"] and "too many event streams" in busy.json()["error"]
    finally:
        for client in clients:
            client.close()
    deadline = time.monotonic() + 20
    while True:  # the places come back once the replica notices the clients left
        with httpx.stream("GET", url, headers=admin, timeout=30) as again:
            if again.status_code == 200:
                break
        assert time.monotonic() < deadline, "closed event streams kept their places"
        time.sleep(0.1)


# --- the official clients ------------------------------------------------------------


def test_official_clients_see_bounds_as_their_own_errors(endpoint: str) -> None:
    oai = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="not-needed", max_retries=0)
    oll = ollama.Client(host=endpoint)
    try:
        with pytest.raises(openai.BadRequestError) as oai_err:
            oai.chat.completions.create(model="tiny:1b", messages=MSG, max_tokens=-5)  # type: ignore[arg-type]
        assert "below minimum value" in oai_err.value.message
        with pytest.raises(ollama.ResponseError) as oll_err:
            oll.chat(model="tiny:1b\u3000", messages=MSG)
        assert oll_err.value.status_code == 400 and "invalid model name" in oll_err.value.error
        with pytest.raises(ollama.ResponseError) as oll_err:
            oll.generate(model="tiny:1b", prompt="p", options={"num_ctx": 0})
        assert oll_err.value.status_code == 400
        assert oai.chat.completions.create(model="tiny:1b", messages=MSG, max_tokens=16)  # type: ignore[arg-type]
        assert oll.chat(model="tiny:1b", messages=MSG, options={"num_predict": 16}).message
        assert oll.embed(model="embedder", input=["a", "b"]).embeddings
    finally:
        oai.close()
        oll._client.close()
