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
marker and replays everything after it. A database that is away (connection refused,
disk full, locked, a missing table: anything but a refusal of the data) keeps the batch
and retries it with backoff; a crash of the writer thread restarts the loop from the
marker. Replays may write a record twice, which the store ignores (unique
``request_id``), so nothing acknowledged is lost and nothing is duplicated.

No record stalls the journal: the store repairs values before the write
(``herd.traces.repair``); a batch the database still refuses as data
(``herd.traces.repair.refusal``) is retried record by record, and a record refused on
its own, while the database takes a clean one (``store.probe``), goes to the quarantine
file (``herd.traces.quarantine``; ``<spool_dir>/quarantine.jsonl``, or
``<root>/quarantine.jsonl`` for :meth:`TraceWriter.claim`), is counted and logged once
with the reason, and the records behind it are stored. A journal line that does not parse
is quarantined as it is. Failures are logged when they start or change and when writes
resume, with a reason that holds no value of a record (``herd.traces.repair.describe``).

``stats()`` (the router's ``status()["traces"]``, so ``/fleet/status`` and the dashboard's
``trace_store`` health check): ``submitted``, ``written``, ``batches``, ``failures``
(failed write attempts), ``crashes``, ``quarantined``, ``repaired`` (records stored with
a value repaired), ``last_error`` (the reason of the current failure streak, else None),
``quarantine_file``, ``committed`` / ``end`` (journal positions), ``alive``.

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
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Protocol

from herd.traces.journal import SEGMENT, JournalReader, Position, segment_name
from herd.traces.quarantine import QUARANTINE_FILE_NAME, Quarantine
from herd.traces.records import TraceRecord
from herd.traces.repair import describe, refusal

log = logging.getLogger(__name__)


class SpoolBusy(RuntimeError):
    """Another live writer holds this spool dir."""


