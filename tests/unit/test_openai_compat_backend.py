"""OpenAICompatBackend against a tiny in-test server that speaks OpenAI SSE byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from herd.backends.openai_compat import OpenAICompatBackend, openai_request
from herd.errors import BackendError, BackendTimeout, BadRequest, HerdError, ModelNotFound

CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
HEAD = '"id":"chatcmpl-1","object":"chat.completion.chunk","created":1751919773,"model":"m"'


def sse(*events: dict[str, Any] | str) -> list[bytes]:
    """``data:`` frames for ``events`` (a str is sent verbatim), then ``[DONE]``."""
    frames = [e if isinstance(e, str) else json.dumps(e) for e in events]
    return [f"data: {f}\n\n".encode() for f in [*frames, "[DONE]"]]


def delta(content: str | None = None, finish: str | None = None, **more: Any) -> dict[str, Any]:
    d: dict[str, Any] = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": d | more, "finish_reason": finish}]}


USAGE = {"prompt_tokens": 26, "completion_tokens": 2, "total_tokens": 28}
TIMINGS = {"prompt_n": 26, "prompt_ms": 107.46, "predicted_n": 2, "predicted_ms": 24.14}


def frame(choice: str, extra: str = "") -> bytes:
    """One SSE frame laid out exactly as llama.cpp's server writes it."""
    return f'data: {{"choices":[{choice}],{HEAD}{extra}}}\n\n'.encode()


LLAMACPP_CHAT = [
    frame('{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}'),
    frame('{"finish_reason":null,"index":0,"delta":{"content":"Hel"}}'),
    frame('{"finish_reason":null,"index":0,"delta":{"content":"lo"}}'),
    frame('{"finish_reason":"stop","index":0,"delta":{}}'),
    frame("", f',"usage":{json.dumps(USAGE)},"timings":{json.dumps(TIMINGS)}'),
    b"data: [DONE]\n\n",
]


@dataclass
class Reply:
    status: int = 200
    chunks: list[bytes] = field(default_factory=list)
    content_type: str = "text/event-stream"
    delay: float = 0.0  # before the headers
    gap: float = 0.0  # between chunks
    abort: bool = False  # cut the connection after the chunks (no terminating chunk)


class FakeOpenAI:
    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def reply(self, path: str, chunks: list[bytes] | bytes = b"", **kw: Any) -> None:
        self.replies[path] = Reply(chunks=[chunks] if isinstance(chunks, bytes) else chunks, **kw)

    def json(self, path: str, data: Any, status: int = 200) -> None:
        self.reply(path, json.dumps(data).encode(), status=status, content_type="application/json")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else {}
        self.requests.append((request.path, body))
        reply = self.replies.get(request.path)
        if reply is None:
            return web.json_response({"error": {"message": "File Not Found"}}, status=404)
        if reply.delay:
            with contextlib.suppress(TimeoutError):  # ``release`` ends the wait at teardown
                await asyncio.wait_for(self.release.wait(), reply.delay)
        if reply.status != 200 or reply.content_type == "application/json":
            return web.Response(
                body=b"".join(reply.chunks), status=reply.status, content_type=reply.content_type
            )
        resp = web.StreamResponse(headers={"Content-Type": reply.content_type})
        await resp.prepare(request)
        for chunk in reply.chunks:
            await resp.write(chunk)
            if reply.gap:
                await asyncio.sleep(reply.gap)
        if reply.abort:
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write_eof()
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def backend(fake: FakeOpenAI) -> AsyncIterator[OpenAICompatBackend]:
    b = OpenAICompatBackend(fake.url + "/v1/", read_timeout=5.0)
    yield b
    await b.close()


