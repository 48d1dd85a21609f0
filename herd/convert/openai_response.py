"""Ollama chat chunks -> OpenAI ``chat.completion`` (SSE stream or one object).

The stream follows ``openai-api.md`` section 8.3: the first emitted chunk carries
``delta.role`` (and ``content``, possibly ``""``); one ``id`` and ``created`` for the
whole completion; ``thinking`` -> ``delta.reasoning`` (emitted before content of the same
chunk); tool calls get a running ``index`` and JSON-string ``arguments``; the final
chunk emits any content, then ``delta:{}`` with ``finish_reason``, then (when asked)
a ``choices:[]`` usage chunk, then ``data: [DONE]``. An upstream ``{"error":...}``
becomes ``data: {"error":{...}}``, which openai-python raises as ``APIError``.

Per-request constants (the JSON head with id, created, model) are encoded once; a
plain content chunk costs one string encode and a few byte concatenations.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from herd.convert.ollama_response import error_text
from herd.json_codec import dumps

SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEPALIVE = b": keep-alive\n\n"
"""An SSE comment: clients ignore it; useful to keep idle connections open."""
SYSTEM_FINGERPRINT = "fp_herd"


def new_completion_id(prefix: str = "chatcmpl-") -> str:
    """A fresh completion id (``chatcmpl-`` for chat, ``cmpl-`` for completions)."""
    return prefix + secrets.token_hex(12)


def new_tool_call_id() -> str:
    """``call_`` plus 8 lowercase alphanumerics, like Ollama's ids."""
    return "call_" + secrets.token_hex(4)


def sse_event(obj: Any) -> bytes:
    """``data: <compact JSON>\\n\\n``."""
    return b"data: " + dumps(obj) + b"\n\n"


def sse_error(message: str, *, type: str = "api_error", code: str | None = None) -> bytes:
    """A mid-stream error event (openai-python raises ``APIError`` with ``message``)."""
    return sse_event({"error": {"message": message, "type": type, "param": None, "code": code}})


def openai_error_body(
    status: int, message: str, code: str | None = None, *, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope for an HTTP status (section 1).

    404 -> ``invalid_request_error`` / ``model_not_found``; 429 -> ``requests`` /
    ``rate_limit_exceeded``; 5xx -> ``server_error``; other 4xx ->
    ``invalid_request_error``. ``code`` overrides the default code.
    """
    if status == 404:
        kind, code = "invalid_request_error", code or "model_not_found"
    elif status == 429:
        kind, code = "requests", code or "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def usage(final: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI ``usage`` from an Ollama final chunk (missing metrics count as 0)."""
    prompt = final.get("prompt_eval_count") or 0
    completion = final.get("eval_count") or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cached = final.get("prompt_eval_cached_count")
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def finish_reason(done_reason: str | None, tool_calls: bool) -> str:
    """``length`` stays; otherwise ``tool_calls`` if any call was seen, else ``stop``."""
    if done_reason == "length":
        return "length"
    return "tool_calls" if tool_calls else "stop"


def _arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)


def openai_tool_calls(calls: list[Any], start: int | None = None) -> list[dict[str, Any]]:
    """Ollama tool calls -> OpenAI ones; ``start`` adds the streaming ``index``."""
    out = []
    for offset, call in enumerate(calls):
        function = call.get("function") or {}
        item: dict[str, Any] = {}
        if start is not None:
            item["index"] = start + offset
        item["id"] = call.get("id") or new_tool_call_id()
        item["type"] = "function"
        item["function"] = {
            "name": function.get("name", ""),
            "arguments": _arguments(function.get("arguments")),
        }
        out.append(item)
    return out


def _token_logprob(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "token": entry.get("token", ""),
        "logprob": entry.get("logprob", 0.0),
        "bytes": entry.get("bytes"),
    }


def openai_logprobs(logprobs: list[Any]) -> dict[str, Any]:
    """Ollama ``logprobs`` -> OpenAI ``choice.logprobs`` (``{"content": [...]}``)."""
    content = []
    for entry in logprobs:
        item = _token_logprob(entry)
        item["top_logprobs"] = [_token_logprob(top) for top in entry.get("top_logprobs") or ()]
        content.append(item)
    return {"content": content, "refusal": None}


