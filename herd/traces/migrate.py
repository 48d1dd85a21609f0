"""Schema migrations of the trace database: Alembic, run in process when a store opens.

:func:`upgrade` brings a database to the newest revision of ``herd/traces/migrations``
(shipped inside the package and found by its path: no ``alembic.ini``). Every
``TraceStore`` calls it when it opens, so the head deploy (the RouterActor's store)
migrates the database before the first trace is written, and each ingress replica's
dashboard store then finds it at head.

* A fresh database gets its tables from the revisions, never from ``create_all``.
* A database from before migrations (trace tables, no ``alembic_version``) is adopted by
  the baseline revision (``0001``): what exists is kept with its rows, what is missing is
  created, and it is stamped; later revisions then run on it in place.
* One migrator at a time. SQLite: the whole upgrade is one ``BEGIN IMMEDIATE``
  transaction, SQLite's own write lock (a second process waits for it, up to
  ``MIGRATION_WAIT_S``, and then finds the database at head). PostgreSQL: a
  transaction-scoped advisory lock (``pg_advisory_xact_lock``) taken first in the
  migration's transaction. DDL is transactional on both, so a migration that fails leaves
  the database as it was. Other databases migrate without a lock.
* A database already at head costs one ``SELECT`` and no lock.

By hand: ``python -m herd.traces.migrate upgrade [URL]`` (the configured database when no
URL is given), ``check [URL]`` (exit 1 unless the database is at head and matches the models),
``revision MESSAGE`` (autogenerates the next revision from the models, against a scratch
SQLite database at head; review it before committing).
"""

from __future__ import annotations

import functools
import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from herd.settings import Settings
from herd.traces.tables import TRACE_TABLES

SQLITE_FILE_NAME = "herd.db"
SCRIPT_LOCATION = str(Path(__file__).with_name("migrations"))
BASELINE = "0001"
TABLE_NAMES = frozenset(t.__tablename__ for t in TRACE_TABLES)
MIGRATION_WAIT_S = 600  # SQLite: how long a second migrator waits for the first
PG_LOCK_KEY = 0x6865_7264_6D69_6772  # "herdmigr": the advisory lock of trace migrations
SQLITE_BUSY_MS = 30_000

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    """``FLEET_DATABASE_URL`` when set, else SQLite at ``<data_dir>/herd.db``."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{settings.data_dir / SQLITE_FILE_NAME}"


def sqlite_pragmas(dbapi_conn: Any, busy_ms: int = SQLITE_BUSY_MS) -> None:
    """Every SQLite connection of the trace store: incremental auto-vacuum (it takes
    effect only on a new, empty file, so it must come before WAL writes the header),
    WAL (readers never block the writer, nor the other way round), a busy wait."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cur.close()


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Only the trace tables are ours: other tables in the same database are left alone."""
    return name in TABLE_NAMES if type_ == "table" else True


def alembic_config(
    script_location: str = SCRIPT_LOCATION,
    connection: Connection | None = None,
    url: str | None = None,
) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    cfg.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


@functools.lru_cache(maxsize=8)
def head_revision(script_location: str = SCRIPT_LOCATION) -> str:
    head = ScriptDirectory.from_config(alembic_config(script_location)).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration revisions in {script_location}")
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, *, script_location: str = SCRIPT_LOCATION) -> str:
    """Migrate the database behind ``engine`` to head (see the module's docstring);
    returns the revision it is at. Raises what the database raises (down, refused)."""
    head = head_revision(script_location)
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return head
    with _locked(engine) as conn:
        current = current_revision(conn)
        if current == head:  # another process migrated while this one waited
            return head
        if current is None:
            legacy = sorted(set(inspect(conn).get_table_names()) & TABLE_NAMES)
            if legacy:
                log.warning(
                    "trace database from before migrations (tables %s): adopted at "
                    "revision %s, rows kept",
                    ", ".join(legacy),
                    BASELINE,
                )
        command.upgrade(alembic_config(script_location, conn), "head")
        after = current_revision(conn) or ""
    log.info("trace database migrated from %s to %s", current or "nothing", after)
    return after


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; commits on exit."""
    url = engine.url
    if engine.dialect.name == "sqlite" and _is_file(url.database, url.query):
        # A connection of its own: its transaction is BEGIN IMMEDIATE (pysqlite would not
        # begin one before DDL), so the migration is atomic and excludes a second one.
        locker = create_engine(
            url,
            poolclass=NullPool,
            connect_args={"timeout": MIGRATION_WAIT_S, "check_same_thread": False},
        )

        @event.listens_for(locker, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            sqlite_pragmas(dbapi_conn, busy_ms=MIGRATION_WAIT_S * 1000)
            dbapi_conn.isolation_level = None  # transactions are ours, not the driver's

        @event.listens_for(locker, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            with locker.connect() as conn, conn.begin():
                yield conn
        finally:
            locker.dispose()
        return
    with engine.connect() as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        yield conn


def _is_file(database: str | None, query: Any) -> bool:
    return bool(database) and database != ":memory:" and not query.get("uri")


def schema_differences(engine: Engine) -> list[Any]:
    """What autogenerate would change to make the database match the models (empty: in
    step). The ``alembic check`` of the trace tables."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_name": include_name, "compare_type": True}
        )
        return list(compare_metadata(ctx, SQLModel.metadata))


def new_revision(message: str, script_location: str = SCRIPT_LOCATION) -> Path:
    """Write the next revision (``r<NNNN>_<slug>.py``), autogenerated from the models
    against a scratch SQLite database at head; returns its path."""
    rev_id = f"{int(head_revision(script_location)) + 1:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        try:
            upgrade(engine, script_location=script_location)
            with engine.begin() as conn:
                script = command.revision(
                    alembic_config(script_location, conn),
                    message=message,
                    autogenerate=True,
                    rev_id=rev_id,
                )
        finally:
            engine.dispose()
    head_revision.cache_clear()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    action = args.pop(0) if args else "upgrade"
    if action == "revision" and args:
        print(new_revision(" ".join(args)))
        return 0
    if action not in ("upgrade", "check") or len(args) > 1:
        print(
            "usage: python -m herd.traces.migrate [upgrade [URL] | check [URL] | revision MSG]",
            file=sys.stderr,
        )
        return 2
    engine = create_engine(args[0] if args else _configured_url())
    try:
        if action == "upgrade":
            print(upgrade(engine))
            return 0
        with engine.connect() as conn:
            current = current_revision(conn)
        if current != head_revision():
            print(f"the database is at {current or 'no revision'}, head is {head_revision()}")
            return 1
        diffs = schema_differences(engine)
        for diff in diffs:
            print(diff)
        return 1 if diffs else 0
    finally:
        engine.dispose()


def _configured_url() -> str:
    from herd.settings import load_settings

    return database_url(load_settings())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    raise SystemExit(main())