async def collect(b: OpenAICompatBackend, kind: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [chunk async for chunk in b.stream(kind, body)]


CHAT = {"model": "gemma3:270m", "messages": [{"role": "user", "content": "hi"}]}


async def test_chat_stream_becomes_ollama_chunks(fake: FakeOpenAI, backend: OpenAICompatBackend):
    fake.reply("/v1/chat/completions", LLAMACPP_CHAT)
    body = CHAT | {"options": {"num_predict": 16, "temperature": 0, "seed": 3, "stop": "\n"}}
    chunks = await collect(backend, "chat", body)

    assert [c["message"]["content"] for c in chunks] == ["Hel", "lo", ""]
    for c in chunks[:-1]:
        assert list(c) == ["model", "created_at", "message", "done"]
        assert c["model"] == "gemma3:270m" and c["done"] is False
        assert c["message"]["role"] == "assistant"
        assert CREATED_AT.match(c["created_at"])
    final = chunks[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["prompt_eval_count"] == 26 and final["eval_count"] == 2
    assert final["prompt_eval_duration"] == 107_460_000
    assert final["eval_duration"] == 24_140_000
    assert final["total_duration"] >= 107_460_000 + 24_140_000
    assert all(isinstance(final[k], int) for k in final if k.endswith(("_count", "_duration")))

    path, sent = fake.requests[0]
    assert path == "/v1/chat/completions"
    assert sent["model"] == "gemma3:270m" and sent["messages"] == CHAT["messages"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 16 and sent["temperature"] == 0 and sent["seed"] == 3
    assert sent["stop"] == ["\n"]


async def test_generate_goes_through_the_chat_template(
    fake: FakeOpenAI, backend: OpenAICompatBackend
):
    fake.reply("/v1/chat/completions", LLAMACPP_CHAT)
    body = {"model": "g", "prompt": "Why?", "system": "Be brief.", "options": {"num_predict": 4}}
    chunks = await collect(backend, "generate", body)
    assert [c["response"] for c in chunks] == ["Hel", "lo", ""]
    assert "message" not in chunks[0] and chunks[-1]["done_reason"] == "stop"
    assert fake.requests[0][1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why?"},
    ]


async def test_raw_generate_uses_plain_completions(fake: FakeOpenAI, backend: OpenAICompatBackend):
    text = [{"choices": [{"text": t, "index": 0, "finish_reason": None}]} for t in (" a", " b")]
    end = {"choices": [{"text": "", "index": 0, "finish_reason": "length"}], "usage": USAGE}
    fake.reply("/v1/completions", sse(*text, end))
    body = {"model": "g", "prompt": "x", "raw": True, "suffix": "y", "options": {"top_k": 5}}
    chunks = await collect(backend, "generate", body)
    assert [c["response"] for c in chunks] == [" a", " b", ""]
    assert chunks[-1]["done_reason"] == "length" and chunks[-1]["eval_count"] == 2
    sent = fake.requests[0][1]
    assert sent["prompt"] == "x" and sent["suffix"] == "y" and sent["top_k"] == 5


async def test_tool_call_fragments_arrive_as_one_ollama_call(
    fake: FakeOpenAI, backend: OpenAICompatBackend
):
    first = {"index": 0, "id": "call_abc", "type": "function"}
    first["function"] = {"name": "get_weather", "arguments": '{"ci'}
    rest = {"index": 0, "function": {"arguments": 'ty": "Tokyo"}'}}
    fake.reply(
        "/v1/chat/completions",
        sse(
            delta(tool_calls=[first]),
            delta(tool_calls=[rest]),
            delta(finish="tool_calls"),
            {"choices": [], "usage": USAGE},
        ),
    )
    chunks = await collect(backend, "chat", CHAT | {"tools": [{"type": "function"}]})
    assert len(chunks) == 2
    assert chunks[0]["message"]["tool_calls"] == [
        {
            "id": "call_abc",
            "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}},
        }
    ]
    assert chunks[1]["done_reason"] == "stop"
    assert fake.requests[0][1]["tools"] == [{"type": "function"}]


async def test_wall_clock_metrics_without_timings(fake: FakeOpenAI, backend: OpenAICompatBackend):
    fake.reply(
        "/v1/chat/completions",
        sse(delta("a"), delta("b"), delta("c", finish="stop"), {"choices": [], "usage": USAGE}),
        delay=0.05,
        gap=0.03,
    )
    final = (await collect(backend, "chat", CHAT))[-1]
    assert final["prompt_eval_count"] == 26 and final["eval_count"] == 2
    assert final["prompt_eval_duration"] >= 40_000_000  # waited for the first token
    assert final["eval_duration"] >= 40_000_000  # two gaps between three tokens
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]
    assert "load_duration" not in final  # zero metrics are left out, as Ollama does


async def test_sse_framing_edge_cases(fake: FakeOpenAI, backend: OpenAICompatBackend):
    raw = b"".join(sse(delta("x\ny"), delta("z", finish="stop")))
    raw = b": ping\r\n\r\n" + raw.replace(b"\n\n", b"\r\n\r\n")
    fake.reply("/v1/chat/completions", [raw[:17], raw[17:40], raw[40:]])  # split mid-line
    chunks = await collect(backend, "chat", CHAT)
    assert [c["message"]["content"] for c in chunks] == ["x\ny", "z", ""]


async def test_complete_aggregates_the_stream(fake: FakeOpenAI, backend: OpenAICompatBackend):
    fake.reply("/v1/chat/completions", LLAMACPP_CHAT)
    result = await backend.complete("chat", CHAT)
    assert result["message"] == {"role": "assistant", "content": "Hello"}
    assert result["done"] is True and result["eval_count"] == 2

    fake.json(
        "/v1/chat/completions",
        {"choices": [{"message": {"content": "Hi"}, "finish_reason": "length"}]},
    )
    result = await backend.complete("generate", {"model": "g", "prompt": "p"})
    assert result["response"] == "Hi" and result["done_reason"] == "length"


async def test_empty_requests_load_without_calling(fake: FakeOpenAI, backend: OpenAICompatBackend):
    chunks = await collect(backend, "chat", {"model": "m", "messages": []})
    assert chunks == [
        {
            "model": "m",
            "created_at": chunks[0]["created_at"],
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "load",
        }
    ]
    unload = await backend.complete("generate", {"model": "m", "keep_alive": 0})
    assert unload["done_reason"] == "unload" and unload["response"] == ""
    assert fake.requests == []


async def test_embed_is_normalised_and_ordered(fake: FakeOpenAI, backend: OpenAICompatBackend):
    rows = [{"object": "embedding", "index": 1, "embedding": [0.0, 2.0]}]
    rows.append({"object": "embedding", "index": 0, "embedding": [3.0, 4.0]})
    fake.json("/v1/embeddings", {"object": "list", "data": rows, "usage": {"prompt_tokens": 4}})
    result = await backend.complete("embed", {"model": "e", "input": ["a", "b"], "dimensions": 2})
    assert result["model"] == "e" and result["prompt_eval_count"] == 4
    assert result["embeddings"] == [[0.6, 0.8], [0.0, 1.0]]
    assert result["total_duration"] > 0
    assert fake.requests[0][1] == {
        "model": "e",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 2,
    }

    legacy = await backend.complete("embeddings", {"model": "e", "prompt": "a"})
    assert legacy == {"embedding": [3.0, 4.0]}
    assert await backend.complete("embed", {"model": "e", "input": []}) == {
        "model": "e",
        "embeddings": [],
    }
    with pytest.raises(BadRequest):
        await backend.complete("embed", {"model": "e", "input": 3})
    streamed = await collect(backend, "embed", {"model": "e", "input": "a"})
    assert math.isclose(streamed[0]["embeddings"][0][0], 0.6)


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (404, ModelNotFound, None),
        (400, BadRequest, None),
        (500, BackendError, True),
        (503, BackendError, True),
    ],
)
async def test_http_errors_map_to_herd_errors(
    fake: FakeOpenAI,
    backend: OpenAICompatBackend,
    status: int,
    error: type[HerdError],
    retryable: bool | None,
):
    envelope = {"error": {"code": status, "message": f"boom {status}", "type": "x"}}
    fake.json("/v1/chat/completions", envelope, status=status)
    with pytest.raises(error, match=f"boom {status}") as info:
        await collect(backend, "chat", CHAT)
    if retryable is not None:
        assert isinstance(info.value, BackendError)
        assert info.value.retryable is retryable and info.value.backend_status == status


