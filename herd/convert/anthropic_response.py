"""Ollama chat chunks -> Anthropic Messages answers: the SSE event stream, the ``message``
object, and Anthropic's error shape.

The stream: ``message_start`` (the message with empty ``content``; ``usage.input_tokens``
is 0 there, because a node reports the prompt's tokens only with its last chunk), one
``ping``, then per content block ``content_block_start`` / ``content_block_delta`` /
``content_block_stop`` (``thinking`` -> a thinking block of ``thinking_delta``\\ s, text
-> a text block of ``text_delta``\\ s, each tool call -> a ``tool_use`` block whose
``input`` comes as one ``input_json_delta``), then ``message_delta`` (``stop_reason``
and the real ``usage``: input and output tokens) and ``message_stop``. A failure after
the first event ends the stream with an ``error`` event.

``stop_reason``: ``tool_use`` when the model called a tool, ``max_tokens`` when the node
stopped at ``num_predict`` (``done_reason: length``), else ``end_turn``. A node stops at
a ``stop_sequences`` entry itself and strips it, answering ``done_reason: stop`` as for
the end of the model's turn, so ``stop_sequence`` is never reported (``stop_sequence``
is null).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from herd.convert.ollama_response import error_text
from herd.json_codec import dumps

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def new_tool_use_id() -> str:
    return "toolu_" + secrets.token_hex(12)


def anthropic_error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status (other 4xx: invalid request; 5xx:
    ``api_error``, except 503, herd's "no node can take it now": ``overloaded_error``)."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type": ..., "message": ...}}``."""
    return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    """One named SSE event: ``event: <name>`` and a ``data:`` line of compact JSON."""
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def stop_reason(done_reason: str | None, tool_calls: bool) -> str:
    if tool_calls:
        return "tool_use"
    return "max_tokens" if done_reason == "length" else "end_turn"


def anthropic_usage(final: Mapping[str, Any]) -> dict[str, int]:
    return {
        "input_tokens": final.get("prompt_eval_count") or 0,
        "output_tokens": final.get("eval_count") or 0,
    }


def _arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return {"arguments": arguments}
    return arguments if isinstance(arguments, dict) else {}


def tool_use_block(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "type": "tool_use",
        "id": call.get("id") or new_tool_use_id(),
        "name": function.get("name", ""),
        "input": _arguments(function.get("arguments")),
    }


def anthropic_message(
    response: Mapping[str, Any], *, model: str, message_id: str
) -> dict[str, Any]:
    """One folded Ollama chat response -> an Anthropic ``message`` object."""
    message = response.get("message") or {}
    content: list[dict[str, Any]] = []
    thinking = message.get("thinking")
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    text = message.get("content") or ""
    calls = message.get("tool_calls") or []
    if text or not calls:
        content.append({"type": "text", "text": text})
    content.extend(tool_use_block(call) for call in calls)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(response.get("done_reason"), bool(calls)),
        "stop_sequence": None,
        "usage": anthropic_usage(response),
    }


class AnthropicStream:
    """Turns Ollama ``/api/chat`` chunks into Anthropic's SSE events (bytes)."""

    __slots__ = ("_block", "_finished", "_index", "_message_id", "_model", "_started", "_tools")

    def __init__(self, model: str, message_id: str) -> None:
        self._model = model
        self._message_id = message_id
        self._started = False
        self._finished = False
        self._block: str | None = None  # the type of the open content block
        self._index = -1
        self._tools = 0

    @property
    def finished(self) -> bool:
        """True once ``message_stop`` or an error event has been produced."""
        return self._finished

    def _start(self, out: list[bytes]) -> None:
        self._started = True
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(sse("message_start", {"type": "message_start", "message": message}))
        out.append(sse("ping", {"type": "ping"}))

    def _close(self, out: list[bytes]) -> None:
        if self._block is not None:
            if self._block == "thinking":
                delta = {"type": "signature_delta", "signature": ""}
                out.append(self._delta(delta))
            out.append(
                sse("content_block_stop", {"type": "content_block_stop", "index": self._index})
            )
            self._block = None

    def _open(self, out: list[bytes], block: dict[str, Any]) -> None:
        self._close(out)
        self._index += 1
        self._block = block["type"]
        event = {"type": "content_block_start", "index": self._index, "content_block": block}
        out.append(sse("content_block_start", event))

    def _delta(self, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": self._index, "delta": delta}
        return sse("content_block_delta", event)

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """The events for one Ollama chunk (``message_stop`` after the last one)."""
        if self._finished:
            return []
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        if "error" in chunk:
            out.append(self.error(error_text(chunk["error"])))
            return out
        message = chunk.get("message") or {}
        thinking = message.get("thinking")
        if thinking:
            if self._block != "thinking":
                self._open(out, {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._delta({"type": "thinking_delta", "thinking": thinking}))
        content = message.get("content")
        if content:
            if self._block != "text":
                self._open(out, {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": content}))
        for call in message.get("tool_calls") or ():
            block = tool_use_block(call)
            arguments = block["input"]
            self._open(out, {**block, "input": {}})
            partial = json.dumps(arguments, ensure_ascii=False)
            out.append(self._delta({"type": "input_json_delta", "partial_json": partial}))
            self._close(out)
            self._tools += 1
        if chunk.get("done"):
            self._close(out)
            delta = {
                "stop_reason": stop_reason(chunk.get("done_reason"), self._tools > 0),
                "stop_sequence": None,
            }
            event = {"type": "message_delta", "delta": delta, "usage": anthropic_usage(chunk)}
            out.append(sse("message_delta", event))
            out.append(sse("message_stop", {"type": "message_stop"}))
            self._finished = True
        return out

    def feed_many(self, chunks: Iterable[Mapping[str, Any]]) -> bytes:
        return b"".join([event for chunk in chunks for event in self.feed(chunk)])

    def error(self, message: str, status: int = 500) -> bytes:
        """The ``error`` event that ends a stream that failed after its first event."""
        self._finished = True
        return sse("error", anthropic_error_body(status, message))
