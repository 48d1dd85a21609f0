"""OpenAI text-completion SSE streams, checked with openai-python's types and client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types import Completion

from herd.convert import SSE_DONE, OpenAICompletionStream

MODEL = "llama3.2"
CREATED = 1751919773


def parse_events(blobs: list[bytes]) -> list[Any]:
    events = []
    for event in b"".join(blobs).split(b"\n\n")[:-1]:
        assert event.startswith(b"data: ")
        payload = event[len(b"data: ") :]
        events.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return events


@pytest.fixture
def client_for() -> Iterator[Callable[[list[bytes]], openai.OpenAI]]:
    clients: list[openai.OpenAI] = []

    def make(blobs: list[bytes]) -> openai.OpenAI:
        def handler(request: httpx2.Request) -> httpx2.Response:
            return httpx2.Response(
                200, content=b"".join(blobs), headers={"content-type": "text/event-stream"}
            )

        client = openai.OpenAI(
            base_url="http://herd.test/v1",
            api_key="x",
            max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def gen(text: str, **top: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "created_at": "2025-10-26T17:21:21.196249Z",
        "response": text,
        "done": False,
        **top,
    }


def run_completion(chunks: list[dict[str, Any]], include_usage: bool = False) -> list[bytes]:
    stream = OpenAICompletionStream(MODEL, CREATED, "cmpl-1", include_usage=include_usage)
    out: list[bytes] = []
    for item in chunks:
        out.extend(stream.feed(item))
    assert stream.finished
    return out


@pytest.mark.parametrize(
    ("done_reason", "expected"),
    [("stop", "stop"), ("length", "length"), (None, "stop"), ("load", "stop")],
)
def test_completion_stream(done_reason: str | None, expected: str) -> None:
    blobs = run_completion(
        [
            gen("Once"),
            gen(" upon", thinking="t"),
            gen("", done=True, done_reason=done_reason, prompt_eval_count=3, eval_count=2),
        ],
        include_usage=True,
    )
    events = parse_events(blobs)
    assert events[-1] == "[DONE]"
    body = events[:-1]
    assert [e["choices"][0]["text"] for e in body[:-1]] == ["Once", " upon", ""]
    assert [e["choices"][0]["finish_reason"] for e in body[:-1]] == [None, None, expected]
    assert {(e["id"], e["object"], e["created"], e["model"]) for e in body} == {
        ("cmpl-1", "text_completion", CREATED, MODEL)
    }
    Completion.model_validate(body[-2])
    usage_event = body[-1]
    assert usage_event["choices"] == [] and usage_event["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }
    Completion.model_validate(usage_event)


def test_completion_stream_through_openai_client(
    client_for: Callable[[list[bytes]], openai.OpenAI],
) -> None:
    client = client_for(run_completion([gen("a"), gen("b", done=True, done_reason="length")]))
    got = list(client.completions.create(model=MODEL, prompt="x", stream=True))
    assert "".join(c.choices[0].text for c in got if c.choices) == "ab"
    assert got[-1].choices[0].finish_reason == "length"


def test_completion_stream_error() -> None:
    stream = OpenAICompletionStream(MODEL, CREATED, "cmpl-1")
    events = parse_events(stream.feed(gen("a")) + stream.feed({"error": {"message": "oops"}}))
    assert events[-1] == {
        "error": {"message": "oops", "type": "api_error", "param": None, "code": None}
    }
    assert stream.finished and stream.feed(gen("b")) == []
    assert SSE_DONE == b"data: [DONE]\n\n"


def test_feed_many_equals_feeding_one_by_one() -> None:
    gens = [gen("x"), gen("", done=True)]
    joined = OpenAICompletionStream(MODEL, CREATED, "cmpl-1").feed_many(gens)
    assert joined == b"".join(run_completion(gens))
