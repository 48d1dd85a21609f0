"""Ollama chat chunks -> OpenAI Responses: one ``response`` object, or its SSE events.

The object: ``id`` (``resp_...``), ``object: "response"``, ``status`` (``completed``, or
``incomplete`` with ``incomplete_details.reason: "max_output_tokens"`` when Ollama
stopped on ``length``), ``output`` items (a ``reasoning`` item when the model thought,
a ``message`` with one ``output_text`` part, one ``function_call`` item per tool call)
and ``usage`` (input / output / total tokens). ``store`` is always ``false``: herd keeps
nothing. The request's settings are echoed (``instructions``, ``tools``, ...).

The stream: ``event: <type>`` + ``data: <json>`` per event, each with a running
``sequence_number``: ``response.created``, ``response.in_progress``, then per output
item ``response.output_item.added`` ... ``response.output_item.done`` (a message's
``content_part.added``, ``output_text.delta`` ..., ``output_text.done``,
``content_part.done``; a call's ``function_call_arguments.delta`` / ``.done``; a
reasoning item's ``reasoning_summary_text.delta`` / ``.done``), and last
``response.completed`` (or ``response.incomplete``) with the whole response and usage.
A failure after the first chunk: an ``error`` event, then ``response.failed``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from herd.convert.ollama_response import error_text
from herd.convert.openai_response import new_tool_call_id
from herd.json_codec import dumps
from herd.wire.openai_responses import ResponsesRequest


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


def _item_id(prefix: str) -> str:
    return prefix + "_" + secrets.token_hex(24)


def response_base(
    req: ResponsesRequest, *, model: str, response_id: str, created_at: int
) -> dict[str, Any]:
    """The fields of the ``response`` object that come from the request."""
    fmt: dict[str, Any] = {"type": "text"}
    if req.text is not None and req.text.format is not None:
        fmt = req.text.format.model_dump(by_alias=True, exclude_none=True)
    tools = [
        {"parameters": None, "strict": None, **t.model_dump(exclude_none=True)}
        for t in req.tools or ()
    ]
    metadata = {k: v for k, v in (req.metadata or {}).items() if isinstance(v, str)}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": model,
        "output": [],
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": None,
        "reasoning": {
            "effort": req.reasoning.effort if req.reasoning else None,
            "summary": None,
        },
        "store": False,
        "temperature": req.temperature,
        "text": {"format": fmt},
        "tool_choice": req.tool_choice or "auto",
        "tools": tools,
        "top_p": req.top_p,
        "truncation": "disabled",
        "usage": None,
        "user": req.user,
        "metadata": metadata,
    }


def response_usage(final: Mapping[str, Any]) -> dict[str, Any]:
    """Responses ``usage`` from an Ollama final chunk (missing metrics count as 0)."""
    prompt = final.get("prompt_eval_count") or 0
    completion = final.get("eval_count") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": final.get("prompt_eval_cached_count") or 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)


def _call_item(call: Mapping[str, Any], status: str = "completed") -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "type": "function_call",
        "id": _item_id("fc"),
        "call_id": call.get("id") or new_tool_call_id(),
        "name": function.get("name", ""),
        "arguments": _arguments(function.get("arguments")),
        "status": status,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [_text_part(text)]
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _reasoning_item(item_id: str, text: str | None) -> dict[str, Any]:
    summary = [] if text is None else [{"type": "summary_text", "text": text}]
    return {"type": "reasoning", "id": item_id, "summary": summary}


def _finish(out: dict[str, Any], final: Mapping[str, Any]) -> dict[str, Any]:
    out["usage"] = response_usage(final)
    if final.get("done_reason") == "length":
        out["status"] = "incomplete"
        out["incomplete_details"] = {"reason": "max_output_tokens"}
    else:
        out["status"] = "completed"
        out["completed_at"] = int(time.time())
    return out


def openai_response(result: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """One non-streamed (or folded) Ollama chat response -> a ``response`` object."""
    message = result.get("message") or {}
    output: list[dict[str, Any]] = []
    if message.get("thinking"):
        output.append(_reasoning_item(_item_id("rs"), message["thinking"]))
    calls = message.get("tool_calls") or []
    content = message.get("content") or ""
    if content or not calls:
        output.append(_message_item(_item_id("msg"), content, "completed"))
    output.extend(_call_item(call) for call in calls)
    return _finish({**base, "output": output}, result)


class OpenAIResponsesStream:
    """Turns Ollama ``/api/chat`` chunks into Responses SSE events (bytes)."""

    def __init__(self, base: Mapping[str, Any]) -> None:
        self._base = dict(base)
        self._seq = 0
        self._started = False
        self._finished = False
        self._output: list[dict[str, Any]] = []  # finished items, in output order
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._text: list[str] = []

    @property
    def finished(self) -> bool:
        return self._finished

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"

    def _response(self, **over: Any) -> dict[str, Any]:
        return {**self._base, "output": list(self._output), **over}

    def _start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(self._event("response.created", response=self._response()))
            out.append(self._event("response.in_progress", response=self._response()))

    def _open_item(self, out: list[bytes], kind: str) -> dict[str, Any]:
        if self._open is not None and self._open["type"] == kind:
            return self._open
        self._close_item(out)
        index = len(self._output)
        if kind == "message":
            item = _message_item(_item_id("msg"), None, "in_progress")
            out.append(self._event("response.output_item.added", output_index=index, item=item))
            part = _text_part("")
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
        else:
            item = _reasoning_item(_item_id("rs"), None)
            out.append(self._event("response.output_item.added", output_index=index, item=item))
            out.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
            )
        self._open = item
        self._text = []
        return item

    def _delta(self, out: list[bytes], kind: str, text: str) -> None:
        item = self._open_item(out, kind)
        self._text.append(text)
        index = len(self._output)
        if kind == "message":
            out.append(
                self._event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=text,
                    logprobs=[],
                )
            )
        else:
            out.append(
                self._event(
                    "response.reasoning_summary_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=0,
                    delta=text,
                )
            )

    def _close_item(self, out: list[bytes]) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        index = len(self._output)
        text = "".join(self._text)
        ids = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            out.append(
                self._event(
                    "response.output_text.done", **ids, content_index=0, text=text, logprobs=[]
                )
            )
            out.append(
                self._event(
                    "response.content_part.done", **ids, content_index=0, part=_text_part(text)
                )
            )
            done = _message_item(item["id"], text, "completed")
        else:
            out.append(
                self._event(
                    "response.reasoning_summary_text.done", **ids, summary_index=0, text=text
                )
            )
            part = {"type": "summary_text", "text": text}
            out.append(
                self._event(
                    "response.reasoning_summary_part.done", **ids, summary_index=0, part=part
                )
            )
            done = _reasoning_item(item["id"], text)
        out.append(self._event("response.output_item.done", output_index=index, item=done))
        self._output.append(done)

    def _calls(self, out: list[bytes], calls: list[Any]) -> None:
        self._close_item(out)
        for call in calls:
            index = len(self._output)
            done = _call_item(call)
            added = {**done, "arguments": "", "status": "in_progress"}
            out.append(self._event("response.output_item.added", output_index=index, item=added))
            ids = {"item_id": done["id"], "output_index": index}
            arguments = done["arguments"]
            out.append(
                self._event("response.function_call_arguments.delta", **ids, delta=arguments)
            )
            out.append(
                self._event("response.function_call_arguments.done", **ids, arguments=arguments)
            )
            out.append(self._event("response.output_item.done", output_index=index, item=done))
            self._output.append(done)

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """SSE events for one Ollama chunk (none, one or several)."""
        if self._finished:
            return []
        if "error" in chunk:
            return [self.error(error_text(chunk["error"]))]
        out: list[bytes] = []
        self._start(out)
        message = chunk.get("message") or {}
        if message.get("thinking"):
            self._delta(out, "reasoning", message["thinking"])
        if message.get("content"):
            self._delta(out, "message", message["content"])
        if message.get("tool_calls"):
            self._calls(out, message["tool_calls"])
        if chunk.get("done"):
            if not self._output and self._open is None:
                self._open_item(out, "message")  # an empty answer is still one message
            self._close_item(out)
            response = _finish(self._response(), chunk)
            kind = (
                "response.incomplete"
                if response["status"] == "incomplete"
                else "response.completed"
            )
            out.append(self._event(kind, response=response))
            self._finished = True
        return out

    def error(self, message: str, code: str | None = None) -> bytes:
        """A failure mid-stream: an ``error`` event, then ``response.failed``."""
        out: list[bytes] = []
        self._start(out)
        self._finished = True
        error = {"code": code or "server_error", "message": message}
        out.append(self._event("error", code=error["code"], message=message, param=None))
        out.append(
            self._event("response.failed", response=self._response(status="failed", error=error))
        )
        return b"".join(out)