class BatchSink(Protocol):
    """Writes records (``TraceStore``). Optional: ``probe()`` raises when the database
    refuses even a clean record; ``repaired``, records stored with a value repaired."""

    def write_batch(self, records: list[TraceRecord]) -> int: ...


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
        quarantine: Path | str | None = None,
    ) -> None:
        self.store = store
        self.spool_dir = Path(spool_dir)
        self.quarantine = Quarantine(quarantine or self.spool_dir / QUARANTINE_FILE_NAME)
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
        self.counters = {
            "submitted": 0,
            "written": 0,
            "batches": 0,
            "failures": 0,
            "crashes": 0,
            "quarantined": 0,
        }
        self._last_error: str | None = None
        self._committed: Position = self._read_marker()
        # Always append to a fresh segment: an older one may end in a torn line.
        self._segment = max(self._segments(), default=0) + 1
        self._file: IO[bytes] = open(self.spool_dir / segment_name(self._segment), "ab")  # noqa: SIM115
        self._end: Position = (self._segment, 0)
        self._thread: threading.Thread | None = None
        self._ensure_thread()

    @classmethod
    def claim(cls, store: BatchSink, spool_root: Path | str, **options: Any) -> TraceWriter:
        """A writer on the first spool dir ``<root>/w0``, ``w1``, ... no live writer holds.

        They share one quarantine file, ``<root>/quarantine.jsonl``, unless told otherwise.
        """
        root = Path(spool_root)
        options.setdefault("quarantine", root / QUARANTINE_FILE_NAME)
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
        self._file = open(self.spool_dir / segment_name(self._segment), "ab")  # noqa: SIM115
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
                "repaired": int(getattr(self.store, "repaired", 0)),
                "last_error": self._last_error,
                "quarantine_file": str(self.quarantine.path),
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
        reader = JournalReader(self.spool_dir, self.read_chunk)
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
                    self._quarantine_unreadable(reader)
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
                done = self._store(batch)  # the leading records stored or quarantined
                if done:
                    del pending[:done]
                    last = batch[done - 1][1]
                    self._commit(last if pending else max(last, read_pos))
                    first_seen = time.monotonic()
                if done < len(batch):  # the database is away: retry the rest later
                    with self._cond:
                        if self._stopping:
                            return
                        self._cond.wait(backoff)
                    backoff = min(backoff * 2, self.retry_max)
                    continue
                backoff = self.retry_min
        finally:
            reader.close()

    # --- storing one batch ---------------------------------------------------------------
    def _store(self, batch: list[tuple[TraceRecord, Position]]) -> int:
        """Write ``batch``; how many of its leading records are done (stored or
        quarantined). Fewer than all: the database is away, the rest waits."""
        try:
            self.store.write_batch([r for r, _ in batch])
        except Exception as exc:
            if refusal(exc) is None:
                self._failed(describe(exc))
                return 0
            return self._one_by_one(batch)
        self._stored(len(batch))
        return len(batch)

    def _one_by_one(self, batch: list[tuple[TraceRecord, Position]]) -> int:
        """The database refused the batch's data: find the records it refuses."""
        healthy = False  # the probe passed in this pass
        quarantined: set[str] = set()
        for i, (record, _) in enumerate(batch):
            if record.request_id in quarantined:
                continue
            try:
                self.store.write_batch([record])
            except Exception as exc:
                reason = refusal(exc)
                if reason is None:
                    self._failed(describe(exc))
                    return i
                if not healthy:
                    trouble = self._probe()
                    if trouble is not None:  # even a clean record fails: the database
                        self._failed(trouble)
                        return i
                    healthy = True
                try:
                    self.quarantine.add(reason, record)
                except OSError as err:
                    self._failed(f"cannot write the quarantine file: {describe(err)}")
                    return i
                quarantined.add(record.request_id)
                with self._cond:
                    self.counters["quarantined"] += 1
                log.warning(
                    "trace %s quarantined in %s: the database refused it even repaired (%s)",
                    _loggable(record.request_id),
                    self.quarantine.path,
                    reason,
                )
                continue
            self._stored(1, batches=0)
        with self._cond:
            self.counters["batches"] += 1
        return len(batch)

    def _probe(self) -> str | None:
        probe = getattr(self.store, "probe", None)
        if probe is None:
            return None
        try:
            probe()
        except Exception as exc:
            return describe(exc)
        return None

    def _stored(self, count: int, batches: int = 1) -> None:
        with self._cond:
            self.counters["written"] += count
            self.counters["batches"] += batches
            failed, self._last_error = self._last_error, None
        if failed is not None:
            log.info("trace store writes again")

    def _failed(self, reason: str) -> None:
        with self._cond:
            self.counters["failures"] += 1
            again = reason == self._last_error
            self._last_error = reason
        if not again:  # once per streak and reason, not once per retry
            log.warning(
                "trace store write failed (%s); the traces stay in the journal and are "
                "retried until the database takes them",
                reason,
            )

    def _quarantine_unreadable(self, reader: JournalReader) -> None:
        while reader.unreadable:
            line, reason = reader.unreadable.pop(0)
            try:
                self.quarantine.add(reason, line=line)
            except OSError as err:
                log.warning("could not quarantine an unreadable journal line: %s", describe(err))
                continue
            with self._cond:
                self.counters["quarantined"] += 1
            log.warning("an unreadable journal line was quarantined in %s", self.quarantine.path)

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
                (self.spool_dir / segment_name(n)).unlink(missing_ok=True)
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
            int(m.group(1)) for p in self.spool_dir.iterdir() if (m := SEGMENT.match(p.name))
        )

    def _read_marker(self) -> Position:
        try:
            data = json.loads((self.spool_dir / "commit.json").read_text(encoding="utf-8"))
            return (int(data["segment"]), int(data["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return (0, 0)


def _loggable(text: str, limit: int = 80) -> str:
    """An id as it can go into a log line (it may come from a client)."""
    return repr(text[:limit])
