"""``/v1/messages`` and ``/v1/messages/count_tokens`` over the real app (guard, routes,
dispatcher, traces) and fake nodes, driven by the official ``anthropic`` client."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx2
import pytest
from dispatch_fakes import Fleet, Reply, content, final, heartbeat, running

from herd.errors import BackendError
from serve_app.routes import build_app
from serve_app.service import HerdService

BASE = "http://127.0.0.1:11435"
MODEL = "tiny:1b"
HI: Any = [{"role": "user", "content": "hi"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@asynccontextmanager
async def client(**over: Any) -> AsyncIterator[tuple[anthropic.AsyncAnthropic, Fleet]]:
    async with running(heartbeat("alpha", loaded=[MODEL]), **over) as fleet:
        app = build_app(HerdService(fleet.d.settings, fleet.d))
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE)
        async with http:
            yield (
                anthropic.AsyncAnthropic(
                    api_key="sk-ant-anything", base_url=BASE, http_client=http, max_retries=0
                ),
                fleet,
            )


def tool_call_reply() -> Reply:
    call = {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    first = {
        "model": MODEL,
        "message": {"role": "assistant", "content": "", "tool_calls": [call]},
        "done": False,
    }
    return Reply(first=[first], rest=[[final(MODEL)]])


async def test_create_sends_system_turns_and_sampling_and_answers_a_message() -> None:
    async with client() as (ac, fleet):
        message = await ac.messages.create(
            model=MODEL,
            max_tokens=64,
            system=[{"type": "text", "text": "Be brief."}],
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
            ],
            stop_sequences=["END"],
            metadata={"user_id": "u-42"},
            # This client version has no sampling arguments; older ones and LangChain send
            # them in the body.
            extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 40},
        )
        assert message.type == "message" and message.role == "assistant"
        assert message.id.startswith("msg_")
        assert [b.type for b in message.content] == ["text"]
        assert message.content[0].text == "Hello world"  # type: ignore[union-attr]
        assert message.stop_reason == "end_turn" and message.stop_sequence is None
        assert message.usage.input_tokens == 7 and message.usage.output_tokens == 3
        assert message.model == MODEL
        body = fleet.nodes.opened[0].req.body
        assert fleet.nodes.opened[0].req.dialect == "anthropic"
        assert body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "again"},
        ]
        assert body["options"] == {
            "num_predict": 64,
            "stop": ["END"],
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
        }
        [record] = await fleet.records()
        assert record.dialect == "anthropic" and record.kind == "chat"
        assert record.client == "u-42" and record.status == "ok"


async def test_stream_text_has_the_full_event_sequence() -> None:
    async with client() as (ac, _fleet):
        raw = await ac.messages.create(model=MODEL, max_tokens=16, messages=HI, stream=True)
        kinds = [event.type async for event in raw]
        assert kinds == [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]  # the ping is skipped by the client
        async with ac.messages.stream(model=MODEL, max_tokens=16, messages=HI) as stream:
            texts = [text async for text in stream.text_stream]
            message = await stream.get_final_message()
        assert texts == ["Hel", "lo ", "world"]
        assert message.content[0].text == "Hello world"  # type: ignore[union-attr]
        assert message.stop_reason == "end_turn"
        assert message.usage.input_tokens == 7 and message.usage.output_tokens == 3


async def test_tools_and_tool_results_round_trip() -> None:
    async with client() as (ac, fleet):
        fleet.nodes.script("alpha", tool_call_reply(), tool_call_reply())
        ask: Any = [{"role": "user", "content": "Weather in Paris?"}]
        message = await ac.messages.create(
            model=MODEL, max_tokens=64, messages=ask, tools=[WEATHER]
        )
        assert message.stop_reason == "tool_use"
        [use] = message.content
        assert use.type == "tool_use" and use.name == "get_weather"
        assert use.input == {"city": "Paris"}
        tools = fleet.nodes.opened[0].req.body["tools"]
        assert tools == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": WEATHER["input_schema"],
                    "description": "The weather in a city",
                },
            }
        ]
        async with ac.messages.stream(
            model=MODEL, max_tokens=64, messages=ask, tools=[WEATHER]
        ) as stream:
            streamed = await stream.get_final_message()
        assert streamed.stop_reason == "tool_use"
        assert streamed.content[0].input == {"city": "Paris"}  # type: ignore[union-attr]
        # The client answers the call: the result goes to the node as a tool message.
        follow: Any = [
            *ask,
            {"role": "assistant", "content": [use.model_dump()]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "18 C, sunny"},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ]
        answer = await ac.messages.create(
            model=MODEL, max_tokens=64, messages=follow, tools=[WEATHER]
        )
        assert answer.stop_reason == "end_turn"
        sent = fleet.nodes.opened[-1].req.body["messages"]
        assert sent[1] == {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": use.id, "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            ],
        }
        assert sent[2] == {
            "role": "tool",
            "content": "18 C, sunny",
            "tool_call_id": use.id,
            "tool_name": "get_weather",
        }
        assert sent[3] == {"role": "user", "content": "Thanks"}


async def test_images_become_ollama_images() -> None:
    async with client() as (ac, fleet):
        image = {"type": "base64", "media_type": "image/png", "data": PNG}
        blocks = [{"type": "image", "source": image}, {"type": "text", "text": "What is this?"}]
        asked: Any = [{"role": "user", "content": blocks}]
        await ac.messages.create(model=MODEL, max_tokens=8, messages=asked)
        [sent] = fleet.nodes.opened[0].req.body["messages"]
        assert sent == {"role": "user", "content": "What is this?", "images": [PNG]}


async def test_count_tokens_is_the_routers_estimate() -> None:
    async with client() as (ac, fleet):
        counted = await ac.messages.count_tokens(
            model=MODEL, system="x" * 8, messages=[{"role": "user", "content": "y" * 12}]
        )
        assert counted.input_tokens == 5  # 20 characters / 4
        with_tools = await ac.messages.count_tokens(model=MODEL, messages=HI, tools=[WEATHER])
        assert with_tools.input_tokens > 1
        assert fleet.nodes.opened == []  # no node is asked


BAD_BODIES: list[tuple[dict[str, Any], int, str, str]] = [
    ({"model": MODEL, "messages": HI}, 400, "invalid_request_error", "max_tokens is required"),
    ({"model": MODEL, "max_tokens": 0, "messages": HI}, 400, "invalid_request_error", "at least"),
    (
        {"model": MODEL, "max_tokens": 10**9, "messages": HI},
        400,
        "invalid_request_error",
        "FLEET_MAX_PREDICT",
    ),
    ({"model": MODEL, "max_tokens": 8, "messages": []}, 400, "invalid_request_error", "messages"),
    (
        {"model": MODEL, "max_tokens": 8, "messages": [{"role": "tool", "content": "x"}]},
        400,
        "invalid_request_error",
        "role",
    ),
    (
        {"model": MODEL, "max_tokens": 8, "messages": HI, "temperature": 1.5},
        400,
        "invalid_request_error",
        "temperature",
    ),
    (
        {
            "model": MODEL,
            "max_tokens": 8,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}
                    ],
                }
            ],
        },
        400,
        "invalid_request_error",
        "base64",
    ),
    (
        {
            "model": MODEL,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
        },
        400,
        "invalid_request_error",
        "document",
    ),
    (
        {
            "model": MODEL,
            "max_tokens": 8,
            "messages": HI,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        },
        400,
        "invalid_request_error",
        "custom tools",
    ),
    (
        {
            "model": MODEL,
            "max_tokens": 8,
            "messages": HI,
            "tools": [WEATHER],
            "tool_choice": {"type": "tool", "name": "nope"},
        },
        400,
        "invalid_request_error",
        "not in tools",
    ),
    ({"model": "no-such:7b", "max_tokens": 8, "messages": HI}, 404, "not_found_error", "no-such"),
    ({"model": "bad name!", "max_tokens": 8, "messages": HI}, 400, "invalid_request_error", "name"),
]


@pytest.mark.parametrize(("body", "status", "kind", "words"), BAD_BODIES)
async def test_bad_input_gets_anthropics_error_shape(
    body: dict[str, Any], status: int, kind: str, words: str
) -> None:
    async with client() as (ac, fleet):
        with pytest.raises(anthropic.APIStatusError) as caught:
            # Through the client's own request path, so it parses the error as it would.
            await ac.post("/v1/messages", body=body, cast_to=anthropic.types.Message)
        err = caught.value
        assert err.status_code == status
        assert isinstance(err.body, dict) and err.body["type"] == "error"
        assert err.body["error"]["type"] == kind
        assert words in err.body["error"]["message"]
        [record] = await fleet.records()
        assert record.dialect == "anthropic" and record.status != "ok"


async def test_raw_bad_bodies_and_count_tokens_errors_are_anthropic_shaped() -> None:
    async with client() as (ac, _fleet):
        http = ac._client
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            for raw in (b"", b"{not json", b"[1, 2]", b'{"model": 5}'):
                r = await http.post(path, content=raw, headers={"content-type": "application/json"})
                assert r.status_code == 400, (path, raw, r.text)
                assert r.json()["type"] == "error", r.text
                assert r.json()["error"]["type"] == "invalid_request_error"
        # An unknown path under /v1/messages: denied by default (admin), in Anthropic's shape.
        r = await http.post("/v1/messages/nope", json={})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        r = await http.get("/v1/messages")
        assert r.status_code in (401, 405) and r.json()["type"] == "error"
        r = await http.post("/v1/messages/count_tokens", json={"model": MODEL, "messages": []})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


async def test_keys_are_checked_from_x_api_key() -> None:
    async with client(api_keys="alice:alice-key-0123456789") as (ac, _fleet):
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await ac.messages.create(model=MODEL, max_tokens=8, messages=HI)
        assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        keyed = ac.with_options(api_key="alice-key-0123456789")
        message = await keyed.messages.create(model=MODEL, max_tokens=8, messages=HI)
        assert message.stop_reason == "end_turn"


async def test_a_failure_mid_stream_ends_with_an_error_event() -> None:
    async with client() as (ac, fleet):
        broken = Reply(first=[content(MODEL, "Hel")], rest=[BackendError("node fell over")])
        fleet.nodes.script("alpha", broken)
        raw = await ac.messages.create(model=MODEL, max_tokens=16, messages=HI, stream=True)
        seen: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as caught:
            async for event in raw:
                seen.append(event.type)
        assert seen[:2] == ["message_start", "content_block_start"]
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["error"]["type"] == "api_error"
        assert "node fell over" in json.dumps(caught.value.body)
