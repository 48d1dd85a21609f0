"""Alembic scripts of the trace database (``env.py``, ``versions/``); run by
:mod:`herd.traces.migrate`, never imported as modules."""
