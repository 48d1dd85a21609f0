"""Where the ingress replicas run: on the head with SQLite (the file the router
writes there), and with a database server too (the other boxes may hold herd's node
part alone: no Serve, no FastAPI, no dashboard)."""

from __future__ import annotations

from pathlib import Path

from herd.settings import load_settings
from serve_app.app import HEAD_RESOURCE, ingress_actor_options


def test_sqlite_keeps_the_replicas_on_the_head(tmp_path: Path) -> None:
    options = ingress_actor_options(load_settings(data_dir=tmp_path))
    assert options == {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}}
    assert HEAD_RESOURCE == "node:__internal_head__"  # Ray's own resource of the head


def test_a_database_server_keeps_them_on_the_head_too(tmp_path: Path) -> None:
    url = "postgresql+psycopg://herd@db.internal/herd"
    options = ingress_actor_options(load_settings(data_dir=tmp_path, database_url=url))
    assert options == {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}}
