"""Responses API conversions: request items -> Ollama chat body, Ollama chunks -> the
``response`` object and the typed SSE event sequence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herd.convert.openai_responses_request import openai_responses_request
from herd.convert.openai_responses_stream import (
    OpenAIResponsesStream,
    openai_response,
    response_base,
)
from herd.errors import BadRequest
from herd.wire.openai_responses import ResponsesRequest, parse_responses_request

PNG = "iVBORw0KGgo="
META: dict[str, Any] = {"request_id": "r1", "received_at": 0.0}


def body_of(raw: dict[str, Any]) -> dict[str, Any]:
    return dict(openai_responses_request(parse_responses_request(raw), **META).body)


def base(raw: dict[str, Any] | None = None) -> dict[str, Any]:
    req: ResponsesRequest = parse_responses_request(raw or {"model": "m", "input": "hi"})
    return response_base(req, model="m", response_id="resp_1", created_at=1)


def events(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    writer = OpenAIResponsesStream(base())
    raw = b"".join(out for chunk in chunks for out in writer.feed(chunk))
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            head, data = block.split("\n")
            event = json.loads(data.removeprefix("data: "))
            assert head == "event: " + event["type"]
            out.append(event)
    assert writer.finished
    return out


def text(piece: str) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": piece}, "done": False}


def thought(piece: str) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": "", "thinking": piece}, "done": False}


DONE = {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
        "prompt_eval_count": 5, "eval_count": 2}  # fmt: skip


# --- requests ----------------------------------------------------------------------


def test_items_become_ollama_messages() -> None:
    body = body_of(
        {
            "model": "m",
            "instructions": "sys",
            "input": [
                {"role": "developer", "content": "dev"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                        {"type": "input_text", "text": "here"},
                    ],
                },
                {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
                {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "b", "arguments": '{"x":1}'},
                {"type": "function_call_output", "call_id": "c1", "output": "A"},
                {"type": "function_call_output", "call_id": "c2", "output": "B"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
            ],
        }
    )
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "system", "content": "dev"},
        {"role": "user", "content": "look\nhere", "images": [PNG]},
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [
                {"id": "c1", "function": {"name": "a", "arguments": {}}},
                {"id": "c2", "function": {"name": "b", "arguments": {"x": 1}}},
            ],
        },
        {"role": "tool", "content": "A", "tool_call_id": "c1", "tool_name": "a"},
        {"role": "tool", "content": "B", "tool_call_id": "c2", "tool_name": "b"},
    ]
    assert body["stream"] is False and "options" not in body


def test_tools_format_options_and_think() -> None:
    tools = [{"type": "function", "name": "f"}, {"type": "function", "name": "g"}]
    body = body_of(
        {
            "model": "m",
            "input": "hi",
            "tools": tools,
            "tool_choice": {"type": "function", "name": "g"},
            "max_output_tokens": 9,
            "seed": 3,
            "stream": True,
            "reasoning": {"effort": "low"},
            "text": {"format": {"type": "json_object"}},
        }
    )
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "g", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    assert body["options"] == {"seed": 3, "num_predict": 9}
    assert body["format"] == "json" and body["think"] == "low" and body["stream"] is True
    assert "tools" not in body_of(
        {"model": "m", "input": "hi", "tools": tools, "tool_choice": "none"}
    )
    plain = body_of({"model": "m", "input": "hi", "text": {"format": {"type": "text"}}})
    assert "format" not in plain


def test_store_is_accepted_and_ignored() -> None:
    assert body_of({"model": "m", "input": "hi", "store": True}) == body_of(
        {"model": "m", "input": "hi"}
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"model": "m", "input": "hi", "previous_response_id": "resp_1"},
        {"model": "m", "input": [{"type": "item_reference", "id": "x"}]},
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
        },
        {"model": "m", "input": [{"role": "tool", "content": "x"}]},
        {"model": "m", "input": "hi", "tool_choice": "sometimes"},
    ],
)
def test_bad_requests(raw: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        body_of(raw)


# --- the response object -----------------------------------------------------------


def test_response_object_with_reasoning_text_and_calls() -> None:
    result = {
        "message": {
            "role": "assistant",
            "content": "calling",
            "thinking": "hmm",
            "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
        },
        **{k: v for k, v in DONE.items() if k != "message"},
    }
    out = openai_response(result, base())
    assert out["status"] == "completed" and out["object"] == "response"
    assert [item["type"] for item in out["output"]] == ["reasoning", "message", "function_call"]
    assert out["output"][0]["summary"] == [{"type": "summary_text", "text": "hmm"}]
    assert out["output"][1]["content"][0]["text"] == "calling"
    call = out["output"][2]
    assert call["call_id"].startswith("call_") and json.loads(call["arguments"]) == {"a": 1}
    assert out["usage"]["input_tokens"] == 5 and out["usage"]["total_tokens"] == 7
    assert out["store"] is False and out["incomplete_details"] is None


def test_length_is_incomplete() -> None:
    out = openai_response({**DONE, "done_reason": "length"}, base())
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["output"][0]["content"][0]["text"] == ""


# --- the event sequence ------------------------------------------------------------


def test_text_event_sequence() -> None:
    got = events([text("a"), text("b"), DONE])
    assert [e["type"] for e in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert got[0]["response"]["status"] == "in_progress" and got[0]["response"]["output"] == []
    item_id = got[2]["item"]["id"]
    assert all(e["item_id"] == item_id for e in got[3:8])
    assert got[6]["text"] == "ab"
    assert got[8]["item"]["content"][0]["text"] == "ab"
    final = got[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] == 2
    assert final["output"] == [got[8]["item"]]


def test_reasoning_then_text_then_call() -> None:
    calls = [{"id": "call_1", "function": {"name": "f", "arguments": {"q": "x"}}}]
    call = {"message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": False}
    got = events([thought("think"), text("hi"), call, DONE])
    kinds = [e["type"] for e in got]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    indexes = [e["output_index"] for e in got if "output_index" in e]
    assert indexes == [0] * 6 + [1] * 6 + [2] * 4
    assert got[14]["item"]["arguments"] == "" and got[14]["item"]["status"] == "in_progress"
    assert json.loads(got[16]["arguments"]) == {"q": "x"}
    assert got[17]["item"]["call_id"] == "call_1"
    final = got[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message", "function_call"]


def test_empty_answer_is_one_empty_message_and_length_is_incomplete() -> None:
    got = events([{**DONE, "done_reason": "length"}])
    assert [e["type"] for e in got][2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert got[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_error_mid_stream_then_nothing() -> None:
    writer = OpenAIResponsesStream(base())
    first = b"".join(writer.feed(text("a")))
    assert b"response.created" in first
    tail = b"".join(writer.feed({"error": {"message": "boom"}}))
    blocks = [json.loads(b.split(b"\n")[1][6:]) for b in tail.split(b"\n\n") if b]
    assert [b["type"] for b in blocks] == ["error", "response.failed"]
    assert blocks[1]["response"]["error"] == {"code": "server_error", "message": "boom"}
    assert blocks[1]["response"]["status"] == "failed"
    assert writer.finished and writer.feed(DONE) == []
    # An error before anything was written still opens the response first.
    early = OpenAIResponsesStream(base()).error("down")
    assert early.index(b"response.created") < early.index(b"event: error")
