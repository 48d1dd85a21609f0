"""SQL and aggregation for the dashboard: pure functions over the trace database.

Every function takes ``db`` (a SQLAlchemy ``Engine``, ``Connection`` or ORM ``Session``),
a time range ``since <= time < until`` in epoch seconds and returns plain JSON-able
dicts / lists. They work on SQLite and PostgreSQL: grouping and sums run in SQL (time
buckets are dialect-aware), percentiles are computed in Python over the fetched
latencies of each group (:func:`percentile`, linear interpolation).

Counting rules, used everywhere: ``errors`` are requests with status ``error`` or
``rejected`` (a client that went away is ``disconnected``, not an error); latencies,
time to first token and tokens/s average over ``ok`` requests only; token sums cover
every request. A model is the served model, or the requested one when nothing served it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Integer, and_, case, cast, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from herd.traces.tables import RequestTrace, TraceTag

HOUR = 3600
DAY = 86400
Db = Engine | Connection | Session

TRACES = RequestTrace.__table__  # type: ignore[attr-defined]
TAGS = TraceTag.__table__  # type: ignore[attr-defined]
T = TRACES.c
TT = TAGS.c


@contextmanager
def connect(db: Db) -> Iterator[Connection]:
    if isinstance(db, Engine):
        with db.connect() as conn:
            yield conn
    elif isinstance(db, Session):
        yield db.connection()
    else:
        yield db


# --- small helpers -----------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` (0..100) percentile of ``values`` with linear interpolation; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def bucket(col: Any, size: int, dialect: str) -> ColumnElement[Any]:
    """``floor(col / size)`` as an integer, on every dialect (SQLite has no ``floor``)."""
    if dialect == "sqlite":
        return cast(col / size, Integer)  # times are positive: truncation is floor
    return cast(func.floor(col / size), Integer)


def day_label(day_index: int) -> str:
    return datetime.fromtimestamp(day_index * DAY, tz=UTC).strftime("%Y-%m-%d")


def hour_label(hour_index: int) -> str:
    return datetime.fromtimestamp(hour_index * HOUR, tz=UTC).strftime("%Y-%m-%d %H:00")


def _r(value: Any, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _in_range(since: float, until: float) -> ColumnElement[bool]:
    return and_(T.time >= since, T.time < until)


model_expr = func.coalesce(T.served_model, T.requested_model)
IS_ERROR = T.status.in_(("error", "rejected"))
OK_LATENCY = case((T.status == "ok", T.latency_s))
OK_TTFT = case((T.status == "ok", T.ttft_s))


def _stat_columns() -> list[Any]:
    """The aggregate columns most views share."""
    return [
        func.count().label("requests"),
        func.sum(case((IS_ERROR, 1), else_=0)).label("errors"),
        func.avg(OK_LATENCY).label("avg_latency_s"),
        func.avg(OK_TTFT).label("avg_ttft_s"),
        func.avg(T.tokens_per_s).label("tokens_per_s"),
        func.coalesce(func.sum(T.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(T.completion_tokens), 0).label("completion_tokens"),
    ]


def _stats(row: Any) -> dict[str, Any]:
    requests = int(row.requests or 0)
    errors = int(row.errors or 0)
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "avg_latency_s": _r(row.avg_latency_s),
        "avg_ttft_s": _r(row.avg_ttft_s),
        "tokens_per_s": _r(row.tokens_per_s, 2),
        "prompt_tokens": int(row.prompt_tokens or 0),
        "completion_tokens": int(row.completion_tokens or 0),
    }


def _latencies(conn: Connection, key: Any, where: ColumnElement[bool]) -> dict[Any, list[float]]:
    """Latencies of ok requests grouped by ``key`` (for percentiles)."""
    stmt = select(key, T.latency_s).where(where, T.status == "ok", T.latency_s.is_not(None))
    out: dict[Any, list[float]] = defaultdict(list)
    for k, latency in conn.execute(stmt):
        out[k].append(float(latency))
    return out


# --- overview and trends -------------------------------------------------------------------
def overview(db: Db, since: float, until: float) -> dict[str, Any]:
    where = _in_range(since, until)
    with connect(db) as conn:
        row = conn.execute(
            select(
                *_stat_columns(),
                func.sum(case((T.status == "ok", 1), else_=0)).label("ok"),
                func.sum(case((T.status == "rejected", 1), else_=0)).label("rejected"),
                func.sum(case((T.status == "disconnected", 1), else_=0)).label("disconnected"),
                func.coalesce(func.sum(T.retries), 0).label("retries"),
                func.sum(case((T.fallback_used, 1), else_=0)).label("fallbacks"),
                func.count(func.distinct(T.served_model)).label("models"),
                func.count(func.distinct(T.node_id)).label("nodes"),
            ).where(where)
        ).one()
        latencies = _latencies(conn, T.status, where).get("ok", [])
        apps = conn.execute(
            select(func.count(func.distinct(TT.tag))).where(TT.time >= since, TT.time < until)
        ).scalar_one()
    stats = _stats(row)
    errors = stats.pop("errors")
    return {
        "since": since,
        "until": until,
        **stats,
        "errors": errors,
        "ok": int(row.ok or 0),
        "rejected": int(row.rejected or 0),
        "disconnected": int(row.disconnected or 0),
        "p50_latency_s": _r(percentile(latencies, 50)),
        "p95_latency_s": _r(percentile(latencies, 95)),
        "retries": int(row.retries or 0),
        "fallbacks": int(row.fallbacks or 0),
        "models": int(row.models or 0),
        "nodes": int(row.nodes or 0),
        "apps": int(apps or 0),
    }


def trends(db: Db, since: float, until: float) -> list[dict[str, Any]]:
    """One row per hour from ``since`` to ``until``, oldest first, empty hours included."""
    with connect(db) as conn:
        hour = bucket(T.time, HOUR, conn.dialect.name).label("hour")
        rows = conn.execute(
            select(hour, *_stat_columns()).where(_in_range(since, until)).group_by(hour)
        ).all()
    by_hour = {int(r.hour): _stats(r) for r in rows}
    out = []
    for h in range(int(since // HOUR), math.ceil(until / HOUR)):
        stats = by_hour.get(h) or _stats(_EMPTY)
        stats.pop("error_rate")
        out.append({"hour": h * HOUR, "label": hour_label(h), **stats})
    return out


class _Empty:
    requests = errors = prompt_tokens = completion_tokens = 0
    avg_latency_s = avg_ttft_s = tokens_per_s = None


_EMPTY = _Empty()


# --- models --------------------------------------------------------------------------------
def model_stats(db: Db, since: float, until: float) -> list[dict[str, Any]]:
    where = _in_range(since, until)
    with connect(db) as conn:
        rows = conn.execute(
            select(model_expr.label("model"), *_stat_columns()).where(where).group_by(model_expr)
        ).all()
        latencies = _latencies(conn, model_expr, where)
        node_rows = conn.execute(
            select(model_expr, T.node_id).where(where, T.node_id.is_not(None)).distinct()
        ).all()
    nodes: dict[str, list[str]] = defaultdict(list)
    for model, node in node_rows:
        nodes[model].append(node)
    total_tokens = sum(int(r.prompt_tokens or 0) + int(r.completion_tokens or 0) for r in rows)
    out = []
    for r in rows:
        stats = _stats(r)
        lat = latencies.get(r.model, [])
        tokens = stats["prompt_tokens"] + stats["completion_tokens"]
        out.append(
            {
                "model": r.model,
                **stats,
                "p50_latency_s": _r(percentile(lat, 50)),
                "p95_latency_s": _r(percentile(lat, 95)),
                "total_tokens": tokens,
                "token_share": round(tokens / total_tokens, 4) if total_tokens else 0.0,
                "nodes": sorted(nodes.get(r.model, [])),
            }
        )
    out.sort(key=lambda m: (-m["requests"], m["model"]))
    return out


def model_daily(db: Db, model: str, since: float, until: float) -> list[dict[str, Any]]:
    """One row per UTC day of ``model``, oldest first, empty days included."""
    with connect(db) as conn:
        day = bucket(T.time, DAY, conn.dialect.name).label("day")
        where = and_(_in_range(since, until), model_expr == model)
        rows = conn.execute(select(day, *_stat_columns()).where(where).group_by(day)).all()
        latencies = _latencies(conn, bucket(T.time, DAY, conn.dialect.name), where)
    by_day = {int(r.day): r for r in rows}
    out = []
    for d in range(int(since // DAY), math.ceil(until / DAY)):
        stats = _stats(by_day.get(d, _EMPTY))
        stats.pop("error_rate")
        stats.pop("avg_ttft_s")
        out.append(
            {
                "day": day_label(d),
                **stats,
                "p95_latency_s": _r(percentile(latencies.get(d, []), 95)),
            }
        )
    return out


# --- usage and apps ------------------------------------------------------------------------
def usage(db: Db, since: float, until: float) -> dict[str, Any]:
    where = and_(_in_range(since, until), T.node_id.is_not(None))
    with connect(db) as conn:
        pairs = conn.execute(
            select(T.node_id, model_expr.label("model"), *_stat_columns())
            .where(where)
            .group_by(T.node_id, model_expr)
        ).all()
        day = bucket(T.time, DAY, conn.dialect.name).label("day")
        daily = conn.execute(
            select(
                day,
                T.node_id,
                model_expr.label("model"),
                func.count().label("requests"),
                func.coalesce(func.sum(T.prompt_tokens), 0).label("prompt_tokens"),
                func.coalesce(func.sum(T.completion_tokens), 0).label("completion_tokens"),
            )
            .where(where)
            .group_by(day, T.node_id, model_expr)
        ).all()
    by_node_model = []
    for r in pairs:
        stats = _stats(r)
        by_node_model.append(
            {
                "node_id": r.node_id,
                "model": r.model,
                "requests": stats["requests"],
                "errors": stats["errors"],
                "prompt_tokens": stats["prompt_tokens"],
                "completion_tokens": stats["completion_tokens"],
                "avg_latency_s": stats["avg_latency_s"],
            }
        )
    by_node_model.sort(key=lambda x: (-x["requests"], x["node_id"], x["model"]))
    by_day = [
        {
            "day": day_label(int(r.day)),
            "node_id": r.node_id,
            "model": r.model,
            "requests": int(r.requests),
            "prompt_tokens": int(r.prompt_tokens),
            "completion_tokens": int(r.completion_tokens),
        }
        for r in daily
    ]
    by_day.sort(key=lambda x: (x["day"], x["node_id"], x["model"]))
    return {"by_node_model": by_node_model, "by_day": by_day}


def apps(db: Db, since: float, until: float) -> list[dict[str, Any]]:
    """Per tag (a request with two tags counts for both); untagged requests as tag None."""
    where = _in_range(since, until)
    joined = T.request_id == TT.request_id
    with connect(db) as conn:
        tagged = conn.execute(
            select(TT.tag, *_stat_columns())
            .select_from(TRACES.join(TAGS, joined))
            .where(where)
            .group_by(TT.tag)
        ).all()
        untagged = conn.execute(
            select(*_stat_columns())
            .select_from(TRACES.outerjoin(TAGS, joined))
            .where(where, TT.tag.is_(None))
        ).one()
        lat_rows = conn.execute(
            select(TT.tag, T.latency_s)
            .select_from(TRACES.outerjoin(TAGS, joined))
            .where(where, T.status == "ok", T.latency_s.is_not(None))
        ).all()
        model_rows = conn.execute(
            select(TT.tag, model_expr)
            .select_from(TRACES.outerjoin(TAGS, joined))
            .where(where)
            .distinct()
        ).all()
    latencies: dict[str | None, list[float]] = defaultdict(list)
    for tag, latency in lat_rows:
        latencies[tag].append(float(latency))
    models: dict[str | None, list[str]] = defaultdict(list)
    for tag, model in model_rows:
        models[tag].append(model)
    rows: list[tuple[str | None, Any]] = [(r.tag, r) for r in tagged]
    if untagged.requests:
        rows.append((None, untagged))
    out = []
    for tag, r in rows:
        stats = _stats(r)
        stats.pop("avg_ttft_s")
        stats.pop("tokens_per_s")
        out.append(
            {
                "tag": tag,
                **stats,
                "p95_latency_s": _r(percentile(latencies.get(tag, []), 95)),
                "models": sorted(models.get(tag, [])),
            }
        )
    out.sort(key=lambda a: (-a["requests"], a["tag"] is None, a["tag"] or ""))
    return out


def apps_daily(db: Db, since: float, until: float) -> list[dict[str, Any]]:
    joined = T.request_id == TT.request_id
    with connect(db) as conn:
        day = bucket(T.time, DAY, conn.dialect.name).label("day")
        rows = conn.execute(
            select(day, TT.tag, *_stat_columns())
            .select_from(TRACES.join(TAGS, joined))
            .where(_in_range(since, until))
            .group_by(day, TT.tag)
        ).all()
    out = []
    for r in rows:
        stats = _stats(r)
        out.append(
            {
                "day": day_label(int(r.day)),
                "tag": r.tag,
                "requests": stats["requests"],
                "errors": stats["errors"],
                "avg_latency_s": stats["avg_latency_s"],
                "prompt_tokens": stats["prompt_tokens"],
                "completion_tokens": stats["completion_tokens"],
            }
        )
    out.sort(key=lambda a: (a["day"], a["tag"]))
    return out