class OpenAIChatStream:
    """Turns Ollama ``/api/chat`` chunks into OpenAI SSE events (bytes)."""

    __slots__ = (
        "_closing",
        "_finish_head",
        "_finished",
        "_include_usage",
        "_opening",
        "_started",
        "_tool_calls",
        "_usage_head",
    )

    def __init__(
        self, model: str, created: int, completion_id: str, include_usage: bool = False
    ) -> None:
        head = dumps(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
        )[:-1]
        self._opening = b"data: " + head + b',"choices":[{"index":0,"delta":'
        self._closing = b',"finish_reason":null}]}\n\n'
        self._finish_head = (
            b"data: " + head + b',"choices":[{"index":0,"delta":{},"finish_reason":"'
        )
        self._usage_head = b"data: " + head + b',"choices":[],"usage":'
        self._include_usage = include_usage
        self._started = False
        self._finished = False
        self._tool_calls = 0

    @property
    def finished(self) -> bool:
        """True once ``[DONE]`` or an error event has been produced."""
        return self._finished

    def _emit(self, delta: dict[str, Any], logprobs: list[Any] | None = None) -> bytes:
        if not self._started:
            self._started = True
            delta = {"role": "assistant", "content": "", **delta}
        if logprobs:
            tail = b',"logprobs":' + dumps(openai_logprobs(logprobs)) + self._closing
            return self._opening + dumps(delta) + tail
        return self._opening + dumps(delta) + self._closing

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """SSE events for one Ollama chunk (none, one, or several; [DONE] at the end)."""
        if self._finished:
            return []
        if "error" in chunk:
            return [self.error(error_text(chunk["error"]))]
        out: list[bytes] = []
        message = chunk.get("message")
        if message:
            thinking = message.get("thinking")
            content = message.get("content")
            calls = message.get("tool_calls")
            logprobs = chunk.get("logprobs")
            if thinking:
                out.append(self._emit({"reasoning": thinking}))
            if calls or logprobs:
                delta: dict[str, Any] = {"content": content} if content else {}
                if calls:
                    delta["tool_calls"] = openai_tool_calls(calls, self._tool_calls)
                    self._tool_calls += len(calls)
                out.append(self._emit(delta, logprobs))
            elif content:
                if self._started:
                    out.append(
                        self._opening + b'{"content":' + dumps(content) + b"}" + self._closing
                    )
                else:
                    out.append(self._emit({"content": content}))
        if chunk.get("done"):
            if not self._started:
                out.append(self._emit({}))
            reason = finish_reason(chunk.get("done_reason"), self._tool_calls > 0)
            out.append(self._finish_head + reason.encode() + b'"}]}\n\n')
            if self._include_usage:
                out.append(self._usage_head + dumps(usage(chunk)) + b"}\n\n")
            out.append(SSE_DONE)
            self._finished = True
        return out

    def feed_many(self, chunks: Iterable[Mapping[str, Any]]) -> bytes:
        """All events for chunks that are already buffered, as one write."""
        return b"".join([event for chunk in chunks for event in self.feed(chunk)])

    def error(self, message: str, code: str | None = None) -> bytes:
        """A mid-stream error event; the stream is finished afterwards."""
        self._finished = True
        return sse_error(message, code=code)


def openai_chat_completion(
    response: Mapping[str, Any], *, model: str, created: int, completion_id: str
) -> dict[str, Any]:
    """One non-streamed Ollama chat response (or a folded stream, see
    :func:`herd.convert.ollama_response.fold_chunks`) -> a ``chat.completion``."""
    message = response.get("message") or {}
    content = message.get("content") or ""
    calls = message.get("tool_calls") or []
    out_message: dict[str, Any] = {
        "role": "assistant",
        "content": content if content or not calls else None,
    }
    thinking = message.get("thinking")
    if thinking:
        out_message["reasoning"] = thinking
    if calls:
        out_message["tool_calls"] = openai_tool_calls(calls)
    logprobs = response.get("logprobs")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": out_message,
                "logprobs": openai_logprobs(logprobs) if logprobs else None,
                "finish_reason": finish_reason(response.get("done_reason"), bool(calls)),
            }
        ],
        "usage": usage(response),
    }