async def test_connection_refused_is_retryable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    b = OpenAICompatBackend(f"http://127.0.0.1:{port}", connect_timeout=1.0)
    try:
        with pytest.raises(BackendError, match="cannot connect") as info:
            await collect(b, "chat", CHAT)
        assert info.value.retryable is True and not isinstance(info.value, BackendTimeout)
        state = await b.probe()
        assert state.ok is False and state.error
    finally:
        await b.close()


async def test_silence_is_a_backend_timeout(fake: FakeOpenAI):
    fake.reply("/v1/chat/completions", LLAMACPP_CHAT, delay=2.0)
    b = OpenAICompatBackend(fake.url, read_timeout=0.2)
    try:
        with pytest.raises(BackendTimeout) as info:
            await collect(b, "chat", CHAT)
        assert info.value.retryable is True
    finally:
        await b.close()


async def test_broken_stream_after_first_chunk_is_not_retryable(
    fake: FakeOpenAI, backend: OpenAICompatBackend
):
    fake.reply("/v1/chat/completions", LLAMACPP_CHAT[:2], abort=True)
    seen: list[dict[str, Any]] = []
    with pytest.raises(BackendError) as info:
        async for chunk in backend.stream("chat", CHAT):
            seen.append(chunk)
    assert [c["message"]["content"] for c in seen] == ["Hel"]
    assert info.value.retryable is False
    # Non-streamed, nothing reached the client yet: the same failure may be retried.
    with pytest.raises(BackendError) as info:
        await backend.complete("chat", CHAT)
    assert info.value.retryable is True


