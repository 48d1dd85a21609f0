"""The OpenAI dialect through the fleet, judged by the official openai client: chat and
completions (the real gemma3 270M on llama.cpp and the emulators), embeddings (MiniLM on
sentence-transformers and the emulator's embedder), models, fallbacks, request tagging,
and bad input on every endpoint."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from sqlmodel import select

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Name one colour."}]
MINILM = "all-minilm:l6-v2"
GEMMA = "gemma3:270m"


@pytest.fixture
def oai(endpoint: str) -> Any:
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="not-needed", max_retries=0)
    yield client
    client.close()


# --- chat and completions ------------------------------------------------------------


def test_chat_on_real_llamacpp_streaming_and_not(oai: Any) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model=GEMMA, messages=MESSAGES, max_tokens=8, temperature=0
    )
    done = raw.parse()
    assert raw.headers["x-herd-node"] == "gemma"
    assert done.choices[0].message.role == "assistant" and done.choices[0].message.content
    assert done.choices[0].finish_reason in ("stop", "length")
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    chunks = list(
        oai.chat.completions.create(
            model=GEMMA,
            messages=MESSAGES,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_completions_streaming_and_not(oai: Any) -> None:
    done = oai.completions.create(model=GEMMA, prompt="The sky is", max_tokens=6)
    assert done.object == "text_completion" and done.choices[0].text
    assert done.choices[0].finish_reason in ("stop", "length")
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    pieces = list(oai.completions.create(model="tiny:1b", prompt="Hi", stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices)
    assert pieces[-1].choices[0].finish_reason in ("stop", "length")


# --- embeddings ----------------------------------------------------------------------


def test_embeddings_minilm_on_sentence_transformers(oai: Any) -> None:
    raw = oai.embeddings.with_raw_response.create(model=MINILM, input=["a llama", "an alpaca"])
    result = raw.parse()  # the client asked for base64 and decoded it
    assert raw.headers["x-herd-node"] == "gemma"
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 384 for d in result.data)
    norm = sum(x * x for x in result.data[0].embedding)
    assert abs(norm - 1.0) < 1e-3  # L2-normalised, like Ollama's /api/embed
    assert result.usage.prompt_tokens > 0
    floats = oai.embeddings.create(
        model="all-minilm-l6-v2", input="a llama", encoding_format="float", dimensions=64
    )
    assert len(floats.data[0].embedding) == 64


def test_embeddings_on_the_emulators_embedder(oai: Any) -> None:
    raw = oai.embeddings.with_raw_response.create(model="embedder", input="one")
    assert raw.headers["x-herd-node"] in ("alpha", "gamma")
    assert len(raw.parse().data[0].embedding) == 32


# --- models --------------------------------------------------------------------------


def test_models_list_and_retrieve_cover_every_model_type(oai: Any) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"tiny:1b", "embedder:latest", GEMMA, MINILM, "tiny-sd:random", "whisper:tiny.en"} <= ids
    for model_id in (MINILM, "tiny-sd:random", "coder:1b"):
        found = oai.models.retrieve(model_id)
        assert found.id == model_id and found.object == "model" and found.owned_by
    with pytest.raises(openai.NotFoundError) as err:
        oai.models.retrieve("nope:9b")
    assert err.value.code == "model_not_found"


# --- routing fields ------------------------------------------------------------------


def test_fallback_models_through_extra_body(oai: Any) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="nope:70b",
        messages=MESSAGES,
        extra_body={"fallback_models": ["also-nope:1b", "tiny:1b"]},
    )
    assert raw.headers["x-herd-fallback"] == "true"
    assert raw.headers["x-herd-model"] == "tiny:1b"
    assert raw.parse().model == "tiny:1b"


def stored_trace(fleet: Any, request_id: str) -> Any:
    """The router's trace of a request, once its batch reached the database."""
    from herd.traces.store import TraceStore
    from herd.traces.tables import RequestTrace

    store = TraceStore.from_settings(fleet.settings)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with store.session() as session:
                row = session.exec(
                    select(RequestTrace).where(RequestTrace.request_id == request_id)
                ).first()
                if row is not None:
                    return row
            time.sleep(0.2)
    finally:
        store.close()
    raise AssertionError(f"no trace for {request_id}")


