"""OpenAI request parsing: what real clients send is accepted, the rest is a 400."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from herd.errors import BadRequest
from herd.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_chat_completion_request,
    parse_completion_request,
    parse_embedding_request,
)
from herd.wire.openai import IMAGE_URL_UNSUPPORTED, ImagePart, TextPart

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
USER = {"role": "user", "content": "hi"}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-x", "messages": [USER], **fields}


def msg(content: Any, role: str = "user", **extra: Any) -> dict[str, Any]:
    return chat(messages=[{"role": role, "content": content, **extra}])


def test_minimal_and_full_openai_python_body() -> None:
    req = parse_chat_completion_request(json.dumps(chat()).encode())
    assert isinstance(req, ChatCompletionRequest)
    assert req.streaming is False
    assert req.include_usage is False
    full = chat(
        stream=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
        max_completion_tokens=10,
        max_tokens=20,
        temperature=0.5,
        top_p=0.9,
        stop=["a", "b"],
        seed=1,
        frequency_penalty=0.1,
        presence_penalty=-0.1,
        n=1,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
        },
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        parallel_tool_calls=False,
        logprobs=True,
        top_logprobs=2,
        user="u",
        metadata={"tags": ["a"], "other": "x"},
        store=False,
        service_tier="auto",
        reasoning_effort="high",
        logit_bias={"1": 2},
        modalities=["text"],
        prompt_cache_key="k",
        safety_identifier="s",
        verbosity="low",
    )
    req = parse_chat_completion_request(full)
    assert req.streaming and req.include_usage
    assert req.response_format is not None and req.response_format.json_schema is not None
    assert req.response_format.json_schema.schema_ == {"type": "object"}
    assert req.model_extra is not None and req.model_extra["verbosity"] == "low"
    assert req.effort == "high"


def test_content_parts_and_bare_string_image_url() -> None:
    req = parse_chat_completion_request(
        msg(
            [
                {"type": "text", "text": "look"},
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                },
                {"type": "image_url", "image_url": f"data:;base64,{PNG}"},
                {"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}},
            ]
        )
    )
    parts = req.messages[0].content
    assert isinstance(parts, list)
    assert isinstance(parts[0], TextPart)
    assert isinstance(parts[1], ImagePart) and parts[1].image_url.data == PNG
    assert isinstance(parts[2], ImagePart) and parts[2].image_url.data == PNG


@pytest.mark.parametrize("kind", ["png", "jpeg", "jpg", "webp", "PNG"])
def test_accepted_data_uri_types(kind: str) -> None:
    url = f"data:image/{kind};base64,{PNG}"
    parse_chat_completion_request(msg([{"type": "image_url", "image_url": {"url": url}}]))


def test_base64_with_line_breaks_is_accepted() -> None:
    wrapped = PNG[:8] + "\n" + PNG[8:]
    parse_chat_completion_request(
        msg([{"type": "image_url", "image_url": f"data:image/png;base64,{wrapped}"}])
    )


def test_assistant_tool_calls_with_null_content_and_developer_role() -> None:
    req = parse_chat_completion_request(
        chat(
            messages=[
                {"role": "developer", "content": "rules"},
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            ]
        )
    )
    calls = req.messages[2].tool_calls
    assert calls is not None and calls[0].function.arguments == {"a": 1}


def test_completion_and_embedding_accept() -> None:
    comp = parse_completion_request(
        b'{"model":"m","prompt":"once","max_tokens":5,"echo":false,"logprobs":null}'
    )
    assert isinstance(comp, CompletionRequest) and comp.prompt == "once"
    assert parse_completion_request(b'{"model":"m","prompt":["only"]}').prompt == "only"
    emb = parse_embedding_request(
        b'{"model":"m","input":["a","b"],"encoding_format":"base64","dimensions":4}'
    )
    assert isinstance(emb, EmbeddingRequest) and emb.inputs == ["a", "b"]
    assert parse_embedding_request(b'{"model":"m","input":"a"}').inputs == ["a"]


BAD_IMAGE = "invalid image input"
ERRORS: list[tuple[Any, Any, str]] = [
    (parse_chat_completion_request, b"", "missing request body"),
    (parse_chat_completion_request, b"{", "invalid JSON"),
    (parse_chat_completion_request, b"[]", "request body must be a JSON object"),
    (parse_chat_completion_request, {"messages": [USER]}, "model is required"),
    (parse_chat_completion_request, {"model": "m"}, "messages is required"),
    (parse_chat_completion_request, {"model": "m", "messages": []}, "[] is too short - 'messages'"),
    (parse_chat_completion_request, {"messages": []}, "model is required"),
    (parse_chat_completion_request, chat(n=2), "only n=1 is supported"),
    (parse_chat_completion_request, chat(n=0), "only n=1 is supported"),
    (parse_chat_completion_request, chat(temperature=2.5), "temperature: must be between 0 and 2"),
    (
        parse_chat_completion_request,
        chat(temperature="hot"),
        "temperature: Input should be a valid number",
    ),
    (parse_chat_completion_request, chat(top_p=1.5), "top_p: must be between 0 and 1"),
    (
        parse_chat_completion_request,
        chat(presence_penalty=-3),
        "presence_penalty: must be between -2 and 2",
    ),
    (
        parse_chat_completion_request,
        chat(max_tokens="5"),
        "max_tokens: Input should be a valid integer",
    ),
    (parse_chat_completion_request, chat(stop=5), "stop"),
    (parse_chat_completion_request, chat(stream="true"), "stream: Input should be a valid boolean"),
    (parse_chat_completion_request, chat(top_logprobs=50), "top_logprobs must be between 0 and 20"),
    (parse_chat_completion_request, chat(response_format={"type": "xml"}), "response_format.type"),
    (
        parse_chat_completion_request,
        chat(tools=[{"type": "function"}]),
        "tools[0].function is required",
    ),
    (parse_chat_completion_request, chat(tools=[{"type": "web_search"}]), "tools[0].type"),
    (parse_chat_completion_request, chat(tool_choice="sometimes"), "tool_choice: must be"),
    (
        parse_chat_completion_request,
        chat(tool_choice={"type": "function"}),
        "tool_choice: function.name is required",
    ),
    (
        parse_chat_completion_request,
        chat(reasoning_effort="huge"),
        "reasoning_effort: must be one of",
    ),
    (
        parse_chat_completion_request,
        chat(reasoning={"effort": "huge"}),
        "reasoning: effort must be one of",
    ),
    (parse_chat_completion_request, chat(think="maybe"), "think must be"),
    (
        parse_chat_completion_request,
        chat(metadata={"tags": "a"}) | {"metadata": {"tags": {"a": 1}}},
        "metadata: tags must be a list of strings",
    ),
    (parse_chat_completion_request, chat(fallback_models=[1]), "fallback_models[0]"),
    (
        parse_chat_completion_request,
        chat(options={"num_predict": "x"}),
        'option "num_predict" must be of type integer',
    ),
    (
        parse_chat_completion_request,
        msg(5),
        "messages[0].content: must be a string or an array of content parts",
    ),
    (
        parse_chat_completion_request,
        msg(None),
        "messages[0]: content must be a string or an array of parts",
    ),
    (parse_chat_completion_request, msg("x", role="wizard"), "messages[0].role"),
    (parse_chat_completion_request, msg([{"type": "file", "file": {}}]), "messages[0].content[0]"),
    (parse_chat_completion_request, msg([{"text": "no type"}]), "messages[0].content[0]"),
    (
        parse_chat_completion_request,
        msg([{"type": "text"}]),
        "messages[0].content[0].text is required",
    ),
    (
        parse_chat_completion_request,
        msg([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]),
        IMAGE_URL_UNSUPPORTED,
    ),
    (
        parse_chat_completion_request,
        msg([{"type": "image_url", "image_url": "http://x/y.png"}]),
        IMAGE_URL_UNSUPPORTED,
    ),
    (
        parse_chat_completion_request,
        msg([{"type": "image_url", "image_url": {"url": "data:image/gif;base64," + PNG}}]),
        BAD_IMAGE,
    ),
    (
        parse_chat_completion_request,
        msg([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]),
        BAD_IMAGE,
    ),
    (
        parse_chat_completion_request,
        msg([{"type": "image_url", "image_url": {"url": "data:image/png;base64,abc"}}]),
        BAD_IMAGE,
    ),
    (
        parse_chat_completion_request,
        msg([{"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}]),
        BAD_IMAGE,
    ),
    (
        parse_chat_completion_request,
        msg([{"type": "image_url", "image_url": {"url": PNG}}]),
        BAD_IMAGE,
    ),
    (
        parse_chat_completion_request,
        msg([{"type": "image_url", "image_url": 5}]),
        "messages[0].content[0].image_url",
    ),
    (
        parse_chat_completion_request,
        msg([{"type": "input_audio", "input_audio": {"data": "!!"}}]),
        "invalid input_audio data",
    ),
    (
        parse_chat_completion_request,
        msg(
            None,
            role="assistant",
            tool_calls=[
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
            ],
        ),
        "invalid tool call arguments",
    ),
    (
        parse_chat_completion_request,
        msg(
            None,
            role="assistant",
            tool_calls=[
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}
            ],
        ),
        "invalid tool call arguments",
    ),
    (
        parse_chat_completion_request,
        msg(None, role="assistant", tool_calls=[{"id": "c", "function": {"arguments": "{}"}}]),
        "messages[0].tool_calls[0].function.name is required",
    ),
    (parse_completion_request, b'{"model":"m"}', "prompt is required"),
    (parse_completion_request, b'{"model":"m","prompt":[1,2,3]}', "token arrays are not supported"),
    (parse_completion_request, b'{"model":"m","prompt":[[1,2]]}', "token arrays are not supported"),
    (
        parse_completion_request,
        b'{"model":"m","prompt":["a","b"]}',
        "only one prompt per request is supported",
    ),
    (parse_completion_request, b'{"model":"m","prompt":[]}', "prompt must not be empty"),
    (
        parse_completion_request,
        b'{"model":"m","prompt":5}',
        "prompt: Input should be a valid string",
    ),
    (parse_completion_request, b'{"model":"m","prompt":"x","n":3}', "only n=1 is supported"),
    (
        parse_completion_request,
        b'{"model":"m","prompt":"x","best_of":2}',
        "only best_of=1 is supported",
    ),
    (parse_embedding_request, b'{"model":"m"}', "input is required"),
    (parse_embedding_request, b'{"model":"m","input":[]}', "input must not be empty"),
    (parse_embedding_request, b'{"model":"m","input":""}', "input must not be empty"),
    (
        parse_embedding_request,
        b'{"model":"m","input":["a",""]}',
        "input must not contain empty strings",
    ),
    (parse_embedding_request, b'{"model":"m","input":[1,2,3]}', "token arrays are not supported"),
    (
        parse_embedding_request,
        b'{"model":"m","input":[[1,2],[3]]}',
        "token arrays are not supported",
    ),
    (parse_embedding_request, b'{"model":"m","input":{"a":1}}', "invalid input type"),
    (parse_embedding_request, b'{"model":"m","input":["a",1]}', "invalid input type"),
    (
        parse_embedding_request,
        b'{"model":"m","input":"a","encoding_format":"hex"}',
        "Invalid value for 'encoding_format'",
    ),
    (
        parse_embedding_request,
        b'{"model":"m","input":"a","dimensions":0}',
        "dimensions must be a positive integer",
    ),
]


@pytest.mark.parametrize(("parse", "raw", "message"), ERRORS)
def test_rejections_are_bad_request_with_clear_message(parse: Any, raw: Any, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(raw)
    assert message in info.value.message


@pytest.mark.parametrize(
    "message",
    [
        IMAGE_URL_UNSUPPORTED,
        BAD_IMAGE,
        "invalid tool call arguments",
        "[] is too short - 'messages'",
    ],
)
def test_ollama_messages_are_verbatim(message: str) -> None:
    bodies = {
        IMAGE_URL_UNSUPPORTED: msg([{"type": "image_url", "image_url": {"url": "https://x"}}]),
        BAD_IMAGE: msg([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@"}}]),
        "invalid tool call arguments": msg(
            None, role="assistant", tool_calls=[{"function": {"name": "f", "arguments": "{"}}]
        ),
        "[] is too short - 'messages'": chat(messages=[]),
    }
    with pytest.raises(BadRequest) as info:
        parse_chat_completion_request(bodies[message])
    assert info.value.message == message
