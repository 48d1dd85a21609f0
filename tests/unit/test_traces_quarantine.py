"""No trace stalls the journal, on SQLite and the real PostgreSQL: a record the database
refuses even repaired is quarantined (a readable file, counted, logged once without its
values) and the records behind it are stored; a database that refuses everything, or is
down, keeps every trace in the journal and gets them all once it takes writes again."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pgserver import PgServer
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text

from herd.traces.quarantine import Quarantine
from herd.traces.records import TraceRecord
from herd.traces.store import TraceStore
from herd.traces.tables import RequestTrace
from herd.traces.writer import TraceWriter

SECRETS = ("hunter2-token", "secret-client-addr", "key-name-secret")


def rec(name: str, **kw: Any) -> TraceRecord:
    base: dict[str, Any] = {
        "request_id": name,
        "time": 1_700_000_000.0,
        "requested_model": "tiny:1b",
        "served_model": "tiny:1b",
        "node_id": "alpha",
        "latency_s": 1.0,
        "tags": ("app",),
    }
    base.update(kw)
    return TraceRecord(**base)


def evil(name: str) -> TraceRecord:
    """A record the operator's rule refuses, carrying values that must never be logged."""
    return rec(
        name,
        requested_model="evil:1b",
        client=SECRETS[1],
        error=f"upstream said token={SECRETS[0]}",
        tags=(SECRETS[2],),
    )


def stored_ids(store: TraceStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(RequestTrace.request_id)).scalars())


def count(store: TraceStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(RequestTrace)).scalar_one())


def wait_until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def refuse(store: TraceStore, condition_pg: str, condition_sqlite: str) -> None:
    """An operator's rule the database enforces: inserts matching it are refused."""
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text(
                "ALTER TABLE request_traces ADD CONSTRAINT herd_test_refuse "
                f"CHECK (NOT ({condition_pg})) NOT VALID"
            ))  # fmt: skip
        else:
            conn.execute(text(
                "CREATE TRIGGER herd_test_refuse BEFORE INSERT ON request_traces "
                f"WHEN {condition_sqlite} BEGIN SELECT RAISE(ABORT, 'refused'); END"
            ))  # fmt: skip


def allow(store: TraceStore) -> None:
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("ALTER TABLE request_traces DROP CONSTRAINT herd_test_refuse"))
        else:
            conn.execute(text("DROP TRIGGER herd_test_refuse"))


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        line = record.getMessage() + (record.exc_text or "")
        for secret in SECRETS:
            assert secret not in line, line


@pytest.fixture
def writer(trace_store: TraceStore, tmp_path: Path) -> Iterator[TraceWriter]:
    w = TraceWriter(trace_store, tmp_path / "spool", max_delay=0.01, retry_min=0.01, retry_max=0.1)
    yield w
    w.close(timeout=1)


