"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` through the fleet, judged by
the official ``anthropic`` client and LangChain's ``ChatAnthropic``: create and stream
on the real smollm2 (llama.cpp, translated: it has no ``/v1/messages``) and on the
emulators, a tool round trip, and Anthropic's error shape for bad input."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

pytestmark = pytest.mark.integration

SMOL = "smollm2:135m"
TINY = "tiny:1b"
HELLO: Any = [{"role": "user", "content": "Hello!"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def ac(endpoint: str) -> Any:
    client = anthropic.Anthropic(base_url=endpoint, api_key="not-needed", max_retries=0)
    yield client
    client.close()


def test_create_and_stream_on_real_llamacpp(ac: Any) -> None:
    raw = ac.messages.with_raw_response.create(
        model=SMOL, max_tokens=48, system="Answer in one short sentence.", messages=HELLO
    )
    message = raw.parse()
    assert raw.headers["x-herd-node"] == "smol"
    assert message.type == "message" and message.content[0].type == "text"
    assert message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    with ac.messages.stream(model=SMOL, max_tokens=48, messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    assert final.content[0].text.strip() and final.usage.output_tokens > 0
    assert final.usage.input_tokens > 0  # from message_delta: message_start says 0


def test_tool_round_trip_on_the_emulators(ac: Any) -> None:
    ask: Any = [{"role": "user", "content": "What's the weather in Tokyo?"}]
    first = ac.messages.create(model=TINY, max_tokens=64, messages=ask, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Tokyo"}
    with ac.messages.stream(model=TINY, max_tokens=64, messages=ask, tools=[WEATHER]) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use"
    assert [b.input for b in streamed.content if b.type == "tool_use"] == [{"city": "Tokyo"}]
    follow: Any = [
        *ask,
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C, sunny"}],
        },
    ]
    answer = ac.messages.create(model=TINY, max_tokens=64, messages=follow, tools=[WEATHER])
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert answer.content[0].type == "text" and answer.content[0].text


def test_count_tokens(ac: Any) -> None:
    counted = ac.messages.count_tokens(model=TINY, messages=[{"role": "user", "content": "x" * 40}])
    assert counted.input_tokens == 10


def test_bad_input_is_anthropics_error_shape(endpoint: str, ac: Any) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        ac.messages.create(model="no-such-model:1b", max_tokens=8, messages=HELLO)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        # Streamed: the client refuses a non-streamed request this long by itself.
        ac.messages.create(model=TINY, max_tokens=10**9, messages=HELLO, stream=True)
    assert "FLEET_MAX_PREDICT" in bad.value.body["error"]["message"]  # type: ignore[index]
    for body in (b"{", b"[]", b'{"model": "tiny:1b", "messages": []}'):
        r = httpx.post(
            f"{endpoint}/v1/messages",
            content=body,
            headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
        )
        assert r.status_code == 400, r.text
        assert r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_chat_anthropic_invoke_stream_and_tools(endpoint: str) -> None:
    llm = ChatAnthropic(  # type: ignore[call-arg]
        model=TINY,
        base_url=endpoint,
        api_key="not-needed",  # type: ignore[arg-type]
        max_tokens=32,
        max_retries=0,
    )
    prompt = [SystemMessage("You are terse."), HumanMessage("Name one colour.")]
    reply = llm.invoke(prompt)
    assert isinstance(reply, AIMessage) and reply.text
    assert reply.usage_metadata and reply.usage_metadata["output_tokens"] > 0
    chunks = list(llm.stream(prompt))
    assert len(chunks) > 1 and "".join(c.text for c in chunks).strip()
    tooled = llm.bind_tools([WEATHER])
    question = HumanMessage("What's the weather in Tokyo?")
    called = tooled.invoke([question])
    assert isinstance(called, AIMessage)
    [call] = called.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Tokyo"}
    result = ToolMessage("18C, sunny", tool_call_id=call["id"])
    answer = tooled.invoke([question, called, result])
    assert isinstance(answer, AIMessage) and answer.text
