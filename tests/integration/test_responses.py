"""``POST /v1/responses`` through the fleet, judged by the official openai client:
create and stream on the real smollm2 (llama.cpp) and the emulators, a function-tool
round trip, json_schema output, the stateless 400 and the trace."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

pytestmark = pytest.mark.integration

SMOL = "smollm2:135m"
TINY = "tiny:1b"
WEATHER: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


@pytest.fixture
def oai(endpoint: str) -> Any:
    client = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="not-needed", max_retries=0)
    yield client
    client.close()


def test_create_and_stream_on_real_llamacpp(oai: Any) -> None:
    raw = oai.responses.with_raw_response.create(
        model=SMOL, input="Hello!", max_output_tokens=48, temperature=0
    )
    response = raw.parse()
    assert raw.headers["x-herd-node"] == "smol"
    assert response.object == "response" and response.output_text.strip()
    assert response.status in ("completed", "incomplete")
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    with oai.responses.stream(
        model=SMOL,
        instructions="Answer in one short sentence.",
        input="Hello!",
        max_output_tokens=48,
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response() if kinds[-1] == "response.completed" else None
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in kinds
    assert kinds[-1] in ("response.completed", "response.incomplete")
    if final is not None:
        assert final.output_text.strip() and final.usage.output_tokens > 0


def test_default_call_of_the_client_works_on_the_emulators(oai: Any) -> None:
    """``client.responses.create(model=..., input="hi")``: store is OpenAI's default."""
    response = oai.responses.create(model=TINY, input="hi")
    assert response.status == "completed" and response.output_text
    stream = oai.responses.create(model=TINY, input="hi", stream=True, store=True)
    events = list(stream)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.total_tokens > 0


def test_function_tool_round_trip(oai: Any) -> None:
    question = "What's the weather in Tokyo?"
    first = oai.responses.create(model=TINY, input=question, tools=WEATHER)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Tokyo"}
    history: Any = [
        {"role": "user", "content": question},
        {
            "type": "function_call",
            "call_id": calls[0].call_id,
            "name": calls[0].name,
            "arguments": calls[0].arguments,
        },
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C, sunny"},
    ]
    with oai.responses.stream(model=TINY, input=history, tools=WEATHER) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" not in kinds  # a tool result: text
    assert final.output_text and final.output[-1].type == "message"


def test_json_schema_output(oai: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["colour", "count"],
        "additionalProperties": False,
    }
    response = oai.responses.create(
        model=TINY,
        input="Name a colour and a number.",
        text={"format": {"type": "json_schema", "name": "pick", "schema": schema, "strict": True}},
    )
    value = json.loads(response.output_text)
    assert isinstance(value["colour"], str) and isinstance(value["count"], int)


def test_stateless_and_bad_input_are_openai_400s(oai: Any) -> None:
    with pytest.raises(openai.BadRequestError, match="stateless"):
        oai.responses.create(model=TINY, input="hi", previous_response_id="resp_123")
    with pytest.raises(openai.BadRequestError, match="function tools"):
        oai.responses.create(model=TINY, input="hi", tools=[{"type": "web_search"}])
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-model:1b", input="hi")
