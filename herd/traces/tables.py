"""SQLModel tables of the trace store (SQLite by default, any SQLAlchemy URL works).

* ``request_traces``: one row per request (every ``TraceRecord`` field); ``request_id``
  is unique, so replaying a journal is idempotent. JSON columns use SQLAlchemy's
  generic ``JSON`` type (TEXT on SQLite, ``json`` on PostgreSQL).
* ``trace_tags``: one row per (request, tag), so per-app analytics are plain SQL joins.
* ``latency_observations``: one row per successful request with a node (latency, time to
  first token, tokens/s, load time), per node and model; unique on ``request_id``.
* ``benchmark_runs``: one row per benchmark run; ``params`` and ``results`` are JSON
  (``results`` may hold ``per_model`` / ``per_node`` breakdowns).

Times are epoch seconds (float, UTC). Every length declared here is the one
``herd.traces.repair`` cuts values to before a write (it reads them from these tables).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from herd.traces.text import TAG_MAX_CHARS


class RequestTrace(SQLModel, table=True):
    __tablename__ = "request_traces"
    __table_args__ = (
        UniqueConstraint("request_id", name="uq_request_traces_request_id"),
        Index("ix_request_traces_time", "time"),
        Index("ix_request_traces_served_model_time", "served_model", "time"),
        Index("ix_request_traces_node_time", "node_id", "time"),
        Index("ix_request_traces_status_time", "status", "time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(max_length=128)
    time: float
    requested_model: str = Field(default="", max_length=256)
    served_model: str | None = Field(default=None, max_length=256)
    node_id: str | None = Field(default=None, max_length=256)
    attempts: int = 1
    score: float | None = None
    breakdown: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    candidates: list[Any] = Field(default_factory=list, sa_type=JSON)
    eliminated: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default="ok", max_length=16)
    http_status: int = 200
    latency_s: float | None = None
    ttft_s: float | None = None
    load_s: float | None = None
    tokens_per_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    fallback_used: bool = False
    excluded_nodes: list[Any] = Field(default_factory=list, sa_type=JSON)
    tags: list[Any] = Field(default_factory=list, sa_type=JSON)
    client: str | None = Field(default=None, max_length=256)
    dialect: str = Field(default="ollama", max_length=16)
    kind: str = Field(default="chat", max_length=32)
    error: str | None = None
    finish_reason: str | None = Field(default=None, max_length=64)
    stream: bool = False


class TraceTag(SQLModel, table=True):
    __tablename__ = "trace_tags"
    __table_args__ = (
        UniqueConstraint("request_id", "tag", name="uq_trace_tags_request_tag"),
        Index("ix_trace_tags_tag_time", "tag", "time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(max_length=128)
    tag: str = Field(max_length=TAG_MAX_CHARS)
    time: float


class LatencyObservation(SQLModel, table=True):
    __tablename__ = "latency_observations"
    __table_args__ = (
        UniqueConstraint("request_id", name="uq_latency_observations_request_id"),
        Index("ix_latency_observations_node_model_time", "node_id", "model", "time"),
        Index("ix_latency_observations_time", "time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str | None = Field(default=None, max_length=128)
    time: float
    node_id: str = Field(max_length=256)
    model: str = Field(max_length=256)
    latency_s: float
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    load_s: float | None = None


class BenchmarkRun(SQLModel, table=True):
    __tablename__ = "benchmark_runs"
    __table_args__ = (Index("ix_benchmark_runs_started_at", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=256)
    started_at: float
    finished_at: float | None = None
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    results: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


TRACE_TABLES = (RequestTrace, TraceTag, LatencyObservation, BenchmarkRun)
