"""Anthropic Messages <-> Ollama chat, both ways: the request mapping, the folded
``message`` object, the stream's event sequence and the error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herd.convert.anthropic_request import anthropic_messages_request, count_prompt_tokens
from herd.convert.anthropic_response import (
    AnthropicStream,
    anthropic_error_body,
    anthropic_message,
)
from herd.convert.errors import error_body
from herd.errors import BadRequest, ModelNotFound, NoCapacity, RateLimited, Unauthorized
from herd.wire.anthropic import parse_count_tokens_request, parse_messages_request
from herd.wire.limits import DEFAULT_LIMITS

META: dict[str, Any] = {"request_id": "r1", "received_at": 0.0}
PNG = "iVBORw0KGgo="


def convert(**body: Any) -> dict[str, Any]:
    body = {"model": "m:1b", "max_tokens": 32, **body}
    return dict(anthropic_messages_request(parse_messages_request(body), **META).body)


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_system_blocks_turns_and_options() -> None:
    body = convert(
        system=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "text", "text": "r"}]},
            {"role": "system", "content": "late"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}],
            },
        ],
        stop_sequences=["\n\n"],
        temperature=0,
        top_k=5,
        thinking={"type": "enabled", "budget_tokens": 1024},
        keep_alive="5m",
        stream=True,
    )
    assert body["messages"] == [
        {"role": "system", "content": "a\nb"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "r"},
        {"role": "system", "content": "late"},
        {"role": "user", "content": "x\ny"},
    ]
    assert body["options"] == {"num_predict": 32, "stop": ["\n\n"], "temperature": 0, "top_k": 5}
    assert body["think"] is True and body["keep_alive"] == "5m" and body["stream"] is True
    assert "tools" not in body


def test_tool_use_and_results_keep_their_order_and_names() -> None:
    body = convert(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "t2", "name": "g", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "bad"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": PNG,
                                },
                            },
                        ],
                    },
                ],
            },
        ],
        tools=[
            {"name": "f", "input_schema": {"type": "object"}},
            {"name": "g", "description": "G", "input_schema": {"type": "object"}},
        ],
        tool_choice={"type": "tool", "name": "g"},
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": "calling",
        "thinking": "hmm",
        "tool_calls": [
            {"id": "t1", "function": {"name": "f", "arguments": {"a": 1}}},
            {"id": "t2", "function": {"name": "g", "arguments": {}}},
        ],
    }
    assert body["messages"][2:] == [
        {"role": "tool", "content": "one", "tool_call_id": "t1", "tool_name": "f"},
        {
            "role": "tool",
            "content": "Error: bad",
            "tool_call_id": "t2",
            "tool_name": "g",
            "images": [PNG],
        },
    ]
    # tool_choice "tool" keeps only the named tool; "none" drops them all.
    assert [t["function"]["name"] for t in body["tools"]] == ["g"]
    none = convert(
        messages=[{"role": "user", "content": "go"}],
        tools=[{"name": "f", "input_schema": {}}],
        tool_choice={"type": "none"},
    )
    assert "tools" not in none


def test_request_metadata_goes_to_the_routing_fields() -> None:
    parsed = parse_messages_request(
        {
            "model": "m:1b",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "u1", "tags": ["Team-A"]},
            "fallback_models": ["m:3b"],
        }
    )
    req = anthropic_messages_request(parsed, **META, header_tags="b", client="10.0.0.1")
    assert req.dialect == "anthropic" and req.kind == "chat" and req.stream is False
    assert req.client == "u1" and req.tags == ("team-a", "b")
    assert req.fallback_models == ("m:3b",) and "metadata" not in req.body


def test_count_tokens_is_chars_over_four_plus_images() -> None:
    image = {"type": "base64", "media_type": "image/png", "data": PNG}
    parsed = parse_count_tokens_request(
        {
            "model": "m:1b",
            "system": "abcd",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "efgh"}]},
                {"role": "user", "content": [{"type": "image", "source": image}]},
            ],
        }
    )
    assert count_prompt_tokens(parsed) == 2 + 256


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "max_tokens is required"),
        ({"max_tokens": DEFAULT_LIMITS.predict + 1}, "FLEET_MAX_PREDICT"),
        ({"max_tokens": 8, "top_p": 2}, "top_p"),
        ({"max_tokens": 8, "top_k": -1}, "top_k"),
        ({"max_tokens": 8, "metadata": {"user_id": 5}}, "user_id"),
        ({"max_tokens": 8, "tool_choice": {"type": "tool"}}, "name is required"),
        (
            {
                "max_tokens": 8,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/bmp",
                                    "data": PNG,
                                },
                            }
                        ],
                    }
                ],
            },
            "media_type",
        ),
        (
            {
                "max_tokens": 8,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "not base64!",
                                },
                            }
                        ],
                    }
                ],
            },
            "base64",
        ),
        (
            {"max_tokens": 8, "messages": [{"role": "system", "content": [{"type": "image"}]}]},
            "content",
        ),
    ],
)
def test_bad_requests_are_one_readable_line(body: dict[str, Any], words: str) -> None:
    body = {"model": "m:1b", "messages": [{"role": "user", "content": "x"}], **body}
    with pytest.raises(BadRequest) as caught:
        parse_messages_request(body)
    assert words in caught.value.message


def test_folded_answers_become_message_objects() -> None:
    final = {"done": True, "done_reason": "stop", "prompt_eval_count": 11, "eval_count": 4}
    text = anthropic_message(
        {**final, "message": {"role": "assistant", "content": "hi", "thinking": "t"}},
        model="m:1b",
        message_id="msg_1",
    )
    assert text == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m:1b",
        "content": [
            {"type": "thinking", "thinking": "t", "signature": ""},
            {"type": "text", "text": "hi"},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 4},
    }
    call = {"id": "c1", "function": {"name": "f", "arguments": '{"a": 2}'}}
    tools = anthropic_message(
        {**final, "message": {"role": "assistant", "content": "", "tool_calls": [call]}},
        model="m:1b",
        message_id="msg_2",
    )
    assert tools["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 2}}]
    assert tools["stop_reason"] == "tool_use"
    cut = anthropic_message(
        {**final, "done_reason": "length", "message": {"content": "abc"}},
        model="m:1b",
        message_id="msg_3",
    )
    assert cut["stop_reason"] == "max_tokens"


def test_the_stream_event_sequence() -> None:
    stream = AnthropicStream("m:1b", "msg_9")

    def chunk(**message: Any) -> dict[str, Any]:
        return {"message": {"role": "assistant", **message}, "done": False}

    raw = stream.feed_many(
        [
            chunk(thinking="th"),
            chunk(content="He"),
            chunk(content="y"),
            chunk(content="", tool_calls=[{"function": {"name": "f", "arguments": {"x": 1}}}]),
            {"done": True, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 6},
        ]
    )
    seen = events(raw)
    assert [(name, data.get("index")) for name, data in seen] == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),  # the thinking block's signature
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert all(name == data["type"] for name, data in seen)
    assert seen[0][1]["message"]["id"] == "msg_9" and seen[0][1]["message"]["content"] == []
    assert seen[3][1]["delta"] == {"type": "thinking_delta", "thinking": "th"}
    assert seen[4][1]["delta"]["type"] == "signature_delta"
    assert seen[6][1]["content_block"] == {"type": "text", "text": ""}
    assert [seen[i][1]["delta"]["text"] for i in (7, 8)] == ["He", "y"]
    block = seen[10][1]["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "f" and block["input"] == {}
    assert block["id"].startswith("toolu_")
    assert seen[11][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"x": 1}'}
    assert seen[13][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert seen[13][1]["usage"] == {"input_tokens": 5, "output_tokens": 6}
    assert stream.finished and stream.feed({"done": True}) == []


def test_an_error_chunk_and_a_late_failure_end_the_stream_with_an_error_event() -> None:
    stream = AnthropicStream("m:1b", "msg_1")
    seen = events(stream.feed_many([{"message": {"content": "a"}}, {"error": "boom"}]))
    assert seen[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "boom"}},
    )
    assert stream.finished
    late = AnthropicStream("m:1b", "msg_2")
    late.feed({"message": {"content": "a"}})
    assert events(late.error("gone"))[0][1]["error"]["message"] == "gone"


def test_error_shape_per_status() -> None:
    def kind(exc: Exception) -> str:
        body = error_body("anthropic", exc)  # type: ignore[arg-type]
        assert body["type"] == "error" and body["error"]["message"] == str(exc)
        return str(body["error"]["type"])

    assert kind(BadRequest("x")) == "invalid_request_error"
    assert kind(Unauthorized("x")) == "authentication_error"
    assert kind(ModelNotFound("x")) == "not_found_error"
    assert kind(RateLimited("x")) == "rate_limit_error"
    assert kind(NoCapacity("x")) == "overloaded_error"
    assert anthropic_error_body(502, "x")["error"]["type"] == "api_error"
    assert anthropic_error_body(413, "x")["error"]["type"] == "request_too_large"
    assert anthropic_error_body(422, "x")["error"]["type"] == "invalid_request_error"
