"""Ollama-native bodies become InferenceRequests unchanged (minus herd's own fields)."""

from __future__ import annotations

from typing import Any

import pytest

from herd.convert import (
    estimate_tokens,
    fallback_chain,
    ollama_chat_request,
    ollama_embed_request,
    ollama_embeddings_request,
    ollama_generate_request,
    request_tags,
)
from herd.domain import InferenceRequest
from herd.wire import (
    parse_chat_request,
    parse_embed_request,
    parse_embeddings_request,
    parse_generate_request,
)

IDS: dict[str, Any] = {"request_id": "req-1", "received_at": 123.5}


def chat(body: dict[str, Any], **kw: Any) -> InferenceRequest:
    return ollama_chat_request(parse_chat_request(body), **IDS, **kw)


def test_chat_passthrough_keeps_every_backend_field() -> None:
    body = {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi", "images": ["aGk="]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call_a", "function": {"name": "f", "arguments": {"x": 1}}}],
            },
            {"role": "tool", "content": "1", "tool_name": "f"},
        ],
        "options": {"num_ctx": 4096, "temperature": 0.1, "stop": ["x"], "unknown_opt": 1},
        "format": {"type": "object", "properties": {"a": {"type": "string"}}},
        "think": False,
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "keep_alive": "10m",
        "stream": False,
        "truncate": True,
        "some_future_field": [1, 2],
        "metadata": {"tags": ["App"]},
        "fallback_models": ["qwen3:8b"],
    }
    ir = chat(body)
    expected = {k: v for k, v in body.items() if k not in ("metadata", "fallback_models")}
    assert ir.body == expected
    assert ir.kind == "chat" and ir.dialect == "ollama"
    assert ir.request_id == "req-1" and ir.received_at == 123.5
    assert ir.stream is False
    assert ir.model == "llama3.2"
    assert ir.fallback_models == ("qwen3:8b",)
    assert ir.tags == ("app",)


@pytest.mark.parametrize(("stream", "expected"), [(None, True), (True, True), (False, False)])
def test_stream_tri_state_resolved_and_body_untouched(stream: bool | None, expected: bool) -> None:
    body: dict[str, Any] = {"model": "m", "messages": []}
    if stream is not None:
        body["stream"] = stream
    ir = chat(body)
    assert ir.stream is expected
    assert ir.body.get("stream") == stream


def test_null_fields_are_dropped_and_herd_fields_never_reach_backend() -> None:
    ir = chat(
        {"model": "m", "format": None, "metadata": None, "fallback_models": None, "think": None}
    )
    assert ir.body == {"model": "m"}


def test_tool_arguments_string_is_sent_as_object() -> None:
    ir = chat(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"function": {"name": "f", "arguments": '{"a":2}'}}],
                }
            ],
        }
    )
    assert ir.body["messages"][0]["tool_calls"][0]["function"]["arguments"] == {"a": 2}


def test_generate_passthrough() -> None:
    body = {
        "model": "m",
        "prompt": "Why?",
        "suffix": "end",
        "system": "sys",
        "images": ["aGk="],
        "raw": False,
        "format": "json",
        "think": "low",
        "options": {"num_predict": 5},
        "keep_alive": 0,
        "context": [1, 2],
    }
    ir = ollama_generate_request(parse_generate_request(body), **IDS)
    assert ir.body == body
    assert ir.kind == "generate" and ir.stream is True
    assert ir.estimated_tokens == estimate_tokens(len("Why?") + len("sys") + len("end"), 1)


def test_embed_and_embeddings_passthrough() -> None:
    body = {
        "model": "e",
        "input": ["a", "bb"],
        "dimensions": 3,
        "truncate": False,
        "keep_alive": "1m",
    }
    ir = ollama_embed_request(parse_embed_request(body), **IDS)
    assert ir.body == body and ir.kind == "embed" and ir.stream is False
    assert ir.estimated_tokens == 1
    legacy = ollama_embeddings_request(
        parse_embeddings_request({"model": "e", "prompt": "abcdefgh"}), **IDS
    )
    assert legacy.body == {"model": "e", "prompt": "abcdefgh"}
    assert legacy.kind == "embeddings" and legacy.estimated_tokens == 2


def test_tags_from_body_and_header_are_merged() -> None:
    ir = chat(
        {"model": "m", "metadata": {"tags": [" My-App ", "prod", "", "PROD"]}},
        header_tags="prod, team-x ,, My-App",
        client="10.0.0.1",
    )
    assert ir.tags == ("my-app", "prod", "team-x")
    assert ir.client == "10.0.0.1"


@pytest.mark.parametrize(
    ("body_tags", "header", "expected"),
    [
        (None, None, ()),
        ([], "", ()),
        (["A"], None, ("a",)),
        (None, "a, b", ("a", "b")),
        (["b", "a"], "a,c", ("b", "a", "c")),
        (["  "], " , ", ()),
    ],
)
def test_request_tags_table(
    body_tags: list[str] | None, header: str | None, expected: tuple[str, ...]
) -> None:
    assert request_tags(body_tags, header) == expected


def test_metadata_tags_as_comma_string() -> None:
    assert chat({"model": "m", "metadata": {"tags": "a, b"}}).tags == ("a", "b")


@pytest.mark.parametrize(
    ("primary", "fallbacks", "expected"),
    [
        ("m", None, ()),
        ("m", [], ()),
        (
            "llama3",
            ["llama3:latest", "LLAMA3", "qwen", " qwen:latest ", "", "phi"],
            ("qwen", "phi"),
        ),
        ("a:7b", ["a:13b", "a:7b"], ("a:13b",)),
    ],
)
def test_fallback_chain_table(
    primary: str, fallbacks: list[str] | None, expected: tuple[str, ...]
) -> None:
    assert fallback_chain(primary, fallbacks) == expected


def test_estimated_tokens_chat_counts_text_images_and_tools() -> None:
    ir = chat(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x" * 40, "images": ["aGk=", "aGk="]}],
        }
    )
    assert ir.estimated_tokens == 10 + 2 * 256
    with_tools = chat(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x" * 40}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
        }
    )
    assert with_tools.estimated_tokens > 10


def test_inference_request_pickles() -> None:
    import pickle

    ir = chat(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "fallback_models": ["x"]}
    )
    assert pickle.loads(pickle.dumps(ir)) == ir
