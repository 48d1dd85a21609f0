"""Non-streamed OpenAI objects, embeddings, models and error envelopes."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion

from herd.convert import (
    embedding_base64,
    fold_chunks,
    openai_chat_completion,
    openai_completion,
    openai_embedding_response,
    openai_error_body,
    openai_model,
    openai_model_list,
)
from herd.domain import ModelOnDisk

KW: dict[str, Any] = {"model": "llama3.2", "created": 1751919773, "completion_id": "chatcmpl-1"}
METRICS = {"prompt_eval_count": 169, "eval_count": 18}


def ollama_chat(content: str = "", **message: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": "2025-07-07T20:22:19Z",
        "message": {"role": "assistant", "content": content, **message},
        "done": True,
        "done_reason": "stop",
        **METRICS,
    }


def test_chat_completion_text() -> None:
    obj = openai_chat_completion(ollama_chat("Hello"), **KW)
    parsed = ChatCompletion.model_validate(obj)
    assert (
        parsed.id == "chatcmpl-1"
        and parsed.object == "chat.completion"
        and parsed.created == 1751919773
    )
    assert (
        parsed.choices[0].message.content == "Hello"
        and parsed.choices[0].message.role == "assistant"
    )
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage is not None and (
        parsed.usage.prompt_tokens,
        parsed.usage.completion_tokens,
        parsed.usage.total_tokens,
    ) == (169, 18, 187)


def test_chat_completion_tool_calls_and_reasoning() -> None:
    calls = [
        {
            "id": "call_k3j9x0qa",
            "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}},
        },
        {"function": {"name": "f", "arguments": {}}},
    ]
    obj = openai_chat_completion(ollama_chat("", tool_calls=calls, thinking="hmm"), **KW)
    parsed = ChatCompletion.model_validate(obj)
    message = parsed.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    first = message.tool_calls[0]
    assert first.type == "function" and first.id == "call_k3j9x0qa"
    assert first.function.name == "get_weather" and json.loads(first.function.arguments) == {
        "city": "Tokyo"
    }
    assert message.tool_calls[1].id.startswith("call_")
    assert "index" not in obj["choices"][0]["message"]["tool_calls"][0]
    assert parsed.choices[0].finish_reason == "tool_calls"
    assert message.model_extra == {"reasoning": "hmm"}


@pytest.mark.parametrize(
    ("done_reason", "expected"), [("length", "length"), (None, "stop"), ("load", "stop")]
)
def test_chat_completion_finish_reason(done_reason: str | None, expected: str) -> None:
    response = ollama_chat("x")
    response["done_reason"] = done_reason
    assert (
        ChatCompletion.model_validate(openai_chat_completion(response, **KW))
        .choices[0]
        .finish_reason
        == expected
    )


def test_chat_completion_from_folded_stream_with_logprobs() -> None:
    lp = [{"token": "a", "logprob": -0.1, "top_logprobs": [{"token": "a", "logprob": -0.1}]}]
    chunks = [
        {
            "model": "m",
            "message": {"role": "assistant", "content": "a"},
            "logprobs": lp,
            "done": False,
        },
        {
            "model": "m",
            "message": {"role": "assistant", "content": "b"},
            "logprobs": lp,
            "done": False,
        },
        {
            "model": "m",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "length",
        },
    ]
    parsed = ChatCompletion.model_validate(
        openai_chat_completion(fold_chunks("chat", chunks), **KW)
    )
    assert parsed.choices[0].message.content == "ab" and parsed.choices[0].finish_reason == "length"
    assert parsed.choices[0].logprobs is not None and parsed.choices[0].logprobs.content is not None
    assert len(parsed.choices[0].logprobs.content) == 2
    assert parsed.usage is not None and parsed.usage.total_tokens == 0


def test_text_completion() -> None:
    response = {
        "model": "m",
        "response": "Once upon",
        "done": True,
        "done_reason": "length",
        **METRICS,
    }
    obj = openai_completion(response, model="m", created=5, completion_id="cmpl-9")
    parsed = Completion.model_validate(obj)
    assert parsed.object == "text_completion" and parsed.id == "cmpl-9"
    assert parsed.choices[0].text == "Once upon" and parsed.choices[0].finish_reason == "length"
    assert parsed.usage is not None and parsed.usage.total_tokens == 187


VECTORS = [[0.5, -0.25, 1.0], [0.0, 0.125, -2.0]]


def test_embedding_float_and_base64() -> None:
    response = {"model": "e", "embeddings": VECTORS, "prompt_eval_count": 8}
    floats = openai_embedding_response(response, model="e")
    parsed = CreateEmbeddingResponse.model_validate(floats)
    assert [d.embedding for d in parsed.data] == VECTORS and [d.index for d in parsed.data] == [
        0,
        1,
    ]
    assert parsed.usage.prompt_tokens == parsed.usage.total_tokens == 8
    packed = openai_embedding_response(response, model="e", encoding_format="base64")
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(struct.unpack("<3f", raw)) == VECTORS[0]
    assert openai_embedding_response({"embedding": [1.0]}, model="e")["data"][0]["embedding"] == [
        1.0
    ]
    assert embedding_base64([]) == ""


def test_models() -> None:
    model = ModelOnDisk(name="llama3.2:latest", modified_at="2025-05-04T17:37:44.706015396-07:00")
    obj = openai_model(model)
    Model.model_validate(obj)
    assert obj == {
        "id": "llama3.2:latest",
        "object": "model",
        "created": 1746405464,
        "owned_by": "library",
    }
    assert openai_model(ModelOnDisk(name="hf.co/bartowski/qwen:Q4"))["owned_by"] == "bartowski"
    assert openai_model(ModelOnDisk(name="me/mine:1b"))["owned_by"] == "me"
    assert openai_model(ModelOnDisk(name="x", modified_at="garbage"))["created"] == 0
    listing = openai_model_list(
        [
            model,
            ModelOnDisk(name="LLAMA3.2", modified_at="2026-01-01T00:00:00Z"),
            ModelOnDisk(name="qwen3:8b"),
        ]
    )
    assert [m["id"] for m in listing["data"]] == ["llama3.2:latest", "qwen3:8b"]
    assert listing["data"][0]["created"] == 1767225600
    assert openai_model_list([]) == {"object": "list", "data": []}
    for item in listing["data"]:
        Model.model_validate(item)


@pytest.mark.parametrize(
    ("status", "code", "kind", "expected_code"),
    [
        (400, None, "invalid_request_error", None),
        (404, None, "invalid_request_error", "model_not_found"),
        (404, "not_found", "invalid_request_error", "not_found"),
        (413, None, "invalid_request_error", None),
        (422, None, "invalid_request_error", None),
        (429, None, "requests", "rate_limit_exceeded"),
        (500, None, "server_error", None),
        (502, "backend_error", "server_error", "backend_error"),
        (503, None, "server_error", None),
    ],
)
def test_openai_error_body(
    status: int, code: str | None, kind: str, expected_code: str | None
) -> None:
    body = openai_error_body(status, "msg", code)
    assert body == {"error": {"message": "msg", "type": kind, "param": None, "code": expected_code}}


# -- through the official client ------------------------------------------------------


@pytest.fixture
def respond() -> Iterator[Callable[[int, Any], openai.OpenAI]]:
    clients: list[openai.OpenAI] = []

    def make(status: int, body: Any) -> openai.OpenAI:
        def handler(request: httpx2.Request) -> httpx2.Response:
            return httpx2.Response(status, json=body)

        client = openai.OpenAI(
            base_url="http://herd.test/v1",
            api_key="x",
            max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_client_decodes_default_base64_embeddings(
    respond: Callable[[int, Any], openai.OpenAI],
) -> None:
    body = openai_embedding_response(
        {"embeddings": VECTORS, "prompt_eval_count": 4}, model="e", encoding_format="base64"
    )
    result = respond(200, body).embeddings.create(model="e", input=["a", "b"])
    assert [d.embedding for d in result.data] == VECTORS


def test_client_reads_chat_and_models(respond: Callable[[int, Any], openai.OpenAI]) -> None:
    completion = respond(
        200, openai_chat_completion(ollama_chat("hi"), **KW)
    ).chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "hi"
    models = respond(200, openai_model_list([ModelOnDisk(name="a:1")])).models.list()
    assert [m.id for m in models] == ["a:1"]


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (503, openai.InternalServerError),
    ],
)
def test_client_maps_error_envelopes(
    respond: Callable[[int, Any], openai.OpenAI], status: int, exc: type[Exception]
) -> None:
    client = respond(status, openai_error_body(status, "The model `foo` does not exist"))
    with pytest.raises(exc) as info:
        client.models.retrieve("foo")
    err = info.value
    assert isinstance(err, openai.APIStatusError)
    assert "The model `foo` does not exist" in err.message
    if status == 404:
        assert err.code == "model_not_found" and err.type == "invalid_request_error"
