"""Revisions of the trace database, oldest first (``r0001_baseline.py`` is the schema of
every ``herd.db`` created before migrations existed)."""
