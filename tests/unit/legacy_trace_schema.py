"""The trace database as herd created it before migrations: ``create_all`` over the
SQLModel tables of ``herd/traces/tables.py`` at commit 2ac5de0, frozen here as the DDL
that call emitted (SQLite; PostgreSQL differs only in ``SERIAL`` ids). The migration
tests build an "old" database from it, fill it, and let today's code open it.
"""

from __future__ import annotations

LEGACY_SQLITE_DDL = """
CREATE TABLE request_traces (
	id INTEGER NOT NULL,
	request_id VARCHAR(128) NOT NULL,
	time FLOAT NOT NULL,
	requested_model VARCHAR(256) NOT NULL,
	served_model VARCHAR(256),
	node_id VARCHAR(256),
	attempts INTEGER NOT NULL,
	score FLOAT,
	breakdown JSON NOT NULL,
	candidates JSON NOT NULL,
	eliminated JSON NOT NULL,
	status VARCHAR(16) NOT NULL,
	http_status INTEGER NOT NULL,
	latency_s FLOAT,
	ttft_s FLOAT,
	load_s FLOAT,
	tokens_per_s FLOAT,
	prompt_tokens INTEGER NOT NULL,
	completion_tokens INTEGER NOT NULL,
	retries INTEGER NOT NULL,
	fallback_used BOOLEAN NOT NULL,
	excluded_nodes JSON NOT NULL,
	tags JSON NOT NULL,
	client VARCHAR(256),
	dialect VARCHAR(16) NOT NULL,
	kind VARCHAR(32) NOT NULL,
	error VARCHAR,
	finish_reason VARCHAR(64),
	stream BOOLEAN NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_request_traces_request_id UNIQUE (request_id)
);
CREATE INDEX ix_request_traces_node_time ON request_traces (node_id, time);
CREATE INDEX ix_request_traces_served_model_time ON request_traces (served_model, time);
CREATE INDEX ix_request_traces_status_time ON request_traces (status, time);
CREATE INDEX ix_request_traces_time ON request_traces (time);
CREATE TABLE trace_tags (
	id INTEGER NOT NULL,
	request_id VARCHAR(128) NOT NULL,
	tag VARCHAR(64) NOT NULL,
	time FLOAT NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_trace_tags_request_tag UNIQUE (request_id, tag)
);
CREATE INDEX ix_trace_tags_tag_time ON trace_tags (tag, time);
CREATE TABLE latency_observations (
	id INTEGER NOT NULL,
	request_id VARCHAR(128),
	time FLOAT NOT NULL,
	node_id VARCHAR(256) NOT NULL,
	model VARCHAR(256) NOT NULL,
	latency_s FLOAT NOT NULL,
	ttft_s FLOAT,
	tokens_per_s FLOAT,
	load_s FLOAT,
	PRIMARY KEY (id),
	CONSTRAINT uq_latency_observations_request_id UNIQUE (request_id)
);
CREATE INDEX ix_latency_observations_node_model_time ON latency_observations (node_id, model, time);
CREATE INDEX ix_latency_observations_time ON latency_observations (time);
CREATE TABLE benchmark_runs (
	id INTEGER NOT NULL,
	name VARCHAR(256) NOT NULL,
	started_at FLOAT NOT NULL,
	finished_at FLOAT,
	params JSON NOT NULL,
	results JSON NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX ix_benchmark_runs_started_at ON benchmark_runs (started_at);
"""


def legacy_ddl(dialect: str) -> list[str]:
    """The statements, one by one, for ``sqlite`` or ``postgresql``."""
    ddl = LEGACY_SQLITE_DDL
    if dialect == "postgresql":
        ddl = ddl.replace("id INTEGER NOT NULL,", "id SERIAL NOT NULL,")
    return [s.strip() for s in ddl.split(";") if s.strip()]
