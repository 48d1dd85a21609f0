"""``TraceStore``: the one module that writes the trace database.

``TraceStore(url)`` takes any SQLAlchemy URL; :func:`database_url` picks
``Settings.database_url`` or, by default, the SQLite file ``<data_dir>/herd.db``.
Tables are created on construction. ``write_batch`` is idempotent: rows whose
``request_id`` is already stored are skipped (``INSERT ... ON CONFLICT DO NOTHING`` on
SQLite and PostgreSQL, a select-then-insert elsewhere), so replaying a journal never
duplicates a trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel

from herd.errors import BadRequest
from herd.settings import Settings
from herd.traces.records import TraceRecord, normalize_tags
from herd.traces.tables import (
    TRACE_TABLES,
    BenchmarkRun,
    LatencyObservation,
    RequestTrace,
    TraceTag,
)

SQLITE_FILE_NAME = "herd.db"


def database_url(settings: Settings) -> str:
    """``FLEET_DATABASE_URL`` when set, else SQLite at ``<data_dir>/herd.db``."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{settings.data_dir / SQLITE_FILE_NAME}"


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers (the dashboard) never block the writer, and the other way round.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def trace_row(record: TraceRecord) -> dict[str, Any]:
    """The ``request_traces`` row for a record."""
    row = record.to_dict()
    row["tags"] = list(normalize_tags(record.tags))
    row["tokens_per_s"] = record.tokens_per_s
    return row


def observation_row(record: TraceRecord) -> dict[str, Any] | None:
    """The ``latency_observations`` row for a successful record with a node, else None."""
    if record.status != "ok" or not record.node_id or record.latency_s is None:
        return None
    return {
        "request_id": record.request_id,
        "time": record.time,
        "node_id": record.node_id,
        "model": record.served_model or record.requested_model,
        "latency_s": record.latency_s,
        "ttft_s": record.ttft_s,
        "tokens_per_s": record.tokens_per_s,
        "load_s": record.load_s,
    }


class TraceStore:
    """Engine, schema and writes of the trace database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        tables = [t.__table__ for t in TRACE_TABLES]  # type: ignore[union-attr]
        for attempt in range(10):
            try:
                SQLModel.metadata.create_all(self.engine, tables=tables)
                break
            except DBAPIError:
                # Another process (router, ingress replicas) created a table at the same
                # moment; the next pass skips the tables that exist now.
                if attempt == 9:
                    raise

    @classmethod
    def from_settings(cls, settings: Settings) -> TraceStore:
        return cls(database_url(settings))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # --- traces ---------------------------------------------------------------------
    def write_batch(self, records: Sequence[TraceRecord]) -> int:
        """Store records, skipping request ids already stored; returns how many were given.

        One transaction: a failure stores nothing of the batch (the writer retries it).
        """
        unique: dict[str, TraceRecord] = {}
        for record in records:
            unique.setdefault(record.request_id, record)
        if not unique:
            return 0
        traces = [trace_row(r) for r in unique.values()]
        tags = [
            {"request_id": r.request_id, "tag": tag, "time": r.time}
            for r in unique.values()
            for tag in normalize_tags(r.tags)
        ]
        observations = [row for r in unique.values() if (row := observation_row(r)) is not None]
        with self.engine.begin() as conn:
            self._insert_ignore(conn, RequestTrace, traces, ("request_id",))
            self._insert_ignore(conn, TraceTag, tags, ("request_id", "tag"))
            self._insert_ignore(conn, LatencyObservation, observations, ("request_id",))
        return len(unique)

    def _insert_ignore(
        self,
        conn: Connection,
        table: type[SQLModel],
        rows: list[dict[str, Any]],
        keys: tuple[str, ...],
    ) -> None:
        if not rows:
            return
        target = table.__table__  # type: ignore[attr-defined]
        name = conn.dialect.name
        if name == "sqlite":
            conn.execute(sqlite.insert(target).on_conflict_do_nothing(index_elements=keys), rows)
        elif name == "postgresql":
            conn.execute(
                postgresql.insert(target).on_conflict_do_nothing(index_elements=keys), rows
            )
        else:  # portable fallback: drop rows whose key is already stored
            cols = [target.c[k] for k in keys]
            wanted = {tuple(row[k] for k in keys) for row in rows}
            existing = {tuple(r) for r in conn.execute(select(*cols))} & wanted
            fresh = [row for row in rows if tuple(row[k] for k in keys) not in existing]
            if fresh:
                conn.execute(insert(target), fresh)

    def count_traces(self) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(RequestTrace)).scalar_one())

    # --- benchmark runs --------------------------------------------------------------
    def add_benchmark(self, run: Mapping[str, Any], now: float | None = None) -> int:
        """Store a run (``name``, ``started_at``, ``finished_at``, ``params``, ``results``)."""
        row = validate_benchmark(run, time.time() if now is None else now)
        with self.session() as session:
            obj = BenchmarkRun(**row)
            session.add(obj)
            session.commit()
            session.refresh(obj)
            assert obj.id is not None
            return obj.id

    def list_benchmarks(self, limit: int = 50) -> list[BenchmarkRun]:
        with self.session() as session:
            stmt = (
                select(BenchmarkRun)
                .order_by(BenchmarkRun.started_at.desc(), BenchmarkRun.id.desc())  # type: ignore[attr-defined,union-attr]
                .limit(limit)
            )
            return list(session.scalars(stmt))

    def get_benchmark(self, run_id: int) -> BenchmarkRun | None:
        with self.session() as session:
            return session.get(BenchmarkRun, run_id)

    def delete_benchmark(self, run_id: int) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(delete(BenchmarkRun).where(BenchmarkRun.id == run_id))  # type: ignore[arg-type]
            return bool(result.rowcount)


def validate_benchmark(run: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Check a benchmark run's shape; raises ``BadRequest`` with what is wrong."""
    if not isinstance(run, Mapping):
        raise BadRequest("a benchmark run is a JSON object")
    unknown = set(run) - {"name", "started_at", "finished_at", "params", "results"}
    if unknown:
        raise BadRequest(f"unknown benchmark fields: {sorted(unknown)}")
    results = run.get("results", {})
    params = run.get("params", {})
    if not isinstance(results, dict) or not isinstance(params, dict):
        raise BadRequest("'results' and 'params' must be JSON objects")
    started = _number(run.get("started_at", now), "started_at")
    finished = run.get("finished_at")
    finished_f = None if finished is None else _number(finished, "finished_at")
    if finished_f is not None and finished_f < started:
        raise BadRequest("'finished_at' is before 'started_at'")
    name = run.get("name", "")
    if not isinstance(name, str) or len(name) > 256:
        raise BadRequest("'name' must be a string of at most 256 characters")
    return {
        "name": name,
        "started_at": started,
        "finished_at": finished_f,
        "params": params,
        "results": results,
    }


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"'{name}' must be epoch seconds (a number)")
    if value != value or value in (float("inf"), float("-inf")):
        raise BadRequest(f"'{name}' must be finite")
    return float(value)
