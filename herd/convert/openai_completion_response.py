"""Ollama ``/api/generate`` chunks -> OpenAI ``text_completion`` (stream or object).

Streamed chunks carry ``finish_reason: null`` until the last one, which has
``"stop"`` or ``"length"`` (the only values the client types allow, so ``load`` and
``unload`` map to ``stop``). ``thinking`` has no place in a text completion and is
dropped. With ``include_usage`` a ``choices:[]`` usage chunk precedes ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from herd.convert.ollama_response import error_text
from herd.convert.openai_response import SSE_DONE, SYSTEM_FINGERPRINT, sse_error, usage
from herd.json_codec import dumps


def _completion_finish(done_reason: str | None) -> str:
    return "length" if done_reason == "length" else "stop"


class OpenAICompletionStream:
    """Turns Ollama ``/api/generate`` chunks into OpenAI completion SSE events."""

    __slots__ = ("_finish_head", "_finished", "_include_usage", "_text_head", "_usage_head")

    def __init__(
        self, model: str, created: int, completion_id: str, include_usage: bool = False
    ) -> None:
        head = dumps(
            {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
        )[:-1]
        self._text_head = b"data: " + head + b',"choices":[{"index":0,"text":'
        self._finish_head = (
            b"data: " + head + b',"choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"'
        )
        self._usage_head = b"data: " + head + b',"choices":[],"usage":'
        self._include_usage = include_usage
        self._finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """SSE events for one Ollama generate chunk."""
        if self._finished:
            return []
        if "error" in chunk:
            return [self.error(error_text(chunk["error"]))]
        out: list[bytes] = []
        text = chunk.get("response")
        if text:
            out.append(
                self._text_head + dumps(text) + b',"logprobs":null,"finish_reason":null}]}\n\n'
            )
        if chunk.get("done"):
            reason = _completion_finish(chunk.get("done_reason"))
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


def openai_completion(
    response: Mapping[str, Any], *, model: str, created: int, completion_id: str
) -> dict[str, Any]:
    """One non-streamed Ollama generate response (or a folded stream) -> a
    ``text_completion`` object with real usage."""
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "text": response.get("response") or "",
                "index": 0,
                "logprobs": None,
                "finish_reason": _completion_finish(response.get("done_reason")),
            }
        ],
        "usage": usage(response),
    }
