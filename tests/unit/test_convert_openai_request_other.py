"""OpenAI /v1/completions and /v1/embeddings -> Ollama generate / embed bodies."""

from __future__ import annotations

from typing import Any

import pytest

from herd.convert import openai_completion_request, openai_embedding_request
from herd.wire import parse_completion_request, parse_embedding_request

IDS: dict[str, Any] = {"request_id": "r", "received_at": 5.0}


COMPLETION_ROWS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {"model": "m", "prompt": "Once", "stream": False}),
    ({"stream": True}, {"model": "m", "prompt": "Once", "stream": True}),
    ({"suffix": "end"}, {"model": "m", "prompt": "Once", "stream": False, "suffix": "end"}),
    (
        {
            "max_tokens": 3,
            "temperature": 0.5,
            "top_p": 0.2,
            "stop": "\n",
            "seed": 1,
            "frequency_penalty": 0.1,
            "presence_penalty": 0.2,
        },
        {
            "model": "m",
            "prompt": "Once",
            "stream": False,
            "options": {
                "num_predict": 3,
                "temperature": 0.5,
                "top_p": 0.2,
                "stop": ["\n"],
                "seed": 1,
                "frequency_penalty": 0.1,
                "presence_penalty": 0.2,
            },
        },
    ),
    (
        {"echo": False, "logprobs": 2, "user": "u", "keep_alive": -1},
        {"model": "m", "prompt": "Once", "stream": False, "keep_alive": -1},
    ),
]


@pytest.mark.parametrize(("fields", "body"), COMPLETION_ROWS)
def test_completion_mapping(fields: dict[str, Any], body: dict[str, Any]) -> None:
    req = parse_completion_request({"model": "m", "prompt": "Once", **fields})
    ir = openai_completion_request(req, **IDS)
    assert ir.body == body
    assert ir.kind == "generate" and ir.dialect == "openai"
    assert ir.stream is bool(fields.get("stream"))


def test_completion_routing_and_estimate() -> None:
    req = parse_completion_request(
        {"model": "m", "prompt": ["x" * 8], "user": "u", "metadata": {"tags": ["t"]}}
    )
    ir = openai_completion_request(req, **IDS, header_tags="h")
    assert ir.client == "u" and ir.tags == ("t", "h") and ir.estimated_tokens == 2


EMBED_ROWS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"input": "a"}, {"model": "e", "input": "a"}),
    ({"input": ["a", "b"]}, {"model": "e", "input": ["a", "b"]}),
    (
        {"input": "a", "dimensions": 64, "encoding_format": "base64", "user": "u"},
        {"model": "e", "input": "a", "dimensions": 64},
    ),
    (
        {"input": "a", "truncate": False, "keep_alive": "1h", "options": {"num_ctx": 512}},
        {
            "model": "e",
            "input": "a",
            "truncate": False,
            "keep_alive": "1h",
            "options": {"num_ctx": 512},
        },
    ),
]


@pytest.mark.parametrize(("fields", "body"), EMBED_ROWS)
def test_embedding_mapping(fields: dict[str, Any], body: dict[str, Any]) -> None:
    ir = openai_embedding_request(parse_embedding_request({"model": "e", **fields}), **IDS)
    assert ir.body == body
    assert ir.kind == "embed" and ir.stream is False and ir.dialect == "openai"
