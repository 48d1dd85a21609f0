"""TraceStore on SQLite and PostgreSQL: idempotent batches, JSON columns, derived rows,
benchmark runs, the default URL; and the writer end to end on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from herd.errors import BadRequest
from herd.settings import load_settings
from herd.traces.records import TraceRecord
from herd.traces.store import TraceStore, database_url
from herd.traces.tables import LatencyObservation, RequestTrace, TraceTag
from herd.traces.writer import TraceWriter


def rec(i: int, **kw: object) -> TraceRecord:
    base: dict[str, object] = {
        "request_id": f"r{i}",
        "time": 1_700_000_000.0 + i,
        "requested_model": "tiny:1b",
        "served_model": "tiny:1b",
        "node_id": "alpha",
        "latency_s": 1.0,
        "ttft_s": 0.5,
        "completion_tokens": 10,
    }
    base.update(kw)
    return TraceRecord(**base)  # type: ignore[arg-type]


def count(store: TraceStore, table: type) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_write_batch_is_idempotent_even_within_a_batch(trace_store: TraceStore) -> None:
    batch = [rec(1, tags=("a", "b")), rec(2), rec(1, tags=("a", "b"))]
    assert trace_store.write_batch(batch) == 2
    trace_store.write_batch(batch)
    trace_store.write_batch([rec(2), rec(3)])
    assert count(trace_store, RequestTrace) == 3
    assert count(trace_store, TraceTag) == 2
    assert count(trace_store, LatencyObservation) == 3
    assert trace_store.write_batch([]) == 0


def test_json_columns_round_trip(trace_store: TraceStore) -> None:
    record = rec(
        7,
        breakdown={"thermal": 50.0, "queue": -3.5},
        candidates=({"node_id": "ålpha", "total": 46.5, "breakdown": {"thermal": 50.0}},),
        eliminated={"beta": "memory pressure critical"},
        excluded_nodes=("gamma",),
        tags=("app-ü",),
        error=None,
    )
    trace_store.write_batch([record])
    with trace_store.session() as session:
        row = session.scalars(select(RequestTrace)).one()
    assert row.breakdown == {"thermal": 50.0, "queue": -3.5}
    assert row.candidates == [{"node_id": "ålpha", "total": 46.5, "breakdown": {"thermal": 50.0}}]
    assert row.eliminated == {"beta": "memory pressure critical"}
    assert (row.excluded_nodes, row.tags) == (["gamma"], ["app-ü"])
    assert row.tokens_per_s == pytest.approx(20.0)


def test_only_served_requests_become_latency_observations(trace_store: TraceStore) -> None:
    trace_store.write_batch(
        [
            rec(1, load_s=4.0),
            rec(2, status="error", error="boom"),
            rec(3, status="rejected", node_id=None, served_model=None, http_status=503),
            rec(4, status="disconnected"),
        ]
    )
    with trace_store.session() as session:
        rows = list(session.scalars(select(LatencyObservation)))
    assert [(o.request_id, o.node_id, o.model, o.load_s) for o in rows] == [
        ("r1", "alpha", "tiny:1b", 4.0)
    ]


def test_benchmark_runs(trace_store: TraceStore) -> None:
    first = trace_store.add_benchmark({"name": "a", "started_at": 10.0, "results": {"x": 1}})
    second = trace_store.add_benchmark({"name": "b", "started_at": 20.0, "finished_at": 30.0})
    assert [r.id for r in trace_store.list_benchmarks()] == [second, first]
    got = trace_store.get_benchmark(first)
    assert got is not None and got.results == {"x": 1}
    assert trace_store.delete_benchmark(first) is True
    assert trace_store.delete_benchmark(first) is False
    assert trace_store.get_benchmark(first) is None
    bads: list[dict[str, object]] = [
        {"started_at": True},
        {"started_at": 5.0, "finished_at": 1.0},
        {"results": []},
        {"name": 3},
        {"started_at": float("nan")},
    ]
    for bad in bads:
        with pytest.raises(BadRequest):
            trace_store.add_benchmark(bad)


def test_writer_end_to_end(trace_store: TraceStore, tmp_path: Path) -> None:
    writer = TraceWriter(trace_store, tmp_path / "spool", batch_size=200, max_delay=0.01)
    for i in range(0, 1000, 50):
        writer.submit(rec(j) for j in range(i, i + 50))
    writer.submit([rec(3), rec(4)])  # replayed ids are harmless
    assert writer.close(timeout=60)
    assert count(trace_store, RequestTrace) == 1000


def test_default_url_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    assert database_url(settings) == f"sqlite:///{tmp_path / 'data' / 'herd.db'}"
    store = TraceStore.from_settings(settings)
    try:
        store.write_batch([rec(1)])
        assert (tmp_path / "data" / "herd.db").exists()
        assert store.dialect == "sqlite"
    finally:
        store.close()
    custom = load_settings(data_dir=tmp_path, database_url="postgresql+psycopg://u:p@h/db")
    assert database_url(custom) == "postgresql+psycopg://u:p@h/db"


def test_stores_opened_at_once_share_one_schema(db_url: str) -> None:
    # The router and every ingress replica open the store when they start, together.
    import threading

    barrier = threading.Barrier(4)
    stores: list[TraceStore] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            stores.append(TraceStore(db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        stores[0].write_batch([rec(1)])
        assert count(stores[-1], RequestTrace) == 1
    finally:
        for s in stores:
            s.close()
