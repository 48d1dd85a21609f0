"""``POST /v1/responses`` over the real app (routes, guard, dispatcher, traces) and fake
nodes, driven by the official ``openai`` client: create, stream, a function-tool round
trip, json_schema output, and bad inputs in OpenAI's error shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import openai
import pytest
from dispatch_fakes import Fleet, Reply, content, final, heartbeat, running
from openai import AsyncOpenAI

from herd.errors import NodeUnavailable
from serve_app.routes import build_app
from serve_app.service import HerdService

BASE = "http://127.0.0.1:11435"
MODEL = "tiny:1b"


@asynccontextmanager
async def herd(**over: Any) -> AsyncIterator[tuple[AsyncOpenAI, httpx.AsyncClient, Fleet]]:
    async with running(heartbeat("alpha", loaded=[MODEL]), **over) as fleet:
        app = build_app(HerdService(fleet.d.settings, fleet.d))
        transport = httpx.ASGITransport(app=app)
        sdk_http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http, sdk_http:
            client = AsyncOpenAI(
                base_url=BASE + "/v1", api_key="ollama", http_client=sdk_http, max_retries=0
            )
            yield client, http, fleet


def call_reply(name: str, arguments: dict[str, Any]) -> Reply:
    call = {"id": "call_abc", "function": {"name": name, "arguments": arguments}}
    chunk = {"model": MODEL, "message": {"role": "assistant", "content": "", "tool_calls": [call]}}
    return Reply(first=[chunk], rest=[[final(MODEL)]])


async def test_create_text_is_a_response_object_and_traced() -> None:
    async with herd() as (client, _, fleet):
        response = await client.responses.create(model=MODEL, input="hi")
        assert response.object == "response" and response.id.startswith("resp_")
        assert response.status == "completed" and response.incomplete_details is None
        assert response.output_text == "Hello world"
        assert response.output[0].type == "message"
        assert response.usage is not None
        assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 3)
        assert response.usage.total_tokens == 10
        assert response.to_dict()["store"] is False  # nothing is stored, whatever the client asked
        opened = fleet.nodes.opened[-1].req
        assert opened.kind == "chat" and opened.dialect == "openai"
        assert opened.body["messages"] == [{"role": "user", "content": "hi"}]
        records = await fleet.records()
        assert [(r.dialect, r.kind, r.http_status) for r in records] == [("openai", "chat", 200)]


async def test_instructions_and_sampling_reach_the_node() -> None:
    async with herd() as (client, _, fleet):
        await client.responses.create(
            model=MODEL,
            instructions="Be brief.",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            max_output_tokens=32,
            temperature=0.2,
            top_p=0.9,
            store=True,
        )
        body = fleet.nodes.opened[-1].req.body
        assert body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]
        assert body["options"] == {"temperature": 0.2, "top_p": 0.9, "num_predict": 32}


async def test_cut_by_max_tokens_is_incomplete() -> None:
    cut = {**final(MODEL), "done_reason": "length"}
    async with herd() as (client, _, fleet):
        fleet.nodes.script("alpha", Reply(first=[content(MODEL, "Hel")], rest=[[cut]]))
        response = await client.responses.create(model=MODEL, input="hi", max_output_tokens=1)
        assert response.status == "incomplete"
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"


async def test_stream_events_in_order_and_final_response() -> None:
    async with herd() as (client, _, _fleet):
        async with client.responses.stream(model=MODEL, input="hi") as stream:
            events = [event async for event in stream]
            final_response = await stream.get_final_response()
        kinds = [e.type for e in events]
        assert kinds == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert [e.sequence_number for e in events] == list(range(len(events)))
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert deltas == ["Hel", "lo ", "world"]
        assert final_response.output_text == "Hello world"
        assert final_response.usage is not None and final_response.usage.total_tokens == 10


async def test_stream_with_create_stream_true() -> None:
    async with herd() as (client, _, _fleet):
        stream = await client.responses.create(model=MODEL, input="hi", stream=True)
        events = [event async for event in stream]
        assert events[-1].type == "response.completed"
        assert events[-1].response.output_text == "Hello world"


async def test_function_tool_round_trip() -> None:
    tools: Any = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    async with herd() as (client, _, fleet):
        fleet.nodes.script("alpha", call_reply("get_weather", {"city": "Paris"}))
        first = await client.responses.create(model=MODEL, input="Weather in Paris?", tools=tools)
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 1 and calls[0].name == "get_weather"
        assert json.loads(calls[0].arguments) == {"city": "Paris"}
        assert calls[0].call_id == "call_abc"
        sent = fleet.nodes.opened[-1].req.body
        assert sent["tools"][0]["function"]["name"] == "get_weather"
        # The caller runs the tool and sends the whole history back (stateless).
        second = await client.responses.create(
            model=MODEL,
            tools=tools,
            input=[
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "type": "function_call",
                    "call_id": calls[0].call_id,
                    "name": calls[0].name,
                    "arguments": calls[0].arguments,
                },
                {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C"},
            ],
        )
        assert second.output_text == "Hello world"
        messages = fleet.nodes.opened[-1].req.body["messages"]
        assert messages[1]["role"] == "assistant"
        assert messages[1]["tool_calls"][0]["function"] == {
            "name": "get_weather",
            "arguments": {"city": "Paris"},
        }
        assert messages[2] == {
            "role": "tool",
            "content": "18C",
            "tool_call_id": "call_abc",
            "tool_name": "get_weather",
        }


async def test_function_call_streams_its_arguments() -> None:
    tools: Any = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    async with herd() as (client, _, fleet):
        fleet.nodes.script("alpha", call_reply("f", {"x": 1}))
        async with client.responses.stream(model=MODEL, input="go", tools=tools) as stream:
            events = [event async for event in stream]
            final_response = await stream.get_final_response()
        kinds = [e.type for e in events]
        assert kinds[2:6] == [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
        ]
        assert kinds[-1] == "response.completed"
        call = final_response.output[-1]
        assert call.type == "function_call" and json.loads(call.arguments) == {"x": 1}


async def test_json_schema_output() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    text = '{"answer": "yes"}'
    async with herd() as (client, _, fleet):
        fleet.nodes.script("alpha", Reply(first=[content(MODEL, text)], rest=[[final(MODEL)]]))
        response = await client.responses.create(
            model=MODEL,
            input="Answer in JSON",
            text={"format": {"type": "json_schema", "name": "a", "schema": schema, "strict": True}},
        )
        assert json.loads(response.output_text) == {"answer": "yes"}
        assert fleet.nodes.opened[-1].req.body["format"] == schema
        assert response.text is not None and response.text.format is not None
        assert response.text.format.type == "json_schema"
        await client.responses.create(
            model=MODEL, input="JSON please", text={"format": {"type": "json_object"}}
        )
        assert fleet.nodes.opened[-1].req.body["format"] == "json"


async def test_failure_after_first_chunk_ends_with_response_failed() -> None:
    broken = Reply(first=[content(MODEL, "Hel")], rest=[NodeUnavailable("node alpha went away")])
    async with herd() as (client, _, fleet):
        fleet.nodes.script("alpha", broken)
        stream = await client.responses.create(model=MODEL, input="hi", stream=True)
        events = [event async for event in stream]
        assert [e.type for e in events][-2:] == ["error", "response.failed"]
        failed = events[-1]
        assert failed.type == "response.failed"
        assert failed.response.status == "failed"
        assert failed.response.error is not None
        assert "went away" in failed.response.error.message


BAD = [
    ({"model": MODEL, "input": "hi", "previous_response_id": "resp_1"}, "stateless"),
    ({"model": MODEL, "input": "hi", "conversation": "conv_1"}, "stateless"),
    ({"model": MODEL, "input": [{"type": "item_reference", "id": "msg_1"}]}, "stateless"),
    ({"model": MODEL, "input": []}, "must not be empty"),
    ({"model": MODEL, "input": 5}, "input"),
    ({"model": MODEL}, "input"),
    ({"input": "hi"}, "model"),
    ({"model": MODEL, "input": "hi", "max_output_tokens": 10**9}, "FLEET_MAX_PREDICT"),
    ({"model": MODEL, "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": MODEL, "input": "hi", "temperature": 3}, "temperature"),
    ({"model": MODEL, "input": "hi", "tools": [{"type": "web_search"}]}, "function tools"),
    ({"model": MODEL, "input": [{"type": "computer_call"}]}, "not supported"),
    (
        {"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
        "not supported",
    ),
    (
        {
            "model": MODEL,
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "http://x/a.png"}],
                }
            ],
        },
        "image URLs",
    ),
    (
        {
            "model": MODEL,
            "input": [
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "not json"}
            ],
        },
        "arguments",
    ),
    ({"model": MODEL, "input": "hi", "text": {"format": {"type": "json_schema"}}}, "schema"),
    ({"model": MODEL, "input": "hi", "background": True}, "background"),
    (
        {
            "model": MODEL,
            "input": "hi",
            "tools": [{"type": "function", "name": "f"}],
            "tool_choice": {"type": "function", "name": "g"},
        },
        "tool_choice",
    ),
    ({"model": MODEL, "input": [{"role": "system", "content": "only a system"}]}, "no message"),
    (
        {"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        "image_url",
    ),
    ({"model": MODEL, "input": [5]}, "input"),
    ({"model": MODEL, "input": [{"type": 5}]}, "not supported"),
    ({"model": MODEL, "input": "hi", "text": {"format": {"type": "xml"}}}, "text.format"),
    ({"model": MODEL, "input": "hi", "tools": "x"}, "tools"),
    ({"model": MODEL, "input": "hi", "tools": ["x"]}, "function tools"),
    ({"model": MODEL, "input": "hi", "tool_choice": 5}, "tool_choice"),
    ({"model": MODEL, "input": "hi", "metadata": {"tags": 5}}, "tags"),
    ({"model": MODEL, "input": "hi", "stream": "yes"}, "stream"),
]


@pytest.mark.parametrize(("body", "words"), BAD)
async def test_bad_inputs_get_openai_error_shape(body: dict[str, Any], words: str) -> None:
    async with herd() as (_, http, fleet):
        r = await http.post("/v1/responses", json=body)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert words in error["message"]
        assert fleet.nodes.opened == []


async def test_bad_input_through_the_client_raises_bad_request() -> None:
    async with herd() as (client, http, _fleet):
        with pytest.raises(openai.BadRequestError, match="stateless"):
            await client.responses.create(model=MODEL, input="hi", previous_response_id="r1")
        r = await http.post("/v1/responses", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="missing:1b", input="hi")
