"""Dashboard queries over single traces, benchmark runs, latency observations, and the
aggregates the health checks and model management read. Same rules as
:mod:`dashboard.queries` (pure functions, ``db`` is an Engine / Connection / Session)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, case, func, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from dashboard.queries import (
    IS_ERROR,
    TRACES,
    TT,
    Db,
    T,
    _r,
    connect,
    model_expr,
    percentile,
)
from herd.traces.tables import BenchmarkRun, LatencyObservation

BENCH = BenchmarkRun.__table__.c  # type: ignore[attr-defined]
OBS = LatencyObservation.__table__.c  # type: ignore[attr-defined]

SUMMARY_COLUMNS = [c for c in T if c.name not in ("id", "candidates", "eliminated")]


def _trace_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out.pop("id", None)
    for key in ("tags", "excluded_nodes"):
        out[key] = list(out.get(key) or [])
    out["breakdown"] = dict(out.get("breakdown") or {})
    return out


def traces(
    db: Db,
    *,
    since: float | None = None,
    until: float | None = None,
    model: str | None = None,
    node: str | None = None,
    status: str | None = None,
    tag: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """Newest first; ``total`` counts every match, ``items`` holds one page."""
    where: list[ColumnElement[bool]] = []
    if since is not None:
        where.append(T.time >= since)
    if until is not None:
        where.append(T.time < until)
    if model:
        where.append(or_(T.served_model == model, T.requested_model == model))
    if node:
        where.append(T.node_id == node)
    if status:
        where.append(T.status == status)
    if tag:
        where.append(T.request_id.in_(select(TT.request_id).where(TT.tag == tag)))
    cond = and_(true(), *where)
    with connect(db) as conn:
        total = conn.execute(select(func.count()).select_from(TRACES).where(cond))
        total_n = int(total.scalar_one())
        rows = conn.execute(
            select(*SUMMARY_COLUMNS)
            .where(cond)
            .order_by(T.time.desc(), T.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
    return {
        "total": total_n,
        "limit": limit,
        "offset": offset,
        "items": [_trace_dict(r) for r in rows],
    }


def trace(db: Db, request_id: str) -> dict[str, Any] | None:
    """One trace with every candidate's score breakdown, best first, and the eliminated."""
    with connect(db) as conn:
        row = conn.execute(
            select(*[c for c in T if c.name != "id"]).where(T.request_id == request_id)
        ).first()
    if row is None:
        return None
    out = _trace_dict(row)
    candidates = []
    for c in out.get("candidates") or []:
        if not isinstance(c, dict):
            continue
        candidates.append(
            {
                "node_id": c.get("node_id"),
                "total": c.get("total"),
                "breakdown": dict(c.get("breakdown") or {}),
                "winner": c.get("node_id") == out.get("node_id"),
            }
        )
    candidates.sort(key=lambda c: -(c["total"] if isinstance(c["total"], int | float) else 0))
    out["candidates"] = candidates
    out["eliminated"] = dict(out.get("eliminated") or {})
    return out


# --- benchmarks ------------------------------------------------------------------------------
def _run_dict(row: Any, with_results: bool) -> dict[str, Any]:
    results = dict(row.results or {})
    finished = row.finished_at
    out: dict[str, Any] = {
        "id": int(row.id),
        "name": row.name,
        "started_at": row.started_at,
        "finished_at": finished,
        "duration_s": _r(finished - row.started_at) if finished is not None else None,
        "params": dict(row.params or {}),
        "summary": {
            k: v for k, v in results.items() if isinstance(v, int | float | str | bool) or v is None
        },
    }
    if with_results:
        out["results"] = results
    return out


def benchmarks(db: Db, limit: int = 50) -> list[dict[str, Any]]:
    with connect(db) as conn:
        rows = conn.execute(
            select(BENCH).order_by(BENCH.started_at.desc(), BENCH.id.desc()).limit(limit)
        ).all()
    return [_run_dict(r, with_results=False) for r in rows]


def benchmark(db: Db, run_id: int) -> dict[str, Any] | None:
    with connect(db) as conn:
        row = conn.execute(select(BENCH).where(BENCH.id == run_id)).first()
    return None if row is None else _run_dict(row, with_results=True)


