"""``TraceRecord``: what the ingress records for every request, whatever happened to it.

One record per client request (not per attempt): ok, failed, rejected (4xx / 503) and
client-disconnected requests all get one. Frozen and picklable; it travels from the
ingress to the trace writer, through the spool journal (``to_json`` / ``from_json``) and
into the database (``herd.traces.tables.RequestTrace``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from herd.domain import CandidateScore, Decision
from herd.traces.text import TAG_MAX_CHARS, clean_text, text_ok

TraceStatus = Literal["ok", "error", "rejected", "disconnected"]
TRACE_STATUSES: tuple[str, ...] = ("ok", "error", "rejected", "disconnected")


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One request's route and outcome.

    ``time`` is when the request arrived (epoch seconds); ``latency_s`` runs from arrival
    to the last byte (or the error); ``ttft_s`` to the first token. ``score`` /
    ``breakdown`` belong to the winning node; ``candidates`` hold every scored node
    (``{"node_id", "total", "breakdown"}``) and ``eliminated`` the nodes filtered out
    with their reason. ``attempts`` counts attempts made (0 when rejected before
    routing); ``retries`` those that failed before the first chunk. ``load_s`` is the
    backend's model load time (a cold load when large).
    """

    request_id: str
    time: float
    requested_model: str
    status: TraceStatus = "ok"
    served_model: str | None = None
    node_id: str | None = None
    attempts: int = 1
    score: float | None = None
    breakdown: Mapping[str, float] = field(default_factory=dict)
    candidates: tuple[Mapping[str, Any], ...] = ()
    eliminated: Mapping[str, str] = field(default_factory=dict)
    http_status: int = 200
    latency_s: float | None = None
    ttft_s: float | None = None
    load_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    fallback_used: bool = False
    excluded_nodes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    client: str | None = None
    dialect: str = "ollama"
    kind: str = "chat"
    error: str | None = None
    finish_reason: str | None = None
    stream: bool = False

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ValueError("request_id is required")
        if self.status not in TRACE_STATUSES:
            raise ValueError(f"status must be one of {TRACE_STATUSES}, got {self.status!r}")

    @property
    def tokens_per_s(self) -> float | None:
        """Completion tokens per second of generation (after the first token), or None."""
        if self.status != "ok" or self.completion_tokens <= 0 or not self.latency_s:
            return None
        gen = self.latency_s - (self.ttft_s or 0.0)
        if gen <= 0:
            gen = self.latency_s
        return self.completion_tokens / gen

    def to_dict(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: its deep copy is 10x slower.
        out = {name: getattr(self, name) for name in _FIELD_NAMES}
        out["breakdown"] = dict(self.breakdown)
        out["candidates"] = [_candidate(c) for c in self.candidates]
        out["eliminated"] = dict(self.eliminated)
        out["excluded_nodes"] = list(self.excluded_nodes)
        out["tags"] = list(self.tags)
        return out

    def to_json(self) -> str:
        """One line of JSON (no newline inside), whatever the record holds.

        A lone surrogate (which UTF-8 cannot encode) is kept as a ``\\u`` escape and a
        value JSON has no type for as its ``str()``, so every record can be journaled;
        the store repairs such values before the database sees them.
        """
        data = self.to_dict()
        try:
            line = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
            if line.isascii() or text_ok(line):
                return line
        except (TypeError, ValueError):
            pass
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=_text)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceRecord:
        """Build from ``to_dict`` output; unknown keys are ignored (older/newer journals)."""
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in _FIELD_NAMES}
        for key in ("candidates", "excluded_nodes", "tags"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key] or ())
        for key in ("breakdown", "eliminated"):
            if key in kwargs:
                kwargs[key] = dict(kwargs[key] or {})
        return cls(**kwargs)

    @classmethod
    def from_json(cls, line: str) -> TraceRecord:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("a trace is a JSON object")
        return cls.from_dict(data)


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TraceRecord))


def _candidate(c: Mapping[str, Any] | CandidateScore) -> dict[str, Any]:
    if isinstance(c, CandidateScore):
        return {"node_id": c.node_id, "total": c.total, "breakdown": dict(c.breakdown)}
    return {
        "node_id": c.get("node_id"),
        "total": c.get("total"),
        "breakdown": dict(c.get("breakdown") or {}),
    }


def routing_fields(decision: Decision | None) -> dict[str, Any]:
    """The ``TraceRecord`` fields a routing ``Decision`` supplies (empty when None).

    ``TraceRecord(request_id=..., time=..., requested_model=..., **routing_fields(d), ...)``
    """
    if decision is None:
        return {}
    return {
        "served_model": decision.model,
        "node_id": decision.node_id,
        "score": decision.score,
        "breakdown": dict(decision.breakdown),
        "candidates": tuple(_candidate(c) for c in decision.candidates),
        "eliminated": dict(decision.eliminated),
        "fallback_used": decision.fallback,
    }


def normalize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Strip, drop empties and duplicates (order kept); each tag without NUL or lone
    surrogates and cut to ``TAG_MAX_CHARS`` (the length of ``trace_tags.tag``)."""
    seen: dict[str, None] = {}
    for tag in tags:
        text = tag if isinstance(tag, str) else _text(tag)
        cleaned = (text if text_ok(text) else clean_text(text)).strip()[:TAG_MAX_CHARS]
        if cleaned:
            seen.setdefault(cleaned, None)
    return tuple(seen)


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
