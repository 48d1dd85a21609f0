"""Schema migrations of the trace database (``herd.traces.migrate``), on SQLite and a real
PostgreSQL (``pgserver.py``): old databases (built from the frozen DDL of the code before
migrations, ``legacy_trace_schema.py``) upgrade in place with their rows, fresh ones get
their tables from the revisions, a further revision applies, and concurrent starts
migrate once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from legacy_trace_schema import legacy_ddl
from sqlalchemy import Engine, create_engine, inspect, text

from herd.traces import migrate
from herd.traces.records import TraceRecord
from herd.traces.store import TraceStore

OLD_TRACE = {
    "request_id": "old-1",
    "time": 1_700_000_000.5,
    "requested_model": "llama3:8b",
    "served_model": "llama3:8b",
    "node_id": "mac-studio",
    "attempts": 2,
    "score": 87.5,
    "breakdown": '{"thermal": 50}',
    "candidates": '[{"node": "mac-studio"}]',
    "eliminated": '{"pi": "too small"}',
    "status": "ok",
    "http_status": 200,
    "latency_s": 1.25,
    "ttft_s": 0.25,
    "load_s": None,
    "tokens_per_s": 40.0,
    "prompt_tokens": 12,
    "completion_tokens": 50,
    "retries": 1,
    "fallback_used": False,
    "excluded_nodes": '["mini"]',
    "tags": '["app:notes"]',
    "client": "10.0.0.7",
    "dialect": "openai",
    "kind": "chat",
    "error": None,
    "finish_reason": "stop",
    "stream": True,
}
TABLES = ("request_traces", "trace_tags", "latency_observations", "benchmark_runs")


@pytest.fixture
def empty_url(db_url: str) -> str:
    """A new, empty database: SQLite, then PostgreSQL (conftest's ``db_url``)."""
    return db_url


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    eng = create_engine(empty_url)
    yield eng
    eng.dispose()


def make_legacy(engine: Engine, tables: tuple[str, ...] = TABLES) -> None:
    """A database as the code before migrations left it, with rows in every table."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # as the old store set it
        for statement in legacy_ddl(conn.dialect.name):
            if any(f" {t} " in f" {statement.split('(')[0]} " for t in tables):
                conn.exec_driver_sql(statement)
        if "request_traces" in tables:
            cols = ", ".join(OLD_TRACE)
            marks = ", ".join(f":{c}" for c in OLD_TRACE)
            conn.execute(text(f"INSERT INTO request_traces ({cols}) VALUES ({marks})"), OLD_TRACE)
        if "trace_tags" in tables:
            conn.execute(
                text(
                    "INSERT INTO trace_tags (request_id, tag, time) "
                    "VALUES ('old-1', 'app:notes', 1)"
                )
            )
        if "latency_observations" in tables:
            conn.execute(
                text(
                    "INSERT INTO latency_observations (request_id, time, node_id, model, "
                    "latency_s, ttft_s) VALUES ('old-1', 1, 'mac-studio', 'llama3:8b', 1.25, 0.25)"
                )
            )
        if "benchmark_runs" in tables:
            conn.execute(
                text(
                    "INSERT INTO benchmark_runs (name, started_at, params, results) "
                    "VALUES ('nightly', 5, '{\"n\": 3}', '{\"rps\": 9.5}')"
                )
            )


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every trace table that exists, in id order."""
    names = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in TABLES
            if t in names
        }


def version(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_a_database_from_before_migrations_is_adopted_with_its_rows(
    engine: Engine, empty_url: str
) -> None:
    make_legacy(engine)
    before = dump(engine)
    assert before["request_traces"] and "alembic_version" not in inspect(engine).get_table_names()
    store = TraceStore(empty_url)  # what the router does when it starts
    try:
        assert version(engine) == [migrate.head_revision()]
        assert dump(engine) == before
        assert migrate.schema_differences(engine) == []
        # The old constraints still hold: a replayed old trace is skipped, a new one lands.
        store.write_batch([TraceRecord(request_id="old-1", time=2.0, requested_model="m")])
        store.write_batch(
            [TraceRecord(request_id="new-1", time=3.0, requested_model="m", tags=("app:x",))]
        )
        assert store.count_traces() == 2
        assert [b.name for b in store.list_benchmarks()] == ["nightly"]
    finally:
        store.close()


def test_a_half_created_old_database_is_completed(engine: Engine, empty_url: str) -> None:
    # A start that died between two create_all tables: the baseline creates the rest.
    make_legacy(engine, tables=("request_traces",))
    before = dump(engine)
    TraceStore(empty_url).close()
    assert set(TABLES) <= set(inspect(engine).get_table_names())
    assert dump(engine)["request_traces"] == before["request_traces"]
    assert migrate.schema_differences(engine) == []


def test_a_fresh_database_gets_its_tables_from_the_revisions(
    engine: Engine, empty_url: str
) -> None:
    TraceStore(empty_url).close()
    assert version(engine) == [migrate.head_revision()]
    assert migrate.schema_differences(engine) == []  # models == migrated schema
    if engine.dialect.name == "sqlite":  # new files reclaim pruned pages incrementally
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
    assert migrate.upgrade(engine) == migrate.head_revision()  # at head: nothing to do


SECOND_REVISION = '''
"""A later schema change: a column and an index."""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("benchmark_runs") as batch:
        batch.add_column(sa.Column("note", sa.String(64), nullable=True))
    op.create_index("ix_trace_tags_time", "trace_tags", ["time"])
    op.create_table("migration_runs", sa.Column("n", sa.Integer(), nullable=False))
    op.execute("INSERT INTO migration_runs (n) VALUES (1)")


def downgrade() -> None:
    op.drop_table("migration_runs")
    op.drop_index("ix_trace_tags_time", "trace_tags")
    with op.batch_alter_table("benchmark_runs") as batch:
        batch.drop_column("note")
'''


def scripts_with_a_second_revision(tmp_path: Path) -> str:
    where = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPT_LOCATION, where, ignore=shutil.ignore_patterns("__pycache__"))
    (where / "versions" / "r0002_note.py").write_text(SECOND_REVISION)
    return str(where)