def test_a_refused_record_is_quarantined_and_never_blocks_the_rest(
    trace_store: TraceStore, writer: TraceWriter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    refuse(trace_store, "requested_model LIKE 'evil%'", "NEW.requested_model LIKE 'evil%'")
    before = [rec(f"a{i}") for i in range(50)]
    after = [rec(f"b{i}") for i in range(50)]
    repairable = rec("nul", requested_model="bad\x00:1b", tags=("t" * 300,))
    writer.submit([*before, evil("evil-1"), repairable, *after])
    writer.submit([rec("later"), evil("evil-2")])  # and in a later batch
    assert writer.flush(timeout=60)

    stats = writer.stats()
    assert stats["quarantined"] == 2 and stats["repaired"] >= 1
    assert stats["committed"] == stats["end"]  # the journal drained
    assert stored_ids(trace_store) == {r.request_id for r in (*before, *after)} | {"nul", "later"}
    entries = Quarantine(stats["quarantine_file"]).entries()
    assert [e["record"]["request_id"] for e in entries] == ["evil-1", "evil-2"]
    assert entries[0]["record"]["client"] == SECRETS[1]  # kept whole, to be fed back
    assert "IntegrityError" in entries[0]["reason"] or "CheckViolation" in entries[0]["reason"]
    assert (Path(stats["quarantine_file"]).stat().st_mode & 0o777) == 0o600
    logged = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(logged) == 2 and "'evil-1'" in logged[0]
    assert_no_secret_logged(caplog)

    # A restart replays nothing and quarantines nothing twice.
    assert writer.close()
    again = TraceWriter(trace_store, tmp_path / "spool")
    assert again.flush(timeout=30)
    assert again.stats()["quarantined"] == 0
    assert len(Quarantine(stats["quarantine_file"]).entries()) == 2
    assert again.close()


def test_a_database_refusing_every_record_keeps_the_journal(
    trace_store: TraceStore, writer: TraceWriter, caplog: pytest.LogCaptureFixture
) -> None:
    # Not the records' fault: even the store's clean probe is refused, so nothing is
    # quarantined; the traces wait in the journal until the rule is lifted.
    caplog.set_level(logging.INFO)
    refuse(trace_store, "true", "1")
    writer.submit([rec(f"r{i}") for i in range(20)] + [evil("evil")])
    wait_until(lambda: writer.stats()["failures"] >= 3)
    stats = writer.stats()
    assert stats["quarantined"] == 0 and stats["committed"] < stats["end"]
    assert stats["last_error"] and not any(s in stats["last_error"] for s in SECRETS)
    assert count(trace_store) == 0
    failures_logged = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert len(failures_logged) == 1  # once per streak, not once per retry

    allow(trace_store)
    assert writer.flush(timeout=60)
    assert count(trace_store) == 21
    stats = writer.stats()
    assert stats["quarantined"] == 0 and stats["last_error"] is None
    assert any("writes again" in r.getMessage() for r in caplog.records)
    assert_no_secret_logged(caplog)


class DropsOnce:
    """The real store, but the connection drops once when ``victim`` is written alone."""

    def __init__(self, inner: TraceStore, victim: str) -> None:
        self.inner = inner
        self.victim = victim
        self.dropped = False

    def write_batch(self, records: list[TraceRecord]) -> int:
        if len(records) == 1 and records[0].request_id == self.victim and not self.dropped:
            self.dropped = True
            raise sa_exc.OperationalError("INSERT", {}, ConnectionResetError("server closed"))
        return self.inner.write_batch(records)

    def probe(self) -> None:
        self.inner.probe()


def test_the_database_dropping_mid_search_loses_and_repeats_nothing(
    trace_store: TraceStore, tmp_path: Path
) -> None:
    refuse(trace_store, "requested_model LIKE 'evil%'", "NEW.requested_model LIKE 'evil%'")
    store = DropsOnce(trace_store, victim="r7")
    writer = TraceWriter(store, tmp_path / "spool", max_delay=0.01, retry_min=0.01)
    batch = [rec(f"r{i}") for i in range(5)] + [evil("evil"), rec("r6"), rec("r7"), rec("r8")]
    writer.submit(batch)
    assert writer.flush(timeout=60)
    stats = writer.stats()
    assert store.dropped and stats["failures"] == 1 and stats["quarantined"] == 1
    assert stored_ids(trace_store) == {f"r{i}" for i in range(9) if i != 5}
    assert len(Quarantine(stats["quarantine_file"]).entries()) == 1
    assert writer.close()


def test_an_unreadable_journal_line_is_quarantined(trace_store: TraceStore, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    good = "".join(rec(f"g{i}").to_json() + "\n" for i in range(3))
    (spool / "journal-00000001.jsonl").write_text(
        good + '{"request_id": "", "time": 1}\n' + "not json\n" + rec("g3").to_json() + "\n"
    )
    writer = TraceWriter(trace_store, spool)
    assert writer.flush(timeout=30)
    assert stored_ids(trace_store) == {"g0", "g1", "g2", "g3"}
    entries = Quarantine(writer.stats()["quarantine_file"]).entries()
    assert [e["line"] for e in entries] == ['{"request_id": "", "time": 1}', "not json"]
    assert writer.stats()["quarantined"] == 2
    assert writer.close()


def test_claimed_writers_share_one_quarantine_file(trace_store: TraceStore, tmp_path: Path) -> None:
    a = TraceWriter.claim(trace_store, tmp_path / "spool")
    b = TraceWriter.claim(trace_store, tmp_path / "spool")
    assert a.quarantine.path == b.quarantine.path == tmp_path / "spool" / "quarantine.jsonl"
    assert a.close() and b.close()


def test_a_database_that_is_down_keeps_everything_and_gets_it_all_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Its own server: this test stops and starts it.
    server = PgServer().start()
    try:
        url = server.create_database()
        late_url = server.create_database()
        store = TraceStore(url)
        writer = TraceWriter(
            store, tmp_path / "spool", max_delay=0.01, retry_min=0.01, retry_max=0.2
        )
        writer.submit([rec(f"up{i}") for i in range(50)])
        assert writer.flush(timeout=60)

        server.pause()
        # A store opened while the server is down does not fail: tables come later.
        late = TraceStore(late_url)
        late_writer = TraceWriter(late, tmp_path / "late", max_delay=0.01, retry_min=0.01)
        late_writer.submit([rec(f"late{i}") for i in range(30)])
        writer.submit([rec(f"down{i}") for i in range(140)])
        writer.submit([evil(f"secret{i}") for i in range(5)])  # values that must not be logged
        writer.submit([rec("nul-down", requested_model="x\x00" * 200)])
        for w in (writer, late_writer):
            wait_until(lambda w=w: w.stats()["failures"] >= 3)  # type: ignore[misc]
            stats = w.stats()
            assert stats["quarantined"] == 0 and stats["committed"] < stats["end"]
            assert "OperationalError" in stats["last_error"]

        server.resume()
        assert writer.flush(timeout=60) and late_writer.flush(timeout=60)
        assert count(store) == 50 + 140 + 5 + 1
        assert count(late) == 30
        for w in (writer, late_writer):
            stats = w.stats()
            assert stats["quarantined"] == 0 and stats["last_error"] is None
            assert stats["committed"] == stats["end"]
            assert w.close()
        assert_no_secret_logged(caplog)
        store.close()
        late.close()
    finally:
        server.stop()
