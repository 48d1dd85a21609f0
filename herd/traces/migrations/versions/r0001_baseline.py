"""Baseline: the four trace tables as ``create_all`` made them before migrations.

A database from that time (no ``alembic_version``) is adopted by this revision: each table
and index is created only when it is missing, so an existing ``herd.db`` keeps its rows
and is stamped here, and a half-created one (a start that died between two tables) is
completed. A fresh database gets every table from here.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tables() -> dict[str, tuple[list[sa.Column[Any]], list[sa.UniqueConstraint]]]:
    def pk() -> sa.Column[Any]:
        return sa.Column("id", sa.Integer(), primary_key=True, nullable=False)

    def col(name: str, type_: sa.types.TypeEngine[Any], nullable: bool = False) -> sa.Column[Any]:
        return sa.Column(name, type_, nullable=nullable)

    return {
        "request_traces": (
            [
                pk(),
                col("request_id", sa.String(128)),
                col("time", sa.Float()),
                col("requested_model", sa.String(256)),
                col("served_model", sa.String(256), True),
                col("node_id", sa.String(256), True),
                col("attempts", sa.Integer()),
                col("score", sa.Float(), True),
                col("breakdown", sa.JSON()),
                col("candidates", sa.JSON()),
                col("eliminated", sa.JSON()),
                col("status", sa.String(16)),
                col("http_status", sa.Integer()),
                col("latency_s", sa.Float(), True),
                col("ttft_s", sa.Float(), True),
                col("load_s", sa.Float(), True),
                col("tokens_per_s", sa.Float(), True),
                col("prompt_tokens", sa.Integer()),
                col("completion_tokens", sa.Integer()),
                col("retries", sa.Integer()),
                col("fallback_used", sa.Boolean()),
                col("excluded_nodes", sa.JSON()),
                col("tags", sa.JSON()),
                col("client", sa.String(256), True),
                col("dialect", sa.String(16)),
                col("kind", sa.String(32)),
                col("error", sa.String(), True),
                col("finish_reason", sa.String(64), True),
                col("stream", sa.Boolean()),
            ],
            [sa.UniqueConstraint("request_id", name="uq_request_traces_request_id")],
        ),
        "trace_tags": (
            [
                pk(),
                col("request_id", sa.String(128)),
                col("tag", sa.String(64)),
                col("time", sa.Float()),
            ],
            [sa.UniqueConstraint("request_id", "tag", name="uq_trace_tags_request_tag")],
        ),
        "latency_observations": (
            [
                pk(),
                col("request_id", sa.String(128), True),
                col("time", sa.Float()),
                col("node_id", sa.String(256)),
                col("model", sa.String(256)),
                col("latency_s", sa.Float()),
                col("ttft_s", sa.Float(), True),
                col("tokens_per_s", sa.Float(), True),
                col("load_s", sa.Float(), True),
            ],
            [sa.UniqueConstraint("request_id", name="uq_latency_observations_request_id")],
        ),
        "benchmark_runs": (
            [
                pk(),
                col("name", sa.String(256)),
                col("started_at", sa.Float()),
                col("finished_at", sa.Float(), True),
                col("params", sa.JSON()),
                col("results", sa.JSON()),
            ],
            [],
        ),
    }


INDEXES: dict[str, list[tuple[str, list[str]]]] = {
    "request_traces": [
        ("ix_request_traces_time", ["time"]),
        ("ix_request_traces_served_model_time", ["served_model", "time"]),
        ("ix_request_traces_node_time", ["node_id", "time"]),
        ("ix_request_traces_status_time", ["status", "time"]),
    ],
    "trace_tags": [("ix_trace_tags_tag_time", ["tag", "time"])],
    "latency_observations": [
        ("ix_latency_observations_node_model_time", ["node_id", "model", "time"]),
        ("ix_latency_observations_time", ["time"]),
    ],
    "benchmark_runs": [("ix_benchmark_runs_started_at", ["started_at"])],
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, (columns, constraints) in _tables().items():
        if name not in existing:
            op.create_table(name, *columns, *constraints)
            have: set[str] = set()
        else:
            have = {ix["name"] for ix in inspector.get_indexes(name) if ix["name"]}
        for index, cols in INDEXES[name]:
            if index not in have:
                op.create_index(index, name, cols)


def downgrade() -> None:
    for name in reversed(list(INDEXES)):
        op.drop_table(name)
