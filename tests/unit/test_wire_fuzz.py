"""Property: whatever a client sends, parsing + conversion raise only BadRequest."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herd.convert import (
    ollama_chat_request,
    ollama_embed_request,
    ollama_embeddings_request,
    ollama_generate_request,
    openai_chat_request,
    openai_completion_request,
    openai_embedding_request,
)
from herd.errors import BadRequest
from herd.wire import (
    parse_chat_completion_request,
    parse_chat_request,
    parse_completion_request,
    parse_embed_request,
    parse_embedding_request,
    parse_embeddings_request,
    parse_generate_request,
)

PIPELINES: list[tuple[Callable[[Any], Any], Callable[..., Any]]] = [
    (parse_chat_request, ollama_chat_request),
    (parse_generate_request, ollama_generate_request),
    (parse_embed_request, ollama_embed_request),
    (parse_embeddings_request, ollama_embeddings_request),
    (parse_chat_completion_request, openai_chat_request),
    (parse_completion_request, openai_completion_request),
    (parse_embedding_request, openai_embedding_request),
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 30)
    | st.floats(-3, 3, allow_nan=False)
    | st.sampled_from(
        [
            "",
            "m",
            "json",
            "none",
            "high",
            "function",
            "user",
            "tool",
            "assistant",
            "developer",
            "text",
            "image_url",
            "input_audio",
            "data:image/png;base64,aGk=",
            "data:;base64,!!",
            "https://x",
            "{}",
            '{"a":1}',
            "[1]",
            "auto",
            "required",
            "base64",
            "float",
            "call_1",
            "a, b",
        ]
    )
)
KEYS = [
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "input_audio",
    "data",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "id",
    "tool_call_id",
    "tools",
    "tool_choice",
    "stream",
    "options",
    "num_ctx",
    "stop",
    "temperature",
    "format",
    "think",
    "response_format",
    "json_schema",
    "schema",
    "metadata",
    "tags",
    "fallback_models",
    "prompt",
    "input",
    "encoding_format",
    "n",
    "reasoning_effort",
    "reasoning",
    "effort",
    "images",
    "keep_alive",
    "max_tokens",
    "stream_options",
    "include_usage",
    "top_logprobs",
    "user",
]
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=6)
    ),
    max_leaves=30,
)
bodies = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)


def run(raw: Any) -> None:
    for parse, build in PIPELINES:
        try:
            req = parse(raw)
            build(req, request_id="r", received_at=0.0, header_tags="a,b")
        except BadRequest:
            pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_structured_bodies_only_raise_bad_request(body: dict[str, Any]) -> None:
    run(body)
    run(json.dumps(body).encode())


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_only_raises_bad_request(value: Any) -> None:
    run(json.dumps(value))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_garbage_only_raises_bad_request(raw: bytes | str) -> None:
    run(raw)


def test_deep_nesting_is_bad_request_not_recursion_error() -> None:
    run(b"[" * 100_000)
    run(b'{"model":"m","options":' + b"[" * 5000 + b"]" * 5000 + b"}")


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values most of the time, anything JSON now and then."""
    return st.integers(0, 9).flatmap(lambda i: json_values if i == 0 else valid)


