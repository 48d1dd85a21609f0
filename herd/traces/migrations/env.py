"""Alembic's environment for the trace database.

:func:`herd.traces.migrate.upgrade` hands in an open connection, already inside the
transaction that holds the migration lock (``config.attributes["connection"]``), so every
revision and the version stamp commit together or not at all. Without one (offline SQL
generation, ``alembic -x url=...`` from a shell) the URL comes from the config.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from herd.traces.migrate import include_name


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=SQLModel.metadata,
        include_name=include_name,
        compare_type=True,
        **kwargs,
    )


def run() -> None:
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        _configure(url=url, literal_binds=True, render_as_batch=str(url).startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(str(url))
        with engine.begin() as conn:
            _configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()
        return
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


# Alembic runs this file with its context set up; imported any other way (a check that
# every module of herd/ imports without Ray) it does nothing.
if getattr(context, "config", None) is not None:
    run()
