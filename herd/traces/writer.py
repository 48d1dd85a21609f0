"""``TraceWriter``: traces leave the request path at once and are never lost once acknowledged.

``submit(records)`` appends the records as JSON lines to a journal segment in
``spool_dir`` (``journal-<n>.jsonl``), flushes and fsyncs it, and returns: a returned
call is an acknowledged write. It never touches the database. A background thread tails
the journal, writes batches (``batch_size`` records, or whatever arrived within
``max_delay`` seconds) through ``TraceStore.write_batch`` and then records a commit marker
(``commit.json``: the journal position everything before which is stored). Sealed
segments wholly before the marker are deleted; the active segment rotates at
``segment_bytes``.

Recovery: a new writer on the same spool dir (after a crash or restart) starts from the
marker and replays everything after it. A database error keeps the batch and retries it
with backoff; a crash of the writer thread restarts the loop from the marker. Replays may
write a record twice, which the store ignores (unique ``request_id``), so nothing
acknowledged is lost and nothing is duplicated.

One writer per spool dir at a time (an exclusive ``flock`` on ``spool_dir/lock``); with
several processes use :meth:`TraceWriter.claim`, which takes the first free
``<root>/w<k>`` directory, so a restarted process adopts (and replays) an orphaned one.
Synchronous by design: ``submit`` costs one ``write`` + ``fsync``; async callers that
cannot afford that on the event loop call it via ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Protocol

from herd.traces.records import TraceRecord

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^journal-(\d{8})\.jsonl$")
Position = tuple[int, int]  # (segment number, byte offset)


class SpoolBusy(RuntimeError):
    """Another live writer holds this spool dir."""


class BatchSink(Protocol):
    def write_batch(self, records: list[TraceRecord]) -> int: ...


def _segment_name(n: int) -> str:
    return f"journal-{n:08d}.jsonl"


class TraceWriter:
    def __init__(
        self,
        store: BatchSink,
        spool_dir: Path | str,
        *,
        batch_size: int = 500,
        max_delay: float = 0.5,
        segment_bytes: int = 8 * 1024 * 1024,
        retry_min: float = 0.05,
        retry_max: float = 5.0,
        read_chunk: int = 1024 * 1024,
    ) -> None:
        self.store = store
        self.spool_dir = Path(spool_dir)
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.segment_bytes = segment_bytes
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.read_chunk = read_chunk
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_lock()
        self._cond = threading.Condition()
        self._append_lock = threading.Lock()
        self._stopping = False
        self._closed = False
        self._urgent = 0  # flush() callers waiting: write without waiting for max_delay
        self.counters = {"submitted": 0, "written": 0, "batches": 0, "failures": 0, "crashes": 0}
        self._committed: Position = self._read_marker()
        # Always append to a fresh segment: an older one may end in a torn line.
        self._segment = max(self._segments(), default=0) + 1
        self._file: IO[bytes] = open(self.spool_dir / _segment_name(self._segment), "ab")  # noqa: SIM115
        self._end: Position = (self._segment, 0)
        self._thread: threading.Thread | None = None
        self._ensure_thread()

    @classmethod
    def claim(cls, store: BatchSink, spool_root: Path | str, **options: Any) -> TraceWriter:
        """A writer on the first spool dir ``<root>/w0``, ``w1``, ... no live writer holds."""
        root = Path(spool_root)
        for k in range(1000):
            try:
                return cls(store, root / f"w{k}", **options)
            except SpoolBusy:
                continue
        raise SpoolBusy(f"no free spool dir under {root}")

    # --- the request path ----------------------------------------------------------------
    def submit(self, records: Iterable[TraceRecord]) -> None:
        """Journal ``records`` durably (flush + fsync); returning means acknowledged."""
        data = "".join(r.to_json() + "\n" for r in records).encode()
        if not data:
            return
        count = data.count(b"\n")
        with self._append_lock:
            if self._closed:
                raise RuntimeError("trace writer is closed")
            if self._end[1] and self._end[1] + len(data) > self.segment_bytes:
                self._rotate()
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
            end = (self._segment, self._end[1] + len(data))
        with self._cond:
            self._end = max(self._end, end)
            self.counters["submitted"] += count
            self._cond.notify_all()
        self._ensure_thread()

    def _rotate(self) -> None:
        self._file.close()
        self._segment += 1
        self._file = open(self.spool_dir / _segment_name(self._segment), "ab")  # noqa: SIM115
        with self._cond:
            self._end = (self._segment, 0)

    # --- waiting and shutdown ------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is in the database (False on timeout)."""
        self._ensure_thread()
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._end
            self._urgent += 1
            self._cond.notify_all()
            try:
                while self._committed < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._urgent -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is pending, stop the thread, release the spool dir.

        Returns False when something could not be stored in time; it stays in the journal
        and the next writer on this spool dir replays it.
        """
        with self._append_lock:
            if self._closed:
                return True
            self._closed = True
        done = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.1, timeout))
        self._file.close()
        self._lock_file.close()  # releases the flock
        return done

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                **self.counters,
                "committed": list(self._committed),
                "end": list(self._end),
                "alive": bool(self._thread and self._thread.is_alive()),
            }

    # --- the background thread -----------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._cond:
            if self._stopping or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._run, name=f"trace-writer:{self.spool_dir.name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        """Supervise the loop: on a crash, log and start over from the commit marker."""
        backoff = self.retry_min
        while True:
            try:
                self._loop()
                return
            except BaseException:
                log.exception("trace writer thread crashed; restarting from the commit marker")
                with self._cond:
                    self.counters["crashes"] += 1
                    if self._stopping:
                        return
                    self._cond.wait(backoff)
                backoff = min(backoff * 2, self.retry_max)

    def _loop(self) -> None:
        with self._cond:
            read_pos = self._committed
        reader = _JournalReader(self.spool_dir, self.read_chunk)
        pending: list[tuple[TraceRecord, Position]] = []
        first_seen = 0.0
        backoff = self.retry_min
        try:
            while True:
                if len(pending) < self.batch_size:
                    got, read_pos = reader.read(read_pos, self.batch_size - len(pending))
                    if got and not pending:
                        first_seen = time.monotonic()
                    pending.extend(got)
                if not pending:
                    if read_pos > self._committed:  # skipped empty / torn segments
                        self._commit(read_pos)
                    with self._cond:
                        if self._stopping and read_pos >= self._end:
                            return
                        if read_pos >= self._end:
                            self._cond.wait(1.0)
                    continue
                with self._cond:
                    hurry = self._stopping or self._urgent > 0
                    if len(pending) < self.batch_size and not hurry:
                        wait = first_seen + self.max_delay - time.monotonic()
                        if wait > 0:
                            if read_pos >= self._end:
                                self._cond.wait(wait)
                            continue
                batch = pending[: self.batch_size]
                try:
                    self.store.write_batch([r for r, _ in batch])
                except Exception:
                    log.warning("trace store write failed; retrying", exc_info=True)
                    with self._cond:
                        self.counters["failures"] += 1
                        if self._stopping:
                            return
                        self._cond.wait(backoff)
                    backoff = min(backoff * 2, self.retry_max)
                    continue
                backoff = self.retry_min
                del pending[: len(batch)]
                with self._cond:
                    self.counters["written"] += len(batch)
                    self.counters["batches"] += 1
                self._commit(batch[-1][1] if pending else max(batch[-1][1], read_pos))
                first_seen = time.monotonic()
        finally:
            reader.close()

    def _commit(self, pos: Position) -> None:
        marker = self.spool_dir / "commit.json"
        tmp = marker.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"segment": pos[0], "offset": pos[1]}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, marker)
        for n in self._segments():
            if n < pos[0]:
                (self.spool_dir / _segment_name(n)).unlink(missing_ok=True)
        with self._cond:
            self._committed = max(self._committed, pos)
            self._cond.notify_all()

    # --- spool dir -----------------------------------------------------------------------
    def _take_lock(self) -> IO[str]:
        fh = open(self.spool_dir / "lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise SpoolBusy(f"{self.spool_dir} is used by another trace writer") from None
        return fh

    def _segments(self) -> list[int]:
        return sorted(
            int(m.group(1)) for p in self.spool_dir.iterdir() if (m := _SEGMENT.match(p.name))
        )

    def _read_marker(self) -> Position:
        try:
            data = json.loads((self.spool_dir / "commit.json").read_text(encoding="utf-8"))
            return (int(data["segment"]), int(data["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return (0, 0)


class _JournalReader:
    """Reads complete journal lines from a position, crossing into newer segments."""

    def __init__(self, spool_dir: Path, chunk: int) -> None:
        self.spool_dir = spool_dir
        self.chunk = chunk
        self._fh: IO[bytes] | None = None
        self._fh_segment = -1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._fh_segment = -1

    def read(
        self, pos: Position, limit: int
    ) -> tuple[list[tuple[TraceRecord, Position]], Position]:
        out: list[tuple[TraceRecord, Position]] = []
        while len(out) < limit:
            segment, offset = pos
            newer = self._next_segment(segment)  # looked up BEFORE reading: see below
            data = self._read_from(segment, offset)
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                # Nothing complete here. A newer segment existing before this read means
                # this one is sealed: what is left is a torn line from a crash; skip it.
                if newer is None:
                    break
                if data:
                    log.warning("skipping a torn journal tail in segment %d", segment)
                pos = (newer, 0)
                continue
            for line in data[:cut].split(b"\n")[:-1]:
                if len(out) >= limit:
                    break
                offset += len(line) + 1
                try:
                    out.append((TraceRecord.from_json(line.decode()), (segment, offset)))
                except (ValueError, TypeError, UnicodeDecodeError):
                    log.warning("skipping an unreadable journal line in segment %d", segment)
            pos = (segment, offset)
        return out, pos

    def _next_segment(self, segment: int) -> int | None:
        later = [
            int(m.group(1))
            for p in self.spool_dir.iterdir()
            if (m := _SEGMENT.match(p.name)) and int(m.group(1)) > segment
        ]
        return min(later) if later else None

    def _read_from(self, segment: int, offset: int) -> bytes:
        if self._fh_segment != segment:
            self.close()
            path = self.spool_dir / _segment_name(segment)
            try:
                self._fh = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                return b""
            self._fh_segment = segment
        assert self._fh is not None
        self._fh.seek(offset)
        return self._fh.read(self.chunk)
