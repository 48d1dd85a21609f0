"""Both dialects through the real fleet, judged by the official openai and ollama clients."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import openai
import pytest

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Say something about llamas."}]


@pytest.fixture
def oai(endpoint: str) -> Any:
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="not-needed", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def oll(endpoint: str) -> Any:
    client = ollama.Client(host=endpoint)
    yield client
    client._client.close()


def test_openai_non_streaming_goes_to_the_hot_node(oai: Any) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="tiny:1b", messages=MESSAGES)
    completion = raw.parse()
    assert raw.headers["x-herd-node"] == "alpha"  # the only node with tiny:1b loaded
    assert raw.headers["x-herd-model"] == "tiny:1b"
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_openai_streaming_with_usage(oai: Any) -> None:
    stream = oai.chat.completions.create(
        model="tiny:1b",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length")
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_models_lists_the_whole_herd(oai: Any) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"tiny:1b", "thinker:1b", "coder:1b", "embedder:latest"} <= ids
    assert oai.models.retrieve("coder:1b").id == "coder:1b"


def test_ollama_chat_streaming_and_not(oll: Any) -> None:
    whole = oll.chat(model="tiny:1b", messages=MESSAGES, stream=False)
    assert whole.message.content
    assert whole.done and whole.done_reason in ("stop", "length")
    assert whole.eval_count and whole.eval_count > 0
    assert whole.prompt_eval_count and whole.prompt_eval_count > 0
    parts = list(oll.chat(model="tiny:1b", messages=MESSAGES, stream=True))
    assert parts[-1].done and parts[-1].eval_count == whole.eval_count
    assert "".join(p.message.content or "" for p in parts) == whole.message.content


def test_ollama_generate_streaming_and_not(oll: Any) -> None:
    whole = oll.generate(model="thinker:1b", prompt="Hello", stream=False)
    assert whole.response and whole.eval_count > 0
    parts = list(oll.generate(model="thinker:1b", prompt="Hello", stream=True))
    assert "".join(p.response for p in parts) == whole.response
    assert parts[-1].done


def test_ollama_tags_and_ps_cover_every_node(oll: Any, endpoint: str) -> None:
    names = {m.model for m in oll.list().models}
    assert {"tiny:1b", "thinker:1b", "coder:1b", "embedder:latest"} <= names
    running = {(m.model, m.size) for m in oll.ps().models}
    assert any(name == "tiny:1b" for name, _ in running)
    assert any(name == "thinker:1b" for name, _ in running)
    tags = httpx.get(f"{endpoint}/api/tags").json()["models"]
    tiny = next(m for m in tags if m["name"] == "tiny:1b")
    assert set(tiny["nodes"]) == {"alpha", "beta", "gamma"}


def test_ollama_embed(oll: Any) -> None:
    result = oll.embed(model="embedder", input=["one", "two"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) == 32


def test_unknown_model_is_404_in_both_dialects(oai: Any, oll: Any) -> None:
    with pytest.raises(openai.NotFoundError) as oai_err:
        oai.chat.completions.create(model="nope:9b", messages=MESSAGES)
    assert oai_err.value.code == "model_not_found"
    with pytest.raises(ollama.ResponseError) as oll_err:
        oll.chat(model="nope:9b", messages=MESSAGES)
    assert oll_err.value.status_code == 404
    assert "nope:9b" in oll_err.value.error


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", b"{not json"),
        ("/api/chat", b'{"messages": []}'),
        ("/api/generate", b'{"model": 5}'),
        ("/v1/chat/completions", b"{not json"),
        ("/v1/chat/completions", b'{"model": "tiny:1b", "messages": []}'),
        ("/v1/chat/completions", b'{"model": "tiny:1b", "messages": "hi"}'),
        ("/v1/chat/completions", b""),
    ],
)
def test_bad_input_is_400_in_the_dialect(endpoint: str, path: str, body: bytes) -> None:
    r = httpx.post(f"{endpoint}{path}", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    if path.startswith("/v1/"):
        assert error["type"] == "invalid_request_error" and error["message"]
    else:
        assert isinstance(error, str) and error


def test_oversized_body_is_413(endpoint: str) -> None:
    big = b'{"model":"tiny:1b","prompt":"' + b"x" * (65 * 1024 * 1024) + b'"}'
    r = httpx.post(f"{endpoint}/api/generate", content=big, timeout=60)
    assert r.status_code == 413
    assert "larger than" in r.json()["error"]


def test_unknown_path_is_404_not_500(endpoint: str) -> None:
    r = httpx.get(f"{endpoint}/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


def test_openai_legacy_completions_and_embeddings(oai: Any) -> None:
    done = oai.completions.create(model="tiny:1b", prompt="Once upon a time", max_tokens=8)
    assert done.object == "text_completion" and done.choices[0].text
    assert done.usage.completion_tokens > 0
    pieces = list(oai.completions.create(model="tiny:1b", prompt="Hi", stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices)
    # The official client asks for base64 by default and decodes it.
    vectors = oai.embeddings.create(model="embedder", input=["one", "two"]).data
    assert len(vectors) == 2 and len(vectors[0].embedding) == 32