@pytest.mark.parametrize("start", ["legacy", "baseline"])
def test_a_second_revision_upgrades_in_place(
    engine: Engine, empty_url: str, tmp_path: Path, start: str
) -> None:
    if start == "legacy":
        make_legacy(engine)
    else:
        store = TraceStore(empty_url)
        store.write_batch(
            [TraceRecord(request_id="kept", time=1.0, requested_model="m", tags=("t",))]
        )
        store.close()
    before = dump(engine)
    script = scripts_with_a_second_revision(tmp_path)
    assert migrate.upgrade(engine, script_location=script) == "0002"
    assert version(engine) == ["0002"]
    after = dump(engine)
    assert {t: rows for t, rows in after.items() if t != "benchmark_runs"} == {
        t: rows for t, rows in before.items() if t != "benchmark_runs"
    }
    # The new column is there, empty, beside the old values.
    assert [row[:-1] for row in after["benchmark_runs"]] == before["benchmark_runs"]
    assert all(row[-1] is None for row in after["benchmark_runs"])
    inspector = inspect(engine)
    assert "ix_trace_tags_time" in {ix["name"] for ix in inspector.get_indexes("trace_tags")}
    assert migrate.upgrade(engine, script_location=script) == "0002"  # once only
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM migration_runs")).scalar() == 1


MIGRATOR = """
import sys
from pathlib import Path
from sqlalchemy import create_engine
from herd.traces import migrate

url, script, marker = sys.argv[1:4]
locked = migrate._locked


def announced(engine):  # told just before it asks for the migration lock
    Path(marker).touch()
    return locked(engine)


migrate._locked = announced
print(migrate.upgrade(create_engine(url), script_location=script))
"""


def test_processes_starting_at_once_migrate_once(
    engine: Engine, empty_url: str, tmp_path: Path
) -> None:
    script = scripts_with_a_second_revision(tmp_path)
    n = 3
    holder = _hold_migration_lock(engine)
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATOR, empty_url, script, str(tmp_path / f"m{i}")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(n)
        ]
        # Every one of them is at the lock (PostgreSQL shows them waiting) before it frees.
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"m{i}").exists() for i in range(n)) or (
            engine.dialect.name == "postgresql" and _advisory_waiters(engine) < n
        ):
            assert time.monotonic() < deadline, "the migrators never reached the lock"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.05)
    finally:
        holder()
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, results
    assert [out.strip() for out, _ in results] == ["0002"] * n
    with engine.connect() as conn:  # the revision ran in one process only
        assert conn.execute(text("SELECT count(*) FROM migration_runs")).scalar() == 1
    assert version(engine) == ["0002"]


def _hold_migration_lock(engine: Engine) -> Any:
    """Take the lock the migrators take; returns the function that releases it."""
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute("PRAGMA journal_mode=WAL")
        raw.isolation_level = None
        raw.execute("BEGIN IMMEDIATE")

        def release() -> None:
            raw.execute("COMMIT")
            conn.close()

        return release
    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": migrate.PG_LOCK_KEY})
    conn.commit()

    def release_pg() -> None:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migrate.PG_LOCK_KEY})
        conn.commit()
        conn.close()

    return release_pg


def _advisory_waiters(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
        )


def test_the_migrations_ship_inside_the_package() -> None:
    where = Path(migrate.SCRIPT_LOCATION)
    assert where.parent == Path(migrate.__file__).parent
    assert (where / "env.py").is_file()
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    chain = [rev.revision for rev in scripts.walk_revisions()]  # head first
    assert chain[0] == migrate.head_revision() and chain[-1] == migrate.BASELINE


def test_a_new_revision_autogenerated_from_unchanged_models_is_empty(tmp_path: Path) -> None:
    # The developer's path to the next migration (`python -m herd.traces.migrate revision
    # MSG`), here in a copy of the scripts: with the models as they are, there is nothing
    # to migrate, and the revision chains onto the head and applies.
    script = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPT_LOCATION, script, ignore=shutil.ignore_patterns("__pycache__"))
    path = migrate.new_revision("nothing yet", script_location=str(script))
    assert path.parent == script / "versions" and path.name == "r0002_nothing_yet.py"
    text_ = path.read_text()
    assert "revision: str = '0002'" in text_ and "down_revision: str | None = '0001'" in text_
    assert "op." not in text_  # models == migrated schema: no operation generated
    eng = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert migrate.upgrade(eng, script_location=str(script)) == "0002"
    finally:
        eng.dispose()


def test_the_command_line_upgrades_and_checks(empty_url: str, engine: Engine) -> None:
    make_legacy(engine)
    assert migrate.main(["check", empty_url]) == 1  # not stamped yet
    assert migrate.main(["upgrade", empty_url]) == 0
    assert migrate.main(["check", empty_url]) == 0
    assert dump(engine)["request_traces"][0][1] == "old-1"
    assert migrate.main(["frobnicate"]) == 2
