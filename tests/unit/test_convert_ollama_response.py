"""Ollama-dialect output: NDJSON lines and the non-streamed fold, checked with ollama-python."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import ollama
import pytest

from herd.convert import (
    OllamaAggregator,
    fold_chunks,
    ndjson_line,
    ollama_embeddings_body,
    ollama_error_body,
    ollama_tags_body,
)
from herd.domain import ModelOnDisk
from herd.errors import BackendError

TS = "2025-07-07T20:22:19.184789Z"
METRICS = {
    "total_duration": 182242375,
    "load_duration": 41295167,
    "prompt_eval_count": 169,
    "prompt_eval_duration": 24573166,
    "eval_count": 15,
    "eval_duration": 115959084,
}


def chat_chunk(content: str = "", done: bool = False, **message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "llama3.2",
        "created_at": TS,
        "message": {"role": "assistant", "content": content, **message},
        "done": done,
    }
    if done:
        out.update(done_reason="stop", **METRICS)
    return out


def gen_chunk(text: str = "", done: bool = False, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "llama3.2",
        "created_at": TS,
        "response": text,
        "done": done,
        **extra,
    }
    if done:
        out.update(done_reason="stop", context=[1, 2, 3], **METRICS)
    return out


CALL_A = {
    "id": "call_a",
    "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}},
}
CALL_B = {"function": {"name": "get_time", "arguments": {}}}
CHAT_STREAM = [
    chat_chunk(thinking="Let me "),
    chat_chunk(thinking="think."),
    chat_chunk("The"),
    chat_chunk(" answer", tool_calls=[CALL_A]),
    chat_chunk(tool_calls=[CALL_B]),
    chat_chunk(done=True),
]


@pytest.mark.parametrize("item", [*CHAT_STREAM, {"error": "boom"}, {"x": "a\nb\u2028ü"}])
def test_ndjson_line_is_one_line_round_trip(item: dict[str, Any]) -> None:
    line = ndjson_line(item)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.strip()
    assert json.loads(line) == item


def test_ndjson_chat_chunks_parse_with_ollama_types() -> None:
    for item in CHAT_STREAM:
        ollama.ChatResponse.model_validate(json.loads(ndjson_line(item)))


def test_fold_chat() -> None:
    folded = fold_chunks("chat", CHAT_STREAM)
    assert folded["message"] == {
        "role": "assistant",
        "content": "The answer",
        "thinking": "Let me think.",
        "tool_calls": [CALL_A, CALL_B],
    }
    assert folded["done"] is True and folded["done_reason"] == "stop"
    for key, value in METRICS.items():
        assert folded[key] == value
    assert folded["model"] == "llama3.2" and folded["created_at"] == TS
    parsed = ollama.ChatResponse.model_validate(folded)
    assert parsed.message.tool_calls is not None and parsed.message.tool_calls[
        0
    ].function.arguments == {"city": "Tokyo"}


def test_fold_chat_without_extras_has_no_empty_keys() -> None:
    folded = fold_chunks("chat", [chat_chunk("a"), chat_chunk("b", done=True)])
    assert folded["message"] == {"role": "assistant", "content": "ab"}
    assert "logprobs" not in folded


def test_fold_single_non_streamed_response_is_identity() -> None:
    whole = chat_chunk("everything", done=True)
    assert fold_chunks("chat", [whole]) == whole


def test_fold_generate() -> None:
    lp = [{"token": "a", "logprob": -0.5}]
    folded = fold_chunks(
        "generate",
        [
            gen_chunk("Once", thinking="hm", logprobs=lp),
            gen_chunk(" upon", logprobs=lp),
            gen_chunk(done=True),
        ],
    )
    assert folded["response"] == "Once upon"
    assert folded["thinking"] == "hm"
    assert folded["context"] == [1, 2, 3]
    assert folded["logprobs"] == lp + lp
    parsed = ollama.GenerateResponse.model_validate(folded)
    assert parsed.response == "Once upon" and parsed.eval_count == 15


def test_fold_errors() -> None:
    agg = OllamaAggregator("chat")
    agg.feed(chat_chunk("a"))
    assert not agg.done
    with pytest.raises(BackendError, match="ended before the final chunk"):
        agg.result()
    with pytest.raises(BackendError, match="boom"):
        agg.feed({"error": "boom"})
    with pytest.raises(BackendError, match="nested"):
        OllamaAggregator("generate").feed({"error": {"message": "nested"}})


def test_error_body() -> None:
    assert ollama_error_body("model 'x' not found") == {"error": "model 'x' not found"}


def test_embeddings_body() -> None:
    assert ollama_embeddings_body({"model": "e", "embeddings": [[0.1, 0.2]]}) == {
        "embedding": [0.1, 0.2]
    }
    assert ollama_embeddings_body({"embedding": [0.5]}) == {"embedding": [0.5]}
    assert ollama_embeddings_body({"embeddings": []}) == {"embedding": []}
    ollama.EmbeddingsResponse.model_validate(ollama_embeddings_body({"embeddings": [[1.0]]}))


def test_tags_body() -> None:
    models = [
        ModelOnDisk(
            name="llama3.2:latest",
            size=2019393189,
            family="llama",
            parameter_size="3.2B",
            quantization_level="Q4_K_M",
            modified_at="2025-05-04T17:37:44.706015396-07:00",
            digest="a80c",
        ),
        ModelOnDisk(name="LLAMA3.2", size=1),
        ModelOnDisk(name="nomic-embed-text:latest"),
    ]
    body = ollama_tags_body(models)
    assert [m["name"] for m in body["models"]] == ["llama3.2:latest", "nomic-embed-text:latest"]
    first = body["models"][0]
    assert first["details"]["families"] == ["llama"] and first["size"] == 2019393189
    parsed = ollama.ListResponse.model_validate(body)
    assert parsed.models[0].model == "llama3.2:latest"
    assert ollama_tags_body([]) == {"models": []}


def mock_ollama(body: bytes, content_type: str) -> ollama.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    return ollama.Client(host="http://herd.test", transport=httpx.MockTransport(handler))


def test_ollama_client_streams_our_ndjson() -> None:
    client = mock_ollama(b"".join(ndjson_line(c) for c in CHAT_STREAM), "application/x-ndjson")
    parts = list(
        client.chat(model="llama3.2", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert "".join(p.message.content or "" for p in parts) == "The answer"
    assert parts[-1].done and parts[-1].eval_count == 15


def test_ollama_client_reads_folded_bodies() -> None:
    chat: Callable[..., Any] = mock_ollama(
        json.dumps(fold_chunks("chat", CHAT_STREAM)).encode(), "application/json"
    ).chat
    reply = chat(model="llama3.2", messages=[{"role": "user", "content": "x"}], stream=False)
    assert reply.message.content == "The answer" and reply.message.thinking == "Let me think."
    gen_body = fold_chunks("generate", [gen_chunk("a"), gen_chunk(done=True)])
    reply = mock_ollama(json.dumps(gen_body).encode(), "application/json").generate(
        model="llama3.2", prompt="x"
    )
    assert reply.response == "a"


def test_ollama_client_raises_on_error_line() -> None:
    body = ndjson_line(chat_chunk("a")) + ndjson_line(ollama_error_body("runner died"))
    client = mock_ollama(body, "application/x-ndjson")
    with pytest.raises(ollama.ResponseError, match="runner died"):
        list(
            client.chat(model="llama3.2", messages=[{"role": "user", "content": "x"}], stream=True)
        )


def test_ndjson_lines_batches() -> None:
    from herd.convert import ndjson_lines

    assert ndjson_lines(CHAT_STREAM) == b"".join(ndjson_line(c) for c in CHAT_STREAM)
    assert ndjson_lines([]) == b""