URIS = st.sampled_from(
    ["data:image/png;base64,aGk=", "data:;base64,aGVsbG8=", "data:image/webp;base64,AAAA"]
)
valid_parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=8)}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": URIS | st.fixed_dictionaries({"url": URIS})}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("input_audio"),
            "input_audio": st.fixed_dictionaries(
                {"data": st.just("aGk="), "format": st.just("wav")}
            ),
        }
    ),
)
arguments = st.sampled_from(['{"a":1}', "", "{}", '{"x":[1,{"y":null}]}']) | st.dictionaries(
    st.text(max_size=3), scalars, max_size=3
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "function": st.fixed_dictionaries(
                {"name": st.sampled_from(["f", "g"]), "arguments": arguments}
            )
        },
        optional={"id": st.sampled_from(["call_1", "call_2"]), "type": st.just("function")},
    ),
    min_size=1,
    max_size=2,
)
messages = st.fixed_dictionaries(
    {
        "role": mostly(
            st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"])
        ),
        "content": mostly(st.text(max_size=8) | st.lists(valid_parts, max_size=3)),
    },
    optional={
        "tool_calls": mostly(tool_calls),
        "tool_call_id": mostly(st.sampled_from(["call_1", "call_2", "zzz"])),
        "name": mostly(st.text(max_size=3)),
        "reasoning_content": mostly(st.text(max_size=3)),
    },
)
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "num_ctx": st.integers(1, 9),
        "temperature": st.floats(0, 1),
        "stop": st.lists(st.text(max_size=2)),
        "x": scalars,
    },
)
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
chat_bodies = st.fixed_dictionaries(
    {"model": st.just("m"), "messages": st.lists(messages, min_size=1, max_size=4)},
    optional={
        "tools": mostly(st.just(TOOLS)),
        "tool_choice": mostly(
            st.sampled_from(
                [
                    "none",
                    "auto",
                    "required",
                    {"type": "function", "function": {"name": "f"}},
                    {"type": "function", "function": {"name": "g"}},
                ]
            )
        ),
        "response_format": mostly(
            st.sampled_from(
                [
                    {"type": "text"},
                    {"type": "json_object"},
                    {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
                ]
            )
        ),
        "stop": mostly(st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=2)),
        "options": mostly(OPTIONS),
        "metadata": mostly(
            st.fixed_dictionaries({"tags": st.lists(st.text(max_size=4), max_size=3)})
        ),
        "fallback_models": mostly(st.lists(st.text(max_size=4), max_size=3)),
        "reasoning_effort": mostly(st.sampled_from(["none", "minimal", "high", "ultra"])),
        "think": mostly(st.booleans()),
        "temperature": mostly(st.floats(0, 2)),
        "max_tokens": mostly(st.integers(-1, 100)),
        "max_completion_tokens": mostly(st.integers(-1, 100)),
        "stream": mostly(st.booleans()),
        "stream_options": mostly(st.fixed_dictionaries({"include_usage": st.booleans()})),
        "user": mostly(st.text(max_size=3)),
    },
)
ollama_messages = st.fixed_dictionaries(
    {"role": mostly(st.sampled_from(["system", "user", "assistant", "tool", "USER"]))},
    optional={
        "content": mostly(st.text(max_size=8)),
        "images": mostly(st.lists(st.just("aGk="), max_size=2)),
        "tool_calls": mostly(tool_calls),
        "tool_name": mostly(st.text(max_size=3)),
    },
)
ollama_bodies = st.fixed_dictionaries(
    {"model": mostly(st.just("m")), "messages": st.lists(ollama_messages, max_size=3)},
    optional={
        "options": mostly(OPTIONS),
        "format": mostly(st.sampled_from(["json", "", {"type": "object"}])),
        "think": mostly(st.booleans() | st.sampled_from(["low", "max"])),
        "keep_alive": mostly(st.sampled_from(["5m", 0, -1, 1.5])),
        "stream": mostly(st.booleans()),
        "metadata": mostly(
            st.fixed_dictionaries({"tags": st.lists(st.text(max_size=4), max_size=3)})
        ),
        "fallback_models": mostly(st.lists(st.text(max_size=4), max_size=3)),
        "prompt": mostly(st.text(max_size=8)),
        "input": mostly(
            st.text(max_size=8) | st.lists(st.text(min_size=1, max_size=4), max_size=3)
        ),
    },
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat_bodies)
def test_chat_shaped_bodies_only_raise_bad_request(body: dict[str, Any]) -> None:
    run(body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ollama_bodies)
def test_ollama_shaped_bodies_only_raise_bad_request(body: dict[str, Any]) -> None:
    run(body)
    run(json.dumps(body))