# --- latency observations --------------------------------------------------------------------
def latency_observations(
    db: Db,
    since: float,
    until: float,
    *,
    node: str | None = None,
    model: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    where = [OBS.time >= since, OBS.time < until]
    if node:
        where.append(OBS.node_id == node)
    if model:
        where.append(OBS.model == model)
    with connect(db) as conn:
        rows = conn.execute(
            select(
                OBS.time,
                OBS.node_id,
                OBS.model,
                OBS.latency_s,
                OBS.ttft_s,
                OBS.tokens_per_s,
                OBS.load_s,
            )
            .where(*where)
            .order_by(OBS.time.desc(), OBS.id.desc())
            .limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]


# --- inputs of health checks and model management --------------------------------------------
TIMEOUT = or_(
    T.http_status == 504,
    func.lower(func.coalesce(T.error, "")).like("%timeout%"),
    func.lower(func.coalesce(T.error, "")).like("%timed out%"),
)


def health_inputs(db: Db, since: float, until: float, cold_load_s: float = 2.0) -> dict[str, Any]:
    """What the health checks read from traces in the window.

    ``{"window_s", "requests", "errors", "rejected_503", "timeouts", "disconnected",
    "retries", "fallbacks", "nodes": {node: {"requests", "errors", "timeouts",
    "retries", "cold_loads"}}, "cold_loads": {node: {model: n}},
    "p95_latency_s"}``; a cold load is a request whose model load took ``cold_load_s``+.
    """
    where = and_(T.time >= since, T.time < until)
    is_cold = and_(T.load_s.is_not(None), T.load_s >= cold_load_s)
    per_node = [
        func.count().label("requests"),
        func.sum(case((IS_ERROR, 1), else_=0)).label("errors"),
        func.sum(case((TIMEOUT, 1), else_=0)).label("timeouts"),
        func.coalesce(func.sum(T.retries), 0).label("retries"),
        func.sum(case((is_cold, 1), else_=0)).label("cold_loads"),
    ]
    with connect(db) as conn:
        totals = conn.execute(
            select(
                *per_node,
                func.sum(case((T.http_status == 503, 1), else_=0)).label("rejected_503"),
                func.sum(case((T.status == "disconnected", 1), else_=0)).label("disconnected"),
                func.sum(case((T.fallback_used, 1), else_=0)).label("fallbacks"),
            ).where(where)
        ).one()
        nodes = conn.execute(
            select(T.node_id, *per_node).where(where, T.node_id.is_not(None)).group_by(T.node_id)
        ).all()
        cold = conn.execute(
            select(T.node_id, model_expr.label("model"), func.count().label("n"))
            .where(where, is_cold, T.node_id.is_not(None))
            .group_by(T.node_id, model_expr)
        ).all()
        lat = [
            float(v)
            for (v,) in conn.execute(
                select(T.latency_s).where(where, T.status == "ok", T.latency_s.is_not(None))
            )
        ]
    cold_loads: dict[str, dict[str, int]] = defaultdict(dict)
    for r in cold:
        cold_loads[r.node_id][r.model] = int(r.n)
    return {
        "window_s": until - since,
        "requests": int(totals.requests or 0),
        "errors": int(totals.errors or 0),
        "timeouts": int(totals.timeouts or 0),
        "retries": int(totals.retries or 0),
        "rejected_503": int(totals.rejected_503 or 0),
        "disconnected": int(totals.disconnected or 0),
        "fallbacks": int(totals.fallbacks or 0),
        "p95_latency_s": _r(percentile(lat, 95)),
        "nodes": {
            r.node_id: {
                "requests": int(r.requests or 0),
                "errors": int(r.errors or 0),
                "timeouts": int(r.timeouts or 0),
                "retries": int(r.retries or 0),
                "cold_loads": int(r.cold_loads or 0),
            }
            for r in nodes
        },
        "cold_loads": dict(cold_loads),
    }


def model_usage(db: Db, since: float, until: float) -> dict[str, dict[str, dict[str, Any]]]:
    """``{node: {model: {"requests", "last_used", "avg_latency_s"}}}`` (served requests)."""
    with connect(db) as conn:
        rows = conn.execute(
            select(
                T.node_id,
                model_expr.label("model"),
                func.count().label("requests"),
                func.max(T.time).label("last_used"),
                func.avg(case((T.status == "ok", T.latency_s))).label("avg_latency_s"),
            )
            .where(T.time >= since, T.time < until, T.node_id.is_not(None))
            .group_by(T.node_id, model_expr)
        ).all()
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        out[r.node_id][r.model] = {
            "requests": int(r.requests),
            "last_used": float(r.last_used) if r.last_used is not None else None,
            "avg_latency_s": _r(r.avg_latency_s),
        }
    return dict(out)
