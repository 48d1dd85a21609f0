"""Trace retention: traces older than ``FLEET_TRACE_RETENTION_DAYS`` are deleted, and the
SQLite file gives the room back.

:class:`Retention` is run by the router's upkeep (``actors/router.py``), in a thread, at
most once per ``interval`` (an hour). :func:`prune` deletes in batches of ``batch`` traces,
each its own short transaction (the trace, its tags and its latency observation together),
pausing between batches, so a prune of millions of rows never holds the database's write
lock for long: the trace writer slips in between (and journals meanwhile in any case).
Latency observations older than the cutoff whose trace is gone are deleted the same way.
Benchmark runs are kept (they are a history of the fleet, not traces).

Compaction. SQLite: files created by herd since migrations use ``auto_vacuum=INCREMENTAL``
(``herd.traces.migrate.sqlite_pragmas``); after a prune, the freed pages are returned to
the file system with ``PRAGMA incremental_vacuum`` in steps of ``VACUUM_STEP_PAGES``. An
older file (``auto_vacuum=NONE``) is converted once, when a prune has freed at least
``CONVERT_FRACTION`` of it: ``PRAGMA auto_vacuum=INCREMENTAL; VACUUM`` (one rewrite of the
file, which holds the write lock while it runs; the writer retries, its journal keeps
every trace). PostgreSQL: its autovacuum reclaims deleted rows for reuse; nothing to do.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select

from herd.traces.repair import describe
from herd.traces.tables import LatencyObservation, RequestTrace, TraceTag

DAY_S = 86_400.0
BATCH = 1000  # traces per transaction
PAUSE_S = 0.02  # between two batches: the writer's turn
VACUUM_STEP_PAGES = 2048  # pages per incremental_vacuum step (8 MiB at 4 KiB pages)
CONVERT_FRACTION = 0.1  # an old SQLite file is rewritten once this much of it is free
CONVERT_MIN_PAGES = 256

log = logging.getLogger(__name__)


@dataclass
class Pruned:
    """What one prune removed and how it compacted."""

    traces: int = 0
    tags: int = 0
    observations: int = 0
    batches: int = 0
    compaction: str = "none"  # none | incremental | vacuum | autovacuum (PostgreSQL)
    freed_pages: int = 0
    seconds: float = 0.0


def prune(engine: Engine, cutoff: float, *, batch: int = BATCH, pause: float = PAUSE_S) -> Pruned:
    """Delete traces (with their tags and observations) whose ``time`` is before
    ``cutoff`` (epoch seconds), ``batch`` at a time; then compact (see the module)."""
    started = time.monotonic()
    out = Pruned()
    rt, tt, lo = RequestTrace.__table__, TraceTag.__table__, LatencyObservation.__table__  # type: ignore[attr-defined]
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                select(rt.c.id, rt.c.request_id)
                .where(rt.c.time < cutoff)
                .order_by(rt.c.time)
                .limit(batch)
            ).all()
            if not rows:
                break
            ids = [r.request_id for r in rows]
            out.tags += conn.execute(delete(tt).where(tt.c.request_id.in_(ids))).rowcount
            out.observations += conn.execute(delete(lo).where(lo.c.request_id.in_(ids))).rowcount
            out.traces += conn.execute(delete(rt).where(rt.c.id.in_([r.id for r in rows]))).rowcount
        out.batches += 1
        time.sleep(pause)
    while True:  # observations whose trace was never stored or is gone
        with engine.begin() as conn:
            old = select(lo.c.id).where(lo.c.time < cutoff).order_by(lo.c.time).limit(batch)
            ids = [r.id for r in conn.execute(old)]
            if not ids:
                break
            out.observations += conn.execute(delete(lo).where(lo.c.id.in_(ids))).rowcount
        out.batches += 1
        time.sleep(pause)
    if out.traces or out.observations:
        out.compaction, out.freed_pages = compact(engine, pause=pause)
    out.seconds = time.monotonic() - started
    return out


def compact(engine: Engine, *, pause: float = PAUSE_S) -> tuple[str, int]:
    """Give the free pages of a SQLite file back (see the module); returns how and how
    many pages. PostgreSQL and others: ``("autovacuum", 0)``, the server's business."""
    if engine.dialect.name != "sqlite":
        return "autovacuum", 0
    with engine.connect() as conn:
        mode = int(conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one())
        free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
    if free == 0:
        return "none", 0
    if mode == 2:  # INCREMENTAL
        freed = 0
        while free > 0:
            with engine.connect() as conn:
                # executescript steps the pragma to its end (execute frees one page).
                raw = conn.connection.dbapi_connection
                assert raw is not None
                raw.executescript(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})")
                left = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            if left >= free:  # nothing moved (another connection busy): next prune
                break
            freed += free - left
            free = left
            time.sleep(pause)
        return "incremental", freed
    if mode == 0 and free >= max(CONVERT_MIN_PAGES, pages * CONVERT_FRACTION):
        with engine.connect() as conn:
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            auto.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            auto.exec_driver_sql("VACUUM")  # the rewrite that makes the mode stick
        return "vacuum", free
    return "none", 0


class Retention:
    """When to prune, for the router's upkeep: ``due(now)`` at most once per ``interval``
    and never while a prune runs; ``run()`` prunes (call it in a thread)."""

    def __init__(
        self, engine: Engine, days: float, *, interval: float = 3600.0, batch: int = BATCH
    ) -> None:
        self.engine = engine
        self.days = days
        self.interval = interval
        self.batch = batch
        self.last: Pruned | None = None
        self._next = 0.0  # the first upkeep after the start prunes
        self._running = False
        self._lock = threading.Lock()

    def due(self, now: float) -> bool:
        """True (and the prune claimed) when a prune should start now."""
        with self._lock:
            if self.days <= 0 or self._running or now < self._next:
                return False
            self._running = True
            self._next = now + self.interval
            return True

    def run(self, now: float | None = None) -> Pruned | None:
        """Prune what is older than ``days`` before ``now``; a failure (database away)
        is logged and the next interval tries again."""
        try:
            cutoff = (time.time() if now is None else now) - self.days * DAY_S
            result = prune(self.engine, cutoff, batch=self.batch)
        except Exception as exc:
            log.warning(
                "trace retention failed (next try in %.0f s): %s", self.interval, describe(exc)
            )
            return None
        finally:
            with self._lock:
                self._running = False
        self.last = result
        if result.traces or result.observations:
            log.info(
                "trace retention: %d traces, %d tags, %d observations older than %g days "
                "deleted in %d batches (%.1f s); compaction %s, %d pages freed",
                result.traces,
                result.tags,
                result.observations,
                self.days,
                result.batches,
                result.seconds,
                result.compaction,
                result.freed_pages,
            )
        return result
