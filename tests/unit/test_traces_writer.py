"""TraceWriter: bursts, database failures, writer-thread crashes and process restarts lose
no acknowledged trace and duplicate none."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from herd.traces.records import TraceRecord
from herd.traces.store import TraceStore
from herd.traces.tables import RequestTrace
from herd.traces.writer import SpoolBusy, TraceWriter


def _records(n: int, prefix: str = "r") -> list[TraceRecord]:
    return [
        TraceRecord(
            request_id=f"{prefix}{i}",
            time=1_700_000_000.0 + i,
            requested_model="tiny:1b",
            served_model="tiny:1b",
            node_id=f"n{i % 3}",
            latency_s=0.5,
            ttft_s=0.1,
            completion_tokens=20,
            tags=("app",),
        )
        for i in range(n)
    ]


def _stored(store: TraceStore) -> tuple[int, int]:
    """(rows, distinct request ids) in the traces table."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(RequestTrace)).scalar_one()
        distinct = conn.execute(
            select(func.count(func.distinct(RequestTrace.request_id)))
        ).scalar_one()
    return int(rows), int(distinct)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TraceStore]:
    s = TraceStore(f"sqlite:///{tmp_path / 'herd.db'}")
    yield s
    s.close()


class Crash(BaseException):
    """Not an Exception: escapes every ``except Exception`` and kills the thread's loop."""


class FlakyStore:
    """Wraps a store; raises ``errors`` in order (one per call) before writing."""

    def __init__(
        self, inner: TraceStore, errors: list[BaseException], after_write: bool = False
    ) -> None:
        self.inner = inner
        self.errors = errors
        self.after_write = after_write
        self.calls = 0

    def write_batch(self, records: list[TraceRecord]) -> int:
        self.calls += 1
        if self.errors and not self.after_write:
            raise self.errors.pop(0)
        n = self.inner.write_batch(records)
        if self.errors and self.after_write:
            raise self.errors.pop(0)
        return n


def test_burst_of_10k_records_from_threads_all_stored_once(
    store: TraceStore, tmp_path: Path
) -> None:
    writer = TraceWriter(store, tmp_path / "spool", batch_size=1000, max_delay=0.05)
    records = _records(10_000)

    def send(part: list[TraceRecord]) -> None:
        for i in range(0, len(part), 5):
            writer.submit(part[i : i + 5])

    threads = [threading.Thread(target=send, args=(records[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.flush(timeout=60)
    assert _stored(store) == (10_000, 10_000)
    assert writer.stats()["submitted"] == 10_000
    assert writer.close()


def test_database_errors_are_retried_without_loss(store: TraceStore, tmp_path: Path) -> None:
    flaky = FlakyStore(store, [RuntimeError("db down")] * 3)
    writer = TraceWriter(flaky, tmp_path / "spool", retry_min=0.001, retry_max=0.01)
    writer.submit(_records(300))
    assert writer.flush(timeout=30)
    assert _stored(store) == (300, 300)
    assert writer.stats()["failures"] == 3
    assert writer.close()


def test_writer_thread_crash_recovers_from_the_marker(store: TraceStore, tmp_path: Path) -> None:
    # The first batch is written, then the thread dies before the commit marker: the
    # restarted loop replays it and the unique request_id keeps it single.
    flaky = FlakyStore(store, [Crash()], after_write=True)
    writer = TraceWriter(flaky, tmp_path / "spool", batch_size=100, max_delay=0.01, retry_min=0.001)
    writer.submit(_records(250))
    assert writer.flush(timeout=30)
    stats = writer.stats()
    assert stats["crashes"] == 1
    assert stats["alive"]
    assert flaky.calls >= 4  # the crashed batch was written twice
    assert _stored(store) == (250, 250)
    writer.submit(_records(50, prefix="later"))
    assert writer.close()
    assert _stored(store) == (300, 300)


def test_restart_replays_what_a_closed_writer_could_not_store(
    store: TraceStore, tmp_path: Path
) -> None:
    down = FlakyStore(store, [RuntimeError("db down")] * 10_000)
    first = TraceWriter(down, tmp_path / "spool", retry_min=0.001, retry_max=0.01)
    first.submit(_records(400))
    assert not first.close(timeout=0.2)
    assert _stored(store) == (0, 0)

    second = TraceWriter(store, tmp_path / "spool")
    assert second.flush(timeout=30)
    assert _stored(store) == (400, 400)
    assert second.close()


def test_process_crash_after_ack_loses_nothing(store: TraceStore, tmp_path: Path) -> None:
    # A real process acknowledges 500 traces, its database never answers, and it dies
    # with os._exit: no close, no flush, its flock released by the kernel.
    spool = tmp_path / "spool"
    script = textwrap.dedent(
        f"""
        import os, threading
        from herd.traces.records import TraceRecord
        from herd.traces.writer import TraceWriter

        class Hang:
            def write_batch(self, records):
                threading.Event().wait()

        w = TraceWriter(Hang(), {str(spool)!r}, max_delay=0.0)
        for i in range(0, 500, 10):
            w.submit(
                TraceRecord(request_id=f"p{{j}}", time=1.0 + j, requested_model="m")
                for j in range(i, i + 10)
            )
        print("acked", flush=True)
        os._exit(1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.strip() == "acked", done.stderr
    writer = TraceWriter(store, spool)
    assert writer.flush(timeout=30)
    assert _stored(store) == (500, 500)
    assert writer.close()


def test_torn_tail_from_a_crash_is_skipped(store: TraceStore, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    down = FlakyStore(store, [RuntimeError("db down")] * 10_000)
    first = TraceWriter(down, spool, retry_min=0.001, retry_max=0.01)
    first.submit(_records(20))
    assert not first.close(timeout=0.1)
    segment = sorted(spool.glob("journal-*.jsonl"))[-1]
    with open(segment, "ab") as fh:
        fh.write(b'{"request_id": "torn", "ti')  # the write a crash cut short

    second = TraceWriter(store, spool)
    second.submit(_records(5, prefix="after"))
    assert second.flush(timeout=30)
    assert _stored(store) == (25, 25)
    assert second.close()


def test_committed_segments_are_deleted(store: TraceStore, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    writer = TraceWriter(store, spool, segment_bytes=4096, max_delay=0.0)
    for i in range(20):
        writer.submit(_records(10, prefix=f"s{i}-"))
    assert writer.flush(timeout=30)
    assert _stored(store) == (200, 200)
    # Every sealed segment before the commit marker is gone; only the active one is left.
    assert len(list(spool.glob("journal-*.jsonl"))) == 1
    assert writer.close()


def test_one_writer_per_spool_dir_and_claim(store: TraceStore, tmp_path: Path) -> None:
    a = TraceWriter.claim(store, tmp_path / "spool")
    b = TraceWriter.claim(store, tmp_path / "spool")
    assert (a.spool_dir.name, b.spool_dir.name) == ("w0", "w1")
    with pytest.raises(SpoolBusy):
        TraceWriter(store, a.spool_dir)
    a.submit(_records(3))
    assert a.close()
    with pytest.raises(RuntimeError, match="closed"):
        a.submit(_records(1))
    c = TraceWriter.claim(store, tmp_path / "spool")
    assert c.spool_dir.name == "w0"
    assert c.close()
    assert b.close()
    assert _stored(store) == (3, 3)
