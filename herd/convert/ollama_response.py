"""Ollama-dialect responses: NDJSON lines, the non-streamed fold, error and tag bodies.

Chunks from a node are already Ollama-native, so streaming is one encode per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from herd.domain import ModelOnDisk, canonical_model
from herd.errors import BackendError
from herd.json_codec import dumps

FoldKind = Literal["chat", "generate"]

_EPOCH = "1970-01-01T00:00:00Z"


def ndjson_line(chunk: Mapping[str, Any]) -> bytes:
    """One chunk as an NDJSON line: compact JSON plus ``\\n`` (never a blank line)."""
    if type(chunk) is not dict:
        chunk = dict(chunk)
    return dumps(chunk) + b"\n"


def ndjson_lines(chunks: Iterable[Mapping[str, Any]]) -> bytes:
    """Several buffered chunks as one write of NDJSON lines."""
    return b"".join([ndjson_line(chunk) for chunk in chunks])


def ollama_error_body(message: str) -> dict[str, Any]:
    """Ollama's error body: ``{"error": message}`` (also the mid-stream error line)."""
    return {"error": message}


def error_text(error: Any) -> str:
    """The message of an upstream ``error`` value (a string, or ``{"message": ...}``)."""
    if isinstance(error, Mapping):
        return str(error.get("message") or error)
    return str(error)


class OllamaAggregator:
    """Folds a chat or generate chunk stream into Ollama's single non-streamed body.

    ``feed`` every chunk (a lone non-streamed response works too), then ``result()``:
    full ``content``/``response`` and ``thinking``, every tool call, all logprobs, and
    the final chunk's ``done_reason`` and metrics. An ``{"error": ...}`` chunk raises
    :class:`BackendError`.
    """

    __slots__ = ("_final", "_logprobs", "_role", "_text", "_thinking", "_tool_calls", "kind")

    def __init__(self, kind: FoldKind = "chat") -> None:
        self.kind: FoldKind = kind
        self._text: list[str] = []
        self._thinking: list[str] = []
        self._tool_calls: list[Any] = []
        self._logprobs: list[Any] = []
        self._role = "assistant"
        self._final: Mapping[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self._final is not None

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "error" in chunk:
            raise BackendError(error_text(chunk["error"]), retryable=False)
        if self.kind == "chat":
            message = chunk.get("message")
            if message:
                content = message.get("content")
                thinking = message.get("thinking")
                calls = message.get("tool_calls")
                if calls:
                    self._tool_calls.extend(calls)
                role = message.get("role")
                if role:
                    self._role = role
            else:
                content = thinking = None
        else:
            content = chunk.get("response")
            thinking = chunk.get("thinking")
        if content:
            self._text.append(content)
        if thinking:
            self._thinking.append(thinking)
        logprobs = chunk.get("logprobs")
        if logprobs:
            self._logprobs.extend(logprobs)
        if chunk.get("done"):
            self._final = chunk

    def result(self) -> dict[str, Any]:
        """The non-streamed response; :class:`BackendError` if no final chunk came."""
        final = self._final
        if final is None:
            raise BackendError("backend stream ended before the final chunk")
        out: dict[str, Any] = {
            "model": final.get("model", ""),
            "created_at": final.get("created_at", _EPOCH),
        }
        text = "".join(self._text)
        thinking = "".join(self._thinking)
        if self.kind == "chat":
            message: dict[str, Any] = {"role": self._role, "content": text}
            if thinking:
                message["thinking"] = thinking
            if self._tool_calls:
                message["tool_calls"] = self._tool_calls
            out["message"] = message
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        for key, value in final.items():
            if key not in _FOLDED:
                out[key] = value
        if self._logprobs:
            out["logprobs"] = self._logprobs
        return out


_FOLDED = frozenset({"model", "created_at", "message", "response", "thinking", "logprobs"})


def fold_chunks(kind: FoldKind, chunks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Fold a whole chunk stream (see :class:`OllamaAggregator`)."""
    aggregator = OllamaAggregator(kind)
    for chunk in chunks:
        aggregator.feed(chunk)
    return aggregator.result()


def ollama_embeddings_body(response: Mapping[str, Any]) -> dict[str, Any]:
    """Legacy ``/api/embeddings`` body (``{"embedding": [...]}``) from an ``/api/embed``
    or ``/api/embeddings`` response."""
    if "embedding" in response:
        return {"embedding": response["embedding"]}
    vectors = response.get("embeddings") or []
    return {"embedding": vectors[0] if vectors else []}


def ollama_tags_body(models: Iterable[ModelOnDisk]) -> dict[str, Any]:
    """``GET /api/tags`` body; a model present on several nodes is listed once."""
    seen: set[str] = set()
    entries = []
    for model in models:
        key = canonical_model(model.name)
        if key in seen:
            continue
        seen.add(key)
        family = model.family
        entries.append(
            {
                "name": model.name,
                "model": model.name,
                "modified_at": model.modified_at or _EPOCH,
                "size": model.size,
                "digest": model.digest,
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": family,
                    "families": [family] if family else None,
                    "parameter_size": model.parameter_size,
                    "quantization_level": model.quantization_level,
                },
            }
        )
    return {"models": entries}


STREAMED_KINDS = ("chat", "generate")  # answers of other kinds are one chunk: the result


class SingleResult:
    """The fold of a one-chunk answer (embeddings, images, transcriptions): that chunk."""

    __slots__ = ("_result",)

    def __init__(self) -> None:
        self._result: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self._result is not None

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "error" in chunk and len(chunk) == 1:
            raise BackendError(error_text(chunk["error"]), retryable=False)
        self._result = dict(chunk)

    def result(self) -> dict[str, Any]:
        if self._result is None:
            raise BackendError("the node's answer was empty", retryable=False)
        return self._result


def answer_folder(kind: str) -> OllamaAggregator | SingleResult:
    """What folds a node's answer of ``kind`` into one response (the one place that does)."""
    if kind in STREAMED_KINDS:
        return OllamaAggregator(kind)  # type: ignore[arg-type]
    return SingleResult()


def answer_complete(kind: str, last: Mapping[str, Any] | None) -> bool:
    """Whether an answer whose last chunk is ``last`` ended properly."""
    if last is None:
        return False
    return bool(last.get("done")) if kind in STREAMED_KINDS else True
