"""The trace of one request while it runs, and the outbox that ships finished traces.

A :class:`TraceContext` is opened when a request arrives (the ingress's trace middleware,
or the dispatcher itself for Python callers), filled in as the request goes (parsed
request, every routing decision, the outcome) and closed exactly once into a
:class:`~herd.traces.records.TraceRecord`, whatever happened: served, failed, rejected
before routing, or abandoned by its client. ``current_trace`` carries the open context
through the request's task (and the streaming body's child task, which copies it).

:class:`TraceOutbox` holds finished records until the router acknowledges them (it
writes them through its ``TraceWriter``); a batch that fails stays and is sent again,
and the router's store ignores duplicates, so nothing is lost while the router restarts.
"""

from __future__ import annotations

import contextvars
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from herd.domain import Decision, InferenceRequest
from herd.traces.records import TraceRecord, TraceStatus, normalize_tags, routing_fields

current_trace: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "herd_trace", default=None
)


@dataclass(slots=True)
class TraceContext:
    dialect: str = "ollama"
    kind: str = "chat"
    request_id: str = field(default_factory=lambda: secrets.token_hex(16))
    started: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    requested_model: str = ""
    stream: bool = False
    tags: tuple[str, ...] = ()
    # Tags the ingress adds whatever the request says (the inference key's name).
    caller_tags: tuple[str, ...] = ()
    client: str | None = None
    decision: Decision | None = None
    attempts: int = 0
    retries: int = 0
    excluded: list[str] = field(default_factory=list)
    ttft_s: float | None = None
    load_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    http_status: int | None = None
    error: str | None = None
    served: bool = False  # the node's answer was complete
    disconnected: bool = False
    closed: bool = False

    # --- filled in as the request goes ----------------------------------------------
    def request(self, req: InferenceRequest) -> None:
        self.request_id = req.request_id
        self.requested_model = req.model
        self.kind = req.kind
        self.dialect = req.dialect
        self.stream = req.stream
        self.tags = normalize_tags((*req.tags, *self.caller_tags))
        self.client = req.client

    def attempt(self, decision: Decision) -> None:
        self.decision = decision
        self.attempts += 1

    def failed_attempt(self, node_id: str, error: str, retried: bool) -> None:
        self.excluded.append(node_id)
        self.error = error
        if retried:
            self.retries += 1

    def answer(self, ttft_s: float | None, final: dict[str, Any] | None) -> None:
        """The node's answer is complete; ``final`` is Ollama's last chunk (or result)."""
        self.served = True
        self.error = None
        self.ttft_s = ttft_s
        final = final or {}
        self.prompt_tokens = int(final.get("prompt_eval_count") or 0)
        self.completion_tokens = int(final.get("eval_count") or 0)
        load = final.get("load_duration")
        self.load_s = float(load) / 1e9 if load else None
        self.finish_reason = final.get("done_reason")

    def fail(self, error: str, status: int | None = None) -> None:
        self.error = error
        if status is not None:
            self.http_status = status

    # --- closing ----------------------------------------------------------------------
    def status(self) -> TraceStatus:
        if self.disconnected and not self.served:
            return "disconnected"
        code = self.http_status or (200 if self.served else 500)
        if self.served and code < 400:
            return "ok"
        if code in (400, 404, 405, 413, 415, 422, 429) or (code == 503 and self.attempts == 0):
            return "rejected"
        return "error"

    def close(self) -> TraceRecord | None:
        """The record, once; ``None`` if it was already closed."""
        if self.closed:
            return None
        self.closed = True
        status = self.status()
        return TraceRecord(
            request_id=self.request_id,
            time=self.started,
            requested_model=self.requested_model,
            status=status,
            attempts=self.attempts,
            http_status=self.http_status or (200 if status == "ok" else 499),
            latency_s=time.perf_counter() - self.t0,
            ttft_s=self.ttft_s,
            load_s=self.load_s,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            retries=self.retries,
            excluded_nodes=tuple(self.excluded),
            tags=self.tags,
            client=self.client,
            dialect=self.dialect,
            kind=self.kind,
            error=None if status == "ok" else (self.error or _default_error(status)),
            finish_reason=self.finish_reason,
            stream=self.stream,
            **routing_fields(self.decision),
        )


def _default_error(status: str) -> str:
    return "client disconnected" if status == "disconnected" else "request failed"


class TraceOutbox:
    """Finished traces waiting for the router's acknowledgement (bounded)."""

    def __init__(self, limit: int = 100_000, batch: int = 500) -> None:
        self._queue: deque[TraceRecord] = deque()
        self._limit = limit
        self._batch = batch
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, record: TraceRecord | None) -> None:
        if record is None:
            return
        if len(self._queue) >= self._limit:
            self._queue.popleft()  # the router has been away for very long: keep the newest
            self.dropped += 1
        self._queue.append(record)

    def take(self) -> list[TraceRecord]:
        out: list[TraceRecord] = []
        while self._queue and len(out) < self._batch:
            out.append(self._queue.popleft())
        return out

    def put_back(self, records: list[TraceRecord]) -> None:
        """A batch the router did not acknowledge goes back to the front, in order."""
        self._queue.extendleft(reversed(records))
