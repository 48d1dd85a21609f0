"""Ollama-native request parsing: accepted bodies and every rejection (BadRequest only)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herd.errors import BadRequest
from herd.wire import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    parse_chat_request,
    parse_embed_request,
    parse_embeddings_request,
    parse_generate_request,
)

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_accepts_bytes_str_and_mapping() -> None:
    for raw in (
        json.dumps(CHAT).encode(),
        json.dumps(CHAT),
        CHAT,
        memoryview(json.dumps(CHAT).encode()),
    ):
        req = parse_chat_request(raw)
        assert isinstance(req, ChatRequest)
        assert req.model == "llama3.2"
        assert req.messages[0].content == "hi"


def test_chat_keeps_unknown_fields_and_full_surface() -> None:
    body = {
        **CHAT,
        "options": {"num_ctx": 8192, "temperature": 0.2, "stop": ["\n"], "custom": "x"},
        "format": {"type": "object"},
        "think": "high",
        "keep_alive": "5m",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "stream": False,
        "client_extra": {"a": 1},
        "logprobs": True,
        "top_logprobs": 3,
    }
    req = parse_chat_request(body)
    assert req.model_extra == {"client_extra": {"a": 1}}
    assert req.streaming is False
    assert req.think == "high"


@pytest.mark.parametrize(
    ("stream", "expected"), [(None, True), (True, True), (False, False), ("absent", True)]
)
def test_stream_tri_state(stream: Any, expected: bool) -> None:
    body = dict(CHAT)
    if stream != "absent":
        body["stream"] = stream
    assert parse_chat_request(body).streaming is expected
    assert (
        parse_generate_request(
            {"model": "m", "stream": stream} if stream != "absent" else {"model": "m"}
        ).streaming
        is expected
    )


def test_roles_are_lowercased_and_tool_arguments_string_becomes_object() -> None:
    req = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "USER", "content": "x"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}],
                },
            ],
        }
    )
    assert req.messages[0].role == "user"
    calls = req.messages[1].tool_calls
    assert calls is not None
    assert calls[0].function.arguments == {"a": 1}


def test_keep_alive_number_is_not_coerced() -> None:
    assert parse_chat_request({**CHAT, "keep_alive": 300}).keep_alive == 300
    assert parse_chat_request({**CHAT, "keep_alive": -1}).keep_alive == -1
    assert parse_chat_request({**CHAT, "keep_alive": 0.5}).keep_alive == 0.5


def test_generate_embed_embeddings_accept() -> None:
    gen = parse_generate_request(
        b'{"model":"m","prompt":"p","images":["aGk="],"raw":true,"suffix":"s"}'
    )
    assert isinstance(gen, GenerateRequest)
    assert gen.images == ["aGk="]
    emb = parse_embed_request(b'{"model":"m","input":["a","b"],"dimensions":8,"truncate":false}')
    assert isinstance(emb, EmbedRequest)
    assert emb.inputs == ["a", "b"]
    assert parse_embed_request(b'{"model":"m","input":"a"}').inputs == ["a"]
    assert parse_embed_request(b'{"model":"m"}').inputs == []
    legacy = parse_embeddings_request(b'{"model":"m","prompt":"x"}')
    assert isinstance(legacy, EmbeddingsRequest)
    assert legacy.prompt == "x"


def test_empty_messages_allowed_for_ollama() -> None:
    assert parse_chat_request({"model": "m", "messages": []}).messages == []
    assert parse_chat_request({"model": "m"}).messages == []


ERRORS: list[tuple[Any, Any, str]] = [
    (parse_chat_request, None, "missing request body"),
    (parse_chat_request, b"", "missing request body"),
    (parse_chat_request, b"  \n", "missing request body"),
    (parse_chat_request, b'{"model":', "invalid JSON"),
    (parse_chat_request, b"not json", "invalid JSON"),
    (parse_chat_request, b"[1, 2]", "request body must be a JSON object"),
    (parse_chat_request, b'"text"', "request body must be a JSON object"),
    (parse_chat_request, [1], "request body must be a JSON object"),
    (parse_chat_request, b"{}", "model is required"),
    (parse_chat_request, b'{"model":""}', "model is required"),
    (parse_chat_request, b'{"model":"  "}', "model is required"),
    (parse_chat_request, b'{"model":5}', "model: Input should be a valid string"),
    (
        parse_chat_request,
        b'{"model":"m","messages":"hi"}',
        "messages: Input should be a valid array",
    ),
    (parse_chat_request, b'{"model":"m","messages":[5]}', "messages[0]"),
    (
        parse_chat_request,
        b'{"model":"m","messages":[{"content":"x"}]}',
        "messages[0].role is required",
    ),
    (
        parse_chat_request,
        b'{"model":"m","messages":[{"role":"user","content":["x"]}]}',
        "messages[0].content: Input should be a valid string",
    ),
    (
        parse_chat_request,
        b'{"model":"m","messages":[{"role":"user","images":"abc"}]}',
        "messages[0].images",
    ),
    (
        parse_chat_request,
        b'{"model":"m","stream":"yes"}',
        "stream: Input should be a valid boolean",
    ),
    (
        parse_chat_request,
        b'{"model":"m","options":{"num_ctx":"big"}}',
        'option "num_ctx" must be of type integer',
    ),
    (
        parse_chat_request,
        b'{"model":"m","options":{"temperature":true}}',
        'option "temperature" must be of type number',
    ),
    (
        parse_chat_request,
        b'{"model":"m","options":{"stop":"x"}}',
        'option "stop" must be of type array of strings',
    ),
    (
        parse_chat_request,
        b'{"model":"m","options":{"use_mmap":1}}',
        'option "use_mmap" must be of type boolean',
    ),
    (parse_chat_request, b'{"model":"m","options":[]}', "options"),
    (
        parse_chat_request,
        b'{"model":"m","format":"yaml"}',
        'format must be "json" or a JSON schema object',
    ),
    (parse_chat_request, b'{"model":"m","think":"extreme"}', "think must be true, false"),
    (
        parse_chat_request,
        b'{"model":"m","top_logprobs":21}',
        "top_logprobs must be between 0 and 20",
    ),
    (parse_chat_request, b'{"model":"m","fallback_models":"x"}', "fallback_models"),
    (
        parse_chat_request,
        b'{"model":"m","metadata":{"tags":[1]}}',
        "metadata: tags must be a list of strings",
    ),
    (
        parse_chat_request,
        b'{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"[1]"}}]}]}',
        "invalid tool call arguments",
    ),
    (
        parse_chat_request,
        b'{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{bad"}}]}]}',
        "invalid tool call arguments",
    ),
    (parse_generate_request, b'{"model":"m","prompt":5}', "prompt: Input should be a valid string"),
    (parse_generate_request, b'{"model":"m","context":["a"]}', "context[0]"),
    (parse_embed_request, b'{"model":"m","input":5}', "invalid input type"),
    (parse_embed_request, b'{"model":"m","input":[1,2]}', "invalid input type"),
    (
        parse_embed_request,
        b'{"model":"m","input":"x","dimensions":0}',
        "dimensions must be a positive integer",
    ),
    (parse_embeddings_request, b'{"prompt":"x"}', "model is required"),
    (
        parse_embeddings_request,
        b'{"model":"m","prompt":["x"]}',
        "prompt: Input should be a valid string",
    ),
]


@pytest.mark.parametrize(("parse", "raw", "message"), ERRORS)
def test_rejections_are_bad_request_with_clear_message(parse: Any, raw: Any, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(raw)
    assert message in info.value.message
    assert info.value.status == 400


def test_verbatim_messages_have_no_location_prefix() -> None:
    with pytest.raises(BadRequest) as info:
        parse_chat_request(b"{}")
    assert info.value.message == "model is required"
