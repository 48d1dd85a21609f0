"""``TraceStore``: the one module that writes the trace database.

``TraceStore(url)`` takes any SQLAlchemy URL; :func:`database_url` picks
``Settings.database_url`` or, by default, the SQLite file ``<data_dir>/herd.db``.
The schema is migrated to head on construction (``herd.traces.migrate``: Alembic, one
process at a time; a database from before migrations is adopted in place).
``write_batch`` is idempotent: rows whose ``request_id`` is already stored are skipped
(``INSERT ... ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL, a select-then-insert
elsewhere), so replaying a journal never duplicates a trace.

Every row is repaired to its columns before the write (``herd.traces.repair``: NUL and
lone surrogates out, text cut to the column's length, integers clamped, NaN out), so a
model name of 300 characters or a tag with a NUL is stored, cut and cleaned, instead of
refusing its whole batch on PostgreSQL. A lone record the database still refuses is
tried once more with ASCII-only text before the error reaches the writer, which then
quarantines it (``herd.traces.writer``). ``probe`` tells the writer whether the database
takes a clean record at all (a refusal is then the record's fault, not the database's).
A database that is down when the store opens does not stop it: the schema is migrated at
the first write that reaches it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, insert, make_url, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session, SQLModel

from herd.errors import BadRequest
from herd.settings import Settings
from herd.traces import migrate
from herd.traces.migrate import database_url, sqlite_pragmas
from herd.traces.records import TraceRecord, normalize_tags
from herd.traces.repair import (
    RowRules,
    clean_row,
    describe,
    json_column,
    key_columns,
    refusal,
    rules_of,
)
from herd.traces.tables import (
    TRACE_TABLES,
    BenchmarkRun,
    LatencyObservation,
    RequestTrace,
    TraceTag,
)

PG_CONNECT_TIMEOUT_S = 10  # a database host that does not answer fails the write, retried

log = logging.getLogger(__name__)

_KEYS = key_columns(*TRACE_TABLES)
_RULES: dict[type[SQLModel], RowRules] = {
    table: RowRules(rules_of(table, _KEYS))
    for table in (RequestTrace, TraceTag, LatencyObservation)
}


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,
            json_serializer=json_column,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            sqlite_pragmas(dbapi_conn)  # WAL, incremental auto-vacuum, busy wait

        return engine
    # hide_parameters: an error (logged, or kept as the writer's last error) never carries
    # a row's values (client addresses, tags, key names).
    connect_args: dict[str, Any] = {}
    if make_url(url).get_driver_name() in ("psycopg", "psycopg2"):
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    return create_engine(
        url,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args=connect_args,
        json_serializer=json_column,
    )


def trace_row(record: TraceRecord) -> dict[str, Any]:
    """The ``request_traces`` row for a record (before repair)."""
    row = record.to_dict()
    row["tags"] = list(normalize_tags(record.tags))
    row["tokens_per_s"] = _tokens_per_s(record)
    return row


def _tokens_per_s(record: TraceRecord) -> float | None:
    try:
        return record.tokens_per_s
    except (TypeError, ValueError, ArithmeticError):  # a journal line of the wrong types
        return None


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
        "tokens_per_s": _tokens_per_s(record),
        "load_s": record.load_s,
    }


class Rows:
    """The repaired rows of records, for the three trace tables, and what was repaired."""

    def __init__(self, records: Iterable[TraceRecord], *, strict: bool = False) -> None:
        self.traces: list[dict[str, Any]] = []
        self.tags: list[dict[str, Any]] = []
        self.observations: list[dict[str, Any]] = []
        self.repaired = 0  # records with at least one value repaired
        self.columns: set[str] = set()  # "table.column" that were repaired
        for record in records:
            self._add(record, strict)

    def _add(self, record: TraceRecord, strict: bool) -> None:
        changed: list[str] = []
        trace = self._clean(RequestTrace, trace_row(record), strict, changed)
        tags = trace["tags"] if isinstance(trace["tags"], list) else []
        raw = {t.strip() for t in record.tags if isinstance(t, str)} - {""}
        if not raw.issubset(tags):  # a tag was cut or cleaned, not just stripped
            changed.append("trace_tags.tag")
        self.traces.append(trace)
        for tag in tags:
            row = {"request_id": record.request_id, "tag": tag, "time": record.time}
            self.tags.append(self._clean(TraceTag, row, strict, changed))
        observation = observation_row(record)
        if observation is not None:
            self.observations.append(self._clean(LatencyObservation, observation, strict, changed))
        if changed:
            self.repaired += 1
            self.columns.update(changed)

    @staticmethod
    def _clean(
        table: type[SQLModel], row: dict[str, Any], strict: bool, changed: list[str]
    ) -> dict[str, Any]:
        out, fixed = clean_row(_RULES[table], row, strict=strict)
        if fixed:
            name = table.__tablename__
            changed.extend(f"{name}.{column}" for column in fixed)
        return out


class TraceStore:
    """Engine, schema and writes of the trace database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.repaired = 0  # records stored with at least one value repaired
        self._logged_columns: set[str] = set()
        self._lock = threading.Lock()
        self._schema_ready = False
        try:
            self._ensure_schema()
        except (OperationalError, InterfaceError) as exc:
            if self.dialect == "sqlite":
                raise
            # The server is away: the writer journals and retries; the first write that
            # reaches it migrates the schema.
            log.warning("trace database unreachable (%s); schema migrated later", describe(exc))

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        # Alembic, one process at a time (a lock); a database at head is only read.
        migrate.upgrade(self.engine)
        self._schema_ready = True

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

        One transaction: a failure stores nothing of the batch (the writer retries it,
        record by record when the database refuses the data). Values are repaired first;
        a single record the database still refuses is tried once more ASCII-only.
        """
        unique: dict[str, TraceRecord] = {}
        for record in records:
            unique.setdefault(record.request_id, record)
        if not unique:
            return 0
        self._ensure_schema()
        try:
            rows = self._write(Rows(unique.values()))
        except Exception as exc:
            if len(unique) != 1 or refusal(exc) is None:
                raise
            rows = self._write(Rows(unique.values(), strict=True))
        if rows.repaired:
            self._note_repairs(rows)
        return len(unique)

    def _write(self, rows: Rows) -> Rows:
        with self.engine.begin() as conn:
            self._insert_ignore(conn, RequestTrace, rows.traces, ("request_id",))
            self._insert_ignore(conn, TraceTag, rows.tags, ("request_id", "tag"))
            self._insert_ignore(conn, LatencyObservation, rows.observations, ("request_id",))
        return rows

    def _note_repairs(self, rows: Rows) -> None:
        with self._lock:
            self.repaired += rows.repaired
            fresh = sorted(rows.columns - self._logged_columns)
            self._logged_columns.update(fresh)
        if fresh:  # once per column: a flood of bad names is counted, not logged
            log.warning(
                "trace values repaired to fit their columns (%s); further repairs are "
                "counted in the trace writer's stats ('repaired')",
                ", ".join(fresh),
            )

    def probe(self) -> None:
        """Write a clean trace in a transaction that is rolled back; raises when even that
        fails (then the database, not a record, is at fault)."""
        self._ensure_schema()
        record = TraceRecord(
            request_id=f"herd-probe-{secrets.token_hex(8)}",
            time=time.time(),
            requested_model="probe",
            served_model="probe",
            node_id="probe",
            latency_s=0.0,
            tags=("probe",),
        )
        rows = Rows([record])
        with self.engine.connect() as conn:
            tx = conn.begin()
            try:
                self._insert_ignore(conn, RequestTrace, rows.traces, ("request_id",))
                self._insert_ignore(conn, TraceTag, rows.tags, ("request_id", "tag"))
                self._insert_ignore(conn, LatencyObservation, rows.observations, ("request_id",))
            finally:
                tx.rollback()

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
