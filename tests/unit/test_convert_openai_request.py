"""OpenAI -> Ollama request mapping (openai-api.md section 8.1), row by row."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from herd.convert import openai_chat_request
from herd.domain import InferenceRequest
from herd.errors import BadRequest
from herd.wire import (
    parse_chat_completion_request,
)

IDS: dict[str, Any] = {"request_id": "r", "received_at": 5.0}
PNG = base64.b64encode(b"png-bytes").decode()
USER = {"role": "user", "content": "hi"}


def convert(**fields: Any) -> InferenceRequest:
    body = {"model": "llama3.2", "messages": [USER], **fields}
    return openai_chat_request(parse_chat_completion_request(body), **IDS)


def body_of(**fields: Any) -> dict[str, Any]:
    return dict(convert(**fields).body)


def test_minimal_chat() -> None:
    ir = convert()
    assert ir.body == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }
    assert ir.kind == "chat" and ir.dialect == "openai" and ir.stream is False
    assert ir.request_id == "r" and ir.received_at == 5.0


@pytest.mark.parametrize(
    ("fields", "options"),
    [
        ({"temperature": 0.3}, {"temperature": 0.3}),
        ({"temperature": 0}, {"temperature": 0.0}),
        ({"top_p": 0.5}, {"top_p": 0.5}),
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"stop": ["a", "b"]}, {"stop": ["a", "b"]}),
        ({"stop": []}, {}),
        ({"stop": None}, {}),
        ({"seed": 42}, {"seed": 42}),
        ({"max_tokens": 10}, {"num_predict": 10}),
        ({"max_completion_tokens": 7}, {"num_predict": 7}),
        ({"max_tokens": 10, "max_completion_tokens": 7}, {"num_predict": 7}),
        ({"frequency_penalty": 0.5}, {"frequency_penalty": 0.5}),
        ({"presence_penalty": -1.0}, {"presence_penalty": -1.0}),
        (
            {"options": {"num_ctx": 8192, "temperature": 0.9}, "temperature": 0.1},
            {"num_ctx": 8192, "temperature": 0.1},
        ),
        ({}, {}),
    ],
)
def test_sampling_options_table(fields: dict[str, Any], options: dict[str, Any]) -> None:
    body = body_of(**fields)
    assert body.get("options", {}) == options


def test_sampling_defaults_are_not_forced_unless_asked() -> None:
    assert "options" not in body_of()
    req = parse_chat_completion_request({"model": "m", "messages": [USER]})
    forced = openai_chat_request(req, **IDS, force_sampling_defaults=True)
    assert forced.body["options"] == {"temperature": 1.0, "top_p": 1.0}
    req = parse_chat_completion_request(
        {"model": "m", "messages": [USER], "temperature": 0.2, "options": {"top_p": 0.7}}
    )
    forced = openai_chat_request(req, **IDS, force_sampling_defaults=True)
    assert forced.body["options"] == {"temperature": 0.2, "top_p": 0.7}


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, "json"),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
            },
            {"type": "object"},
        ),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "json"),
        ({"type": "json_schema"}, "json"),
    ],
)
def test_response_format_table(response_format: dict[str, Any], expected: Any) -> None:
    assert body_of(response_format=response_format).get("format") == expected


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "a",
            "description": "A",
            "parameters": {"type": "object", "properties": {"q": {"default": None}}},
            "strict": True,
        },
    },
    {"type": "function", "function": {"name": "b"}},
]


@pytest.mark.parametrize(
    ("tool_choice", "names"),
    [
        (None, ["a", "b"]),
        ("auto", ["a", "b"]),
        ("required", ["a", "b"]),
        ("none", None),
        ({"type": "function", "function": {"name": "b"}}, ["b"]),
    ],
)
def test_tools_and_tool_choice(tool_choice: Any, names: list[str] | None) -> None:
    fields: dict[str, Any] = {"tools": TOOLS}
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    tools: list[dict[str, Any]] | None = body_of(**fields).get("tools")
    if tools is None or names is None:
        assert tools is None and names is None
    else:
        assert [t["function"]["name"] for t in tools] == names
        assert all(t["type"] == "function" for t in tools)


def test_tools_pass_through_unchanged() -> None:
    assert body_of(tools=TOOLS)["tools"] == TOOLS


def test_tool_choice_unknown_function_is_bad_request() -> None:
    with pytest.raises(BadRequest, match="not in tools"):
        convert(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "zzz"}})


@pytest.mark.parametrize(
    ("fields", "think"),
    [
        ({"reasoning_effort": "none"}, False),
        ({"reasoning_effort": "minimal"}, "low"),
        ({"reasoning_effort": "low"}, "low"),
        ({"reasoning_effort": "medium"}, "medium"),
        ({"reasoning_effort": "high"}, "high"),
        ({"reasoning_effort": "max"}, "max"),
        ({"reasoning_effort": "xhigh"}, "max"),
        ({"reasoning_effort": "ultra"}, "max"),
        ({"reasoning": {"effort": "medium"}}, "medium"),
        ({"think": True}, True),
        ({"think": True, "reasoning_effort": "none"}, False),
        ({}, None),
    ],
)
def test_reasoning_effort_to_think(fields: dict[str, Any], think: Any) -> None:
    assert body_of(**fields).get("think") == think


@pytest.mark.parametrize(
    ("fields", "extra"),
    [
        ({"logprobs": True, "top_logprobs": 3}, {"logprobs": True, "top_logprobs": 3}),
        ({"keep_alive": "30m"}, {"keep_alive": "30m"}),
        ({"stream": True}, {"stream": True}),
    ],
)
def test_passthrough_fields(fields: dict[str, Any], extra: dict[str, Any]) -> None:
    body = body_of(**fields)
    for key, value in extra.items():
        assert body[key] == value


def test_ignored_fields_do_not_reach_backend() -> None:
    body = body_of(
        n=1,
        user="alice",
        logit_bias={"1": 1},
        parallel_tool_calls=True,
        metadata={"tags": ["x"]},
        fallback_models=["b"],
        stream_options={"include_usage": True},
        store=True,
    )
    assert set(body) == {"model", "messages", "stream"}


def test_routing_fields() -> None:
    req = parse_chat_completion_request(
        {
            "model": "llama3.2",
            "messages": [USER],
            "user": "alice",
            "metadata": {"tags": ["A", "b"]},
            "fallback_models": ["qwen", "llama3.2"],
        }
    )
    ir = openai_chat_request(req, **IDS, header_tags="b, C", client="ip")
    assert ir.client == "alice"
    assert ir.tags == ("a", "b", "c")
    assert ir.fallback_models == ("qwen",)
    no_user = openai_chat_request(
        parse_chat_completion_request({"model": "m", "messages": [USER]}), **IDS, client="ip"
    )
    assert no_user.client == "ip"


def messages_of(*messages: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body_of(messages=list(messages))["messages"])


MESSAGE_ROWS: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
    ([{"role": "developer", "content": "rules"}], [{"role": "system", "content": "rules"}]),
    ([{"role": "system", "content": "s"}], [{"role": "system", "content": "s"}]),
    (
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ],
        [{"role": "user", "content": "a\nb"}],
    ),
    (
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
                ],
            }
        ],
        [{"role": "user", "content": "see", "images": [PNG]}],
    ),
    (
        [{"role": "user", "content": [{"type": "image_url", "image_url": f"data:;base64,{PNG}"}]}],
        [{"role": "user", "content": "", "images": [PNG]}],
    ),
    (
        [
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}}],
            }
        ],
        [{"role": "user", "content": "", "images": [PNG]}],
    ),
    (
        [{"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}],
        [{"role": "assistant", "content": "no"}],
    ),
    (
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Tokyo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "function": {"name": "weather", "arguments": {"city": "Tokyo"}},
                    }
                ],
            },
            {"role": "tool", "content": "sunny", "tool_name": "weather", "tool_call_id": "call_1"},
        ],
    ),
    (
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "a", "arguments": ""}},
                    {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "B"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "A"},
            {"role": "tool", "tool_call_id": "unknown", "content": "?"},
        ],
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "c1", "function": {"name": "a", "arguments": {}}},
                    {"id": "c2", "function": {"name": "b", "arguments": {}}},
                ],
            },
            {"role": "tool", "content": "B", "tool_name": "b", "tool_call_id": "c2"},
            {"role": "tool", "content": "A", "tool_name": "a", "tool_call_id": "c1"},
            {"role": "tool", "content": "?", "tool_call_id": "unknown"},
        ],
    ),
    (
        [{"role": "function", "name": "f", "content": "r"}],
        [{"role": "tool", "content": "r", "tool_name": "f"}],
    ),
    (
        [{"role": "assistant", "content": "x", "reasoning_content": "because"}],
        [{"role": "assistant", "content": "x", "thinking": "because"}],
    ),
    ([{"role": "user", "content": "x", "name": "bob"}], [{"role": "user", "content": "x"}]),
]


@pytest.mark.parametrize(("messages", "expected"), MESSAGE_ROWS)
def test_message_mapping_table(
    messages: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    assert messages_of(*messages) == expected


def test_estimated_tokens_chat() -> None:
    ir = convert(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "x" * 80},
                    {"type": "image_url", "image_url": f"data:;base64,{PNG}"},
                ],
            }
        ]
    )
    assert ir.estimated_tokens == 20 + 256
