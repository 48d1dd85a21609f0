"""The contract every local LLM backend meets (Ollama, OpenAI-compatible servers).

The internal wire form is Ollama-native: request bodies are ``/api/chat``,
``/api/generate`` or ``/api/embed`` bodies and stream chunks are Ollama chunks
(``done: false`` ... final ``done: true`` chunk with ``done_reason`` and metrics).
A backend that speaks another protocol converts at its own edge.

Errors: a backend raises only :mod:`herd.errors` types:
``ModelNotFound`` (404), ``BadRequest`` (400), ``BackendTimeout``, and
``BackendError(retryable=..., backend_status=...)`` for everything else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from herd.domain import BackendKind, LoadedModel, ModelOnDisk, RequestKind


@dataclass(frozen=True, slots=True)
class BackendState:
    """What a probe of the backend found."""

    kind: BackendKind
    url: str
    ok: bool
    version: str = ""
    models: tuple[ModelOnDisk, ...] = ()
    loaded: tuple[LoadedModel, ...] = ()
    error: str | None = None


class Backend(Protocol):
    kind: BackendKind
    url: str

    async def probe(self) -> BackendState:
        """Version, models on disk and loaded models; never raises (ok=False instead)."""
        ...

    def stream(self, kind: RequestKind, body: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Yield Ollama-native chunks; the last one has ``done: true`` and the metrics."""
        ...

    async def complete(self, kind: RequestKind, body: Mapping[str, Any]) -> dict[str, Any]:
        """One Ollama-native non-streamed response (chat, generate or embed)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class RawLines(Protocol):
    """A backend that can hand over its stream as the NDJSON lines it received (Ollama):
    the node's HTTP data plane then forwards them without decoding and re-encoding each
    chunk. Same errors and the same end as :meth:`Backend.stream`."""

    def stream_lines(self, kind: RequestKind, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """Yield each chunk's JSON line (no newline); raise as ``stream`` would."""
        ...