async def test_stream_ending_early_or_with_error_event(
    fake: FakeOpenAI, backend: OpenAICompatBackend
):
    fake.reply("/v1/chat/completions", [b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'])
    with pytest.raises(BackendError, match="closed the stream early") as info:
        await collect(backend, "chat", CHAT)
    assert info.value.retryable is False

    error = {"error": {"code": 500, "message": "slot crashed", "type": "server_error"}}
    fake.reply("/v1/chat/completions", sse(delta("a"), error))
    with pytest.raises(BackendError, match="slot crashed") as info:
        await collect(backend, "chat", CHAT)
    assert info.value.retryable is False

    error = {"error": {"code": 400, "message": "context too long", "type": "invalid_request_error"}}
    fake.reply("/v1/chat/completions", sse(error))
    with pytest.raises(BadRequest, match="context too long"):
        await collect(backend, "chat", CHAT)


async def test_bad_tool_arguments_are_a_backend_error(
    fake: FakeOpenAI, backend: OpenAICompatBackend
):
    call = {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{not json"}}
    fake.reply("/v1/chat/completions", sse(delta(tool_calls=[call]), delta(finish="tool_calls")))
    with pytest.raises(BackendError, match="bad tool arguments"):
        await collect(backend, "chat", CHAT)
    fake.reply("/v1/chat/completions", sse({"choices": ["not an object"]}))
    with pytest.raises(BackendError, match="bad reply") as info:
        await collect(backend, "chat", CHAT)
    assert info.value.retryable is False


def test_request_mapping_covers_ollama_fields():
    messages = [
        {"role": "System", "content": "sys"},
        {"role": "user", "content": "look", "images": ["iVBORw0KGgo=", "/9j/4AAQ"]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "42", "tool_name": "f"},
    ]
    options = {
        "num_predict": -1, "top_p": 0.9, "top_k": 40, "min_p": 0.1, "frequency_penalty": 0.5,
        "presence_penalty": 0.2, "repeat_penalty": 1.1, "num_ctx": 8192, "stop": ["x", "y"],
    }  # fmt: skip
    body = {
        "model": "m",
        "messages": messages,
        "options": options,
        "format": "json",
        "think": False,
    }
    path, payload = openai_request("chat", body, "llamacpp")
    assert path == "/v1/chat/completions"
    sent = payload["messages"]
    assert sent[0] == {"role": "system", "content": "sys"}
    assert sent[1]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
    ]
    call = sent[2]["tool_calls"][0]
    assert call["type"] == "function" and call["function"] == {"name": "f", "arguments": '{"a": 1}'}
    assert sent[3] == {"role": "tool", "content": "42", "tool_call_id": call["id"]}
    assert "max_tokens" not in payload and "num_ctx" not in payload
    assert payload["stop"] == ["x", "y"] and payload["repeat_penalty"] == 1.1
    for key in ("top_p", "top_k", "min_p", "frequency_penalty", "presence_penalty"):
        assert payload[key] == options[key]
    assert payload["response_format"] == {"type": "json_object"}
    assert payload["chat_template_kwargs"] == {"enable_thinking": False}

    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    _, payload = openai_request(
        "generate", {"model": "m", "prompt": "p", "format": schema}, "openai"
    )
    assert payload["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }
    assert "repeat_penalty" not in payload and "chat_template_kwargs" not in payload
    with pytest.raises(BadRequest):
        openai_request("chat", {"model": "m", "options": [1]}, "llamacpp")


async def test_probe_reads_models_health_and_props(fake: FakeOpenAI):
    meta = {"n_ctx": 1024, "n_params": 268098176, "size": 246587904, "ftype": "Q4_K - Medium"}
    model = {"id": "gemma3:270m", "object": "model", "created": 1751919773, "meta": meta}
    fake.json("/health", {"status": "ok"})
    fake.json("/v1/models", {"object": "list", "data": [model]})
    fake.json("/props", {"build_info": "b6000-abc"})
    b = OpenAICompatBackend(fake.url, model_sizes={"gemma3:270m": 253113024})
    try:
        state = await b.probe()
        assert state.ok and state.kind == "llamacpp" and state.version == "b6000-abc"
        (disk,) = state.models
        assert (disk.name, disk.size, disk.parameter_size, disk.quantization_level) == (
            "gemma3:270m", 253113024, "268.10M", "Q4_K_M"
        )  # fmt: skip
        assert disk.modified_at.startswith("2025-07-07T")
        (loaded,) = state.loaded
        assert (loaded.name, loaded.size, loaded.context_length) == ("gemma3:270m", 253113024, 1024)

        fake.json("/v1/models", {"data": [{"no": "id"}]})
        state = await b.probe()
        assert state.ok is False and "bad /v1/models" in (state.error or "")

        fake.json("/health", {"error": {"code": 503, "message": "Loading model"}}, status=503)
        state = await b.probe()
        assert state.ok is False and "Loading model" in (state.error or "")
    finally:
        await b.close()


async def test_reasoning_becomes_thinking(fake: FakeOpenAI, backend: OpenAICompatBackend):
    fake.reply(
        "/v1/chat/completions",
        sse(delta(reasoning_content="hmm"), delta("ok", finish="stop"), {"choices": []}),
    )
    chunks = await collect(backend, "chat", CHAT)
    assert chunks[0]["message"] == {"role": "assistant", "content": "", "thinking": "hmm"}
    result = await backend.complete("generate", {"model": "g", "prompt": "p"})
    assert (result["response"], result["thinking"]) == ("ok", "hmm")
