"""Trace retention (``herd.traces.retention``) on SQLite and a real PostgreSQL: only what
is older than the setting goes, with its tags and observations, in bounded batches; the
SQLite file gives the room back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from legacy_trace_schema import legacy_ddl
from sqlalchemy import create_engine, func, select

from herd.settings import load_settings
from herd.traces.records import TraceRecord
from herd.traces.retention import DAY_S, Retention, compact, prune
from herd.traces.store import TraceStore
from herd.traces.tables import LatencyObservation, RequestTrace, TraceTag

NOW = 1_800_000_000.0


def rec(rid: str, age_days: float, **kw: object) -> TraceRecord:
    return TraceRecord(
        request_id=rid,
        time=NOW - age_days * DAY_S,
        requested_model="llama3:8b",
        served_model="llama3:8b",
        node_id="mac",
        latency_s=1.0,
        tags=("app:a", "team:b"),
        **kw,  # type: ignore[arg-type]
    )


def ids(store: TraceStore, table: type) -> list[str]:
    with store.engine.connect() as conn:
        col = table.__table__.c.request_id  # type: ignore[attr-defined]
        return sorted({r[0] for r in conn.execute(select(col))})


def count(store: TraceStore, table: type) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_retention_removes_only_what_is_older_than_the_setting(
    trace_store: TraceStore,
) -> None:
    trace_store.write_batch(
        [
            rec("old-31d", 31),
            rec("old-30d-1s", 30 + 1 / DAY_S),
            rec("edge-30d", 30),  # exactly at the cutoff: kept
            rec("young-29d", 29),
            rec("new", 0),
        ]
    )
    run_id = trace_store.add_benchmark({"name": "old run", "started_at": NOW - 400 * DAY_S})
    # An observation with no trace (older code stored some so): it ages out too.
    with trace_store.engine.begin() as conn:
        conn.execute(
            LatencyObservation.__table__.insert(),  # type: ignore[attr-defined]
            [
                {"request_id": None, "time": NOW - 40 * DAY_S, "node_id": "n", "model": "m",
                 "latency_s": 1.0},
                {"request_id": None, "time": NOW - DAY_S, "node_id": "n", "model": "m",
                 "latency_s": 1.0},
            ],
        )  # fmt: skip
    retention = Retention(trace_store.engine, days=30)
    assert retention.due(NOW)
    result = retention.run(now=NOW)
    assert result is not None
    kept = ["edge-30d", "new", "young-29d"]
    assert ids(trace_store, RequestTrace) == kept
    assert ids(trace_store, TraceTag) == kept and count(trace_store, TraceTag) == 6
    assert count(trace_store, LatencyObservation) == 4  # three traces' and the young orphan
    assert (result.traces, result.tags, result.observations) == (2, 4, 3)
    assert trace_store.get_benchmark(run_id) is not None  # benchmark runs are kept
    if trace_store.dialect == "postgresql":
        assert result.compaction == "autovacuum"  # the server's autovacuum reclaims rows
    else:
        assert result.compaction in ("incremental", "none")  # a few rows: maybe no page
    # A second pass finds nothing more.
    again = prune(trace_store.engine, NOW - 30 * DAY_S)
    assert (again.traces, again.observations, again.compaction) == (0, 0, "none")


def test_a_big_prune_runs_in_bounded_batches(trace_store: TraceStore) -> None:
    trace_store.write_batch([rec(f"old-{i}", 40 + i / 100) for i in range(23)] + [rec("new", 1)])
    result = prune(trace_store.engine, NOW - 30 * DAY_S, batch=5, pause=0)
    assert result.traces == 23 and result.batches == 5  # 5+5+5+5+3, each its own commit
    assert ids(trace_store, RequestTrace) == ["new"]


def test_zero_keeps_everything_and_prunes_are_spaced(trace_store: TraceStore) -> None:
    forever = Retention(trace_store.engine, days=0)
    assert not forever.due(NOW)
    hourly = Retention(trace_store.engine, days=30, interval=3600)
    assert hourly.due(NOW)
    assert not hourly.due(NOW + 10)  # claimed, still running
    hourly.run(now=NOW)
    assert not hourly.due(NOW + 3599)
    assert hourly.due(NOW + 3600)
    assert load_settings().trace_retention_days == 30
    assert load_settings(trace_retention_days=0).trace_retention_days == 0


def test_a_database_that_is_away_fails_the_prune_not_the_router(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'gone' / 'herd.db'}")  # cannot open
    try:
        retention = Retention(engine, days=1)
        assert retention.due(NOW)
        assert retention.run(now=NOW) is None  # logged; the next interval tries again
        assert retention.due(NOW + retention.interval)
    finally:
        engine.dispose()


@pytest.fixture
def big_old_sqlite(tmp_path: Path) -> Iterator[tuple[TraceStore, Path]]:
    path = tmp_path / "herd.db"
    store = TraceStore(f"sqlite:///{path}")
    rows = [rec(f"r{i}", 60 if i < 3000 else 1, error="x" * 400) for i in range(4000)]
    for i in range(0, len(rows), 1000):
        store.write_batch(rows[i : i + 1000])
    yield store, path
    store.close()


def pragma(store: TraceStore, name: str) -> int:
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())


def test_sqlite_gives_pruned_pages_back(big_old_sqlite: tuple[TraceStore, Path]) -> None:
    store, path = big_old_sqlite
    assert pragma(store, "auto_vacuum") == 2  # a file herd created: incremental
    pages = pragma(store, "page_count")
    result = prune(store.engine, NOW - 30 * DAY_S)
    assert result.traces == 3000 and result.compaction == "incremental"
    assert pragma(store, "freelist_count") == 0
    assert pragma(store, "page_count") < pages * 0.5
    assert path.stat().st_size == pragma(store, "page_count") * pragma(store, "page_size")


def test_an_old_sqlite_file_is_converted_once_after_a_big_prune(tmp_path: Path) -> None:
    path = tmp_path / "herd.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # a file from before migrations: auto_vacuum NONE
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        for statement in legacy_ddl("sqlite"):
            conn.exec_driver_sql(statement)
    engine.dispose()
    store = TraceStore(f"sqlite:///{path}")
    try:
        assert pragma(store, "auto_vacuum") == 0
        rows = [rec(f"r{i}", 60 if i < 3000 else 1, error="x" * 400) for i in range(4000)]
        store.write_batch(rows)
        pages = pragma(store, "page_count")
        result = prune(store.engine, NOW - 30 * DAY_S)
        assert result.compaction == "vacuum"
        assert pragma(store, "auto_vacuum") == 2  # from now on incremental
        assert pragma(store, "freelist_count") == 0
        assert pragma(store, "page_count") < pages * 0.5
        assert ids(store, RequestTrace) == sorted(f"r{i}" for i in range(3000, 4000))
        assert compact(store.engine) == ("none", 0)
    finally:
        store.close()
