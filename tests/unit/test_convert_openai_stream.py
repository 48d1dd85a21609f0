"""OpenAI SSE streams (section 8.3), checked against openai-python's own types and client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from herd.convert import OpenAIChatStream, new_completion_id

MODEL = "llama3.2"
CREATED = 1751919773


def chunk(
    content: str = "",
    *,
    thinking: str | None = None,
    tool_calls: list[Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "model": MODEL,
        "created_at": "2025-07-07T20:22:19.184789Z",
        "message": message,
        "done": False,
        **top,
    }


def final(content: str = "", **top: Any) -> dict[str, Any]:
    return chunk(
        content,
        done=True,
        **{"done_reason": "stop", "prompt_eval_count": 26, "eval_count": 5, **top},
    )


def run(chunks: list[dict[str, Any]], include_usage: bool = False) -> list[bytes]:
    stream = OpenAIChatStream(MODEL, CREATED, "chatcmpl-abc", include_usage=include_usage)
    out: list[bytes] = []
    for item in chunks:
        out.extend(stream.feed(item))
    assert stream.finished
    return out


def parse_events(blobs: list[bytes]) -> list[Any]:
    """Split the SSE bytes and decode each event (``[DONE]`` stays a string)."""
    raw = b"".join(blobs)
    assert raw.endswith(b"\n\n")
    events = []
    for event in raw.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: ") and b"\n" not in event
        payload = event[len(b"data: ") :]
        events.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return events


def chunks_of(blobs: list[bytes]) -> list[ChatCompletionChunk]:
    events = parse_events(blobs)
    assert events[-1] == "[DONE]"
    assert "[DONE]" not in events[:-1]
    parsed = [ChatCompletionChunk.model_validate(e) for e in events[:-1]]
    assert {(c.id, c.created, c.model, c.object) for c in parsed} == {
        ("chatcmpl-abc", CREATED, MODEL, "chat.completion.chunk")
    }
    roles = [c.choices[0].delta.role for c in parsed if c.choices]
    assert roles[0] == "assistant" and all(r is None for r in roles[1:])
    finishes = [
        c.choices[0].finish_reason for c in parsed if c.choices and c.choices[0].finish_reason
    ]
    assert len(finishes) == 1
    return parsed


def deltas(parsed: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    return [c.choices[0].delta.model_dump(exclude_none=True) for c in parsed if c.choices]


def test_plain_content_stream() -> None:
    parsed = chunks_of(run([chunk("Hel"), chunk("lo"), final()]))
    assert deltas(parsed) == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {}]
    assert parsed[-1].choices[0].finish_reason == "stop"


def test_empty_content_chunks_are_skipped() -> None:
    parsed = chunks_of(run([chunk(""), chunk("a"), chunk(""), final()]))
    assert deltas(parsed) == [{"role": "assistant", "content": "a"}, {}]


def test_nothing_generated_still_opens_with_role() -> None:
    parsed = chunks_of(run([final()]))
    assert deltas(parsed) == [{"role": "assistant", "content": ""}, {}]


def test_final_chunk_content_is_emitted_before_finish() -> None:
    parsed = chunks_of(run([chunk("a"), final("b")]))
    assert deltas(parsed) == [{"role": "assistant", "content": "a"}, {"content": "b"}, {}]


def test_whole_non_streamed_response_fed_once() -> None:
    parsed = chunks_of(
        run([final("all of it", message={"role": "assistant", "content": "all of it"})])
    )
    assert deltas(parsed)[0] == {"role": "assistant", "content": "all of it"}


def test_thinking_becomes_reasoning_before_content() -> None:
    blobs = run([chunk(thinking="hmm"), chunk("x", thinking="more"), final()])
    events = parse_events(blobs)
    delta_dicts = [e["choices"][0]["delta"] for e in events[:-1] if e["choices"]]
    assert delta_dicts == [
        {"role": "assistant", "content": "", "reasoning": "hmm"},
        {"reasoning": "more"},
        {"content": "x"},
        {},
    ]
    parsed = chunks_of(blobs)
    assert parsed[0].choices[0].delta.model_extra == {"reasoning": "hmm"}


def test_tool_calls_get_running_index_and_string_arguments() -> None:
    call_a = {
        "id": "call_k3j9x0qa",
        "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}},
    }
    call_b = {"function": {"name": "get_time", "arguments": {}}}
    call_c = {"function": {"name": "noop", "arguments": {"deep": {"x": [1, "ü"]}}}}
    parsed = chunks_of(
        run([chunk(tool_calls=[call_a, call_b]), chunk(tool_calls=[call_c]), final()])
    )
    calls = [tc for c in parsed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [tc.index for tc in calls] == [0, 1, 2]
    assert calls[0].id == "call_k3j9x0qa"
    assert calls[1].id is not None and calls[1].id.startswith("call_") and len(calls[1].id) == 13
    assert all(tc.type == "function" for tc in calls)
    assert [json.loads(tc.function.arguments or "") for tc in calls if tc.function] == [
        {"city": "Tokyo"},
        {},
        {"deep": {"x": [1, "ü"]}},
    ]
    assert parsed[-1].choices[0].finish_reason == "tool_calls"
    assert parsed[0].choices[0].delta.role == "assistant"


@pytest.mark.parametrize(
    ("done_reason", "tools", "expected"),
    [
        ("stop", False, "stop"),
        ("stop", True, "tool_calls"),
        ("length", False, "length"),
        ("length", True, "length"),
        (None, False, "stop"),
        ("", False, "stop"),
        ("load", False, "stop"),
        ("unload", True, "tool_calls"),
    ],
)
def test_finish_reason_table(done_reason: str | None, tools: bool, expected: str) -> None:
    first = (
        chunk(tool_calls=[{"function": {"name": "f", "arguments": {}}}]) if tools else chunk("x")
    )
    parsed = chunks_of(run([first, final(done_reason=done_reason)]))
    assert parsed[-1].choices[0].finish_reason == expected


def test_usage_chunk_only_when_asked() -> None:
    without = parse_events(run([chunk("a"), final()]))
    assert all("usage" not in e for e in without[:-1])
    parsed = chunks_of(run([chunk("a"), final(prompt_eval_cached_count=20)], include_usage=True))
    last = parsed[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        26,
        5,
        31,
    )
    assert (
        last.usage.prompt_tokens_details is not None
        and last.usage.prompt_tokens_details.cached_tokens == 20
    )


def test_missing_metrics_count_as_zero() -> None:
    parsed = chunks_of(
        run(
            [{"model": MODEL, "message": {"role": "assistant", "content": ""}, "done": True}],
            include_usage=True,
        )
    )
    assert parsed[-1].usage is not None and parsed[-1].usage.total_tokens == 0


def test_logprobs_on_choice() -> None:
    logprobs = [
        {
            "token": "Hi",
            "logprob": -0.1,
            "bytes": [72, 105],
            "top_logprobs": [{"token": "Hi", "logprob": -0.1}, {"token": "Yo", "logprob": -2.0}],
        }
    ]
    parsed = chunks_of(run([chunk("Hi", logprobs=logprobs), final()]))
    choice = parsed[0].choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert choice.logprobs.content[0].token == "Hi"
    assert [t.token for t in choice.logprobs.content[0].top_logprobs] == ["Hi", "Yo"]


def test_mid_stream_error_and_feeds_after_end() -> None:
    stream = OpenAIChatStream(MODEL, CREATED, "chatcmpl-abc")
    assert stream.feed(chunk("a"))
    blobs = stream.feed({"error": "runner crashed"})
    assert stream.finished
    assert parse_events(blobs) == [
        {"error": {"message": "runner crashed", "type": "api_error", "param": None, "code": None}}
    ]
    assert stream.feed(chunk("late")) == []
    ended = OpenAIChatStream(MODEL, CREATED, "x")
    ended.feed(final())
    assert ended.feed(final()) == []


def test_error_helper_and_special_characters_in_head() -> None:
    stream = OpenAIChatStream('we"ird\nmodel', CREATED, "id-ü")
    blobs = stream.feed(chunk("line1\nline2\u2028")) + stream.feed(final())
    parsed = chunks_of_any(blobs)
    assert parsed[0].model == 'we"ird\nmodel' and parsed[0].id == "id-ü"
    assert parsed[0].choices[0].delta.content == "line1\nline2\u2028"
    assert json.loads(stream.error("boom")[6:])["error"]["message"] == "boom"


def chunks_of_any(blobs: list[bytes]) -> list[ChatCompletionChunk]:
    events = parse_events(blobs)
    return [ChatCompletionChunk.model_validate(e) for e in events if e != "[DONE]"]


def test_new_completion_id() -> None:
    a, b = new_completion_id(), new_completion_id("cmpl-")
    assert a.startswith("chatcmpl-") and b.startswith("cmpl-") and a != new_completion_id()


# -- the official client, end to end over a mock transport ------------------------------


def mock_client(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://herd.test/v1",
        api_key="not-needed",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def sse_response(blobs: list[bytes]) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, content=b"".join(blobs), headers={"content-type": "text/event-stream"}
        )

    return handler


@pytest.fixture
def client_for() -> Iterator[Callable[[list[bytes]], openai.OpenAI]]:
    clients: list[openai.OpenAI] = []

    def make(blobs: list[bytes]) -> openai.OpenAI:
        client = mock_client(sse_response(blobs))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_openai_client_streams_content_and_usage(
    client_for: Callable[[list[bytes]], openai.OpenAI],
) -> None:
    client = client_for(run([chunk("Hel"), chunk("lo"), final()], include_usage=True))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    got = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "Hello"
    assert got[-1].usage is not None and got[-1].usage.total_tokens == 31


def test_openai_stream_helper_accumulates_tool_calls(
    client_for: Callable[[list[bytes]], openai.OpenAI],
) -> None:
    calls = [{"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]
    client = client_for(run([chunk("Let me check."), chunk(tool_calls=calls), final()]))
    with client.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        for _ in stream:
            pass
        completion = stream.get_final_completion()
    message = completion.choices[0].message
    assert message.content == "Let me check."
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function" and call.id == "call_1"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Tokyo"
    }
    assert completion.choices[0].finish_reason == "tool_calls"


def test_openai_client_raises_on_mid_stream_error(
    client_for: Callable[[list[bytes]], openai.OpenAI],
) -> None:
    stream_writer = OpenAIChatStream(MODEL, CREATED, "chatcmpl-abc")
    blobs = stream_writer.feed(chunk("partial")) + stream_writer.feed({"error": "node went away"})
    client = client_for(blobs)
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match="node went away"):
        list(stream)


def test_feed_many_equals_feeding_one_by_one() -> None:
    items = [
        chunk("a", thinking="t"),
        chunk(tool_calls=[{"id": "c", "function": {"name": "f", "arguments": {}}}]),
        final(),
    ]
    joined = OpenAIChatStream(MODEL, CREATED, "chatcmpl-abc", include_usage=True).feed_many(items)
    assert joined == b"".join(run(items, include_usage=True))