def test_tags_user_and_header_are_stored_with_the_request(fleet: Any, endpoint: str) -> None:
    client = openai.OpenAI(
        base_url=f"{endpoint}/v1",
        api_key="not-needed",
        max_retries=0,
        default_headers={"X-Herd-Tags": "Proxy-Tag, shared"},
    )
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="tiny:1b",
            messages=MESSAGES,
            user="alice",
            extra_body={"metadata": {"tags": ["my-app", "shared"]}},
        )
        raw.parse()
        trace = stored_trace(fleet, raw.headers["x-herd-request-id"])
        assert list(trace.tags) == ["my-app", "shared", "proxy-tag"]
        assert trace.client == "alice"
        raw = client.embeddings.with_raw_response.create(
            model=MINILM, input="x", extra_body={"metadata": {"tags": ["embed-app"]}}
        )
        raw.parse()
        trace = stored_trace(fleet, raw.headers["x-herd-request-id"])
        assert list(trace.tags) == ["embed-app", "proxy-tag", "shared"]
    finally:
        client.close()


# --- bad input: the OpenAI error envelope, the right status, never a 500 ---------------

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
MSG = [{"role": "user", "content": "hi"}]

BAD: list[tuple[str, Any, int]] = [
    (CHAT, b"{not json", 400),
    (CHAT, b"", 400),
    (CHAT, {"messages": MSG}, 400),  # no model
    (CHAT, {"model": "tiny:1b"}, 400),  # no messages
    (CHAT, {"model": "tiny:1b", "messages": "hi"}, 400),
    (CHAT, {"model": 5, "messages": MSG}, 400),
    (CHAT, {"model": "tiny:1b", "messages": MSG, "n": 2}, 400),
    (CHAT, {"model": "tiny:1b", "messages": MSG, "temperature": 9}, 400),
    (CHAT, {"model": "tiny:1b", "messages": MSG, "response_format": {"type": "xml"}}, 400),
    (CHAT, {"model": "tiny:1b", "messages": MSG, "metadata": {"tags": [1]}}, 400),
    (CHAT, {"model": "tiny:1b", "messages": MSG, "fallback_models": "tiny:1b"}, 400),
    (CHAT, {"model": "tiny-sd:random", "messages": MSG}, 400),  # an image model
    (CHAT, {"model": "nope:9b", "messages": MSG}, 404),
    (COMPLETIONS, b"[", 400),
    (COMPLETIONS, {"model": "tiny:1b"}, 400),  # no prompt
    (COMPLETIONS, {"model": "tiny:1b", "prompt": [1, 2]}, 400),
    (COMPLETIONS, {"model": "tiny:1b", "prompt": "x", "best_of": 3}, 400),
    (COMPLETIONS, {"model": "whisper:tiny.en", "prompt": "x"}, 400),  # speech-to-text
    (COMPLETIONS, {"model": "nope:9b", "prompt": "x"}, 404),
    (EMBEDDINGS, b"{", 400),
    (EMBEDDINGS, {"model": MINILM}, 400),  # no input
    (EMBEDDINGS, {"model": MINILM, "input": []}, 400),
    (EMBEDDINGS, {"model": MINILM, "input": [[1, 2]]}, 400),
    (EMBEDDINGS, {"model": MINILM, "input": "x", "encoding_format": "hex"}, 400),
    (EMBEDDINGS, {"model": MINILM, "input": "x", "dimensions": 0}, 400),
    (EMBEDDINGS, {"model": "tiny-sd:random", "input": "x"}, 400),
    (EMBEDDINGS, {"model": "nope:9b", "input": "x"}, 404),
]


@pytest.mark.parametrize(("path", "body", "status"), BAD)
def test_bad_input(endpoint: str, path: str, body: Any, status: int) -> None:
    if isinstance(body, bytes):
        r = httpx.post(
            f"{endpoint}{path}",
            content=body,
            headers={"content-type": "application/json"},
            timeout=60,
        )
    else:
        r = httpx.post(f"{endpoint}{path}", json=body, timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if status == 404:
        assert error["code"] == "model_not_found"


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS, EMBEDDINGS])
def test_oversized_body_is_413(endpoint: str, path: str) -> None:
    big = b'{"model":"tiny:1b","prompt":"' + b"x" * (65 * 1024 * 1024) + b'"}'
    r = httpx.post(f"{endpoint}{path}", content=big, timeout=120)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_wrong_method_and_unknown_model_id(endpoint: str) -> None:
    r = httpx.get(f"{endpoint}{CHAT}")
    assert r.status_code == 405 and r.json()["error"]["message"]
    r = httpx.get(f"{endpoint}/v1/models/org/nope:1b")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
