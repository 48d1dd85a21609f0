"""``DashboardService``: everything the Dash views and the JSON API read or change.

Built once in the Serve ingress: ``DashboardService(store, fleet)``, where ``store`` is a
:class:`herd.traces.store.TraceStore` and ``fleet`` implements :class:`dashboard.fleet.Fleet`
(the lead's adapter over the RouterActor; :class:`dashboard.fleet.StaticFleet` is an
in-memory one for tests and demos). ``clock`` (default ``time.time``) gives ``now``.

Sync or async
-------------
Methods that only read the database are **sync** (fast SQL; call them straight from Dash
callbacks, or via ``asyncio.to_thread`` from async code). Methods that need the live
fleet are **async** (the fleet is Ray underneath); Dash callbacks reach them through
``dashboard.bridge.SyncBridge``. The async methods run their own database reads in a
worker thread, so they never block the event loop. Bad arguments (hours out of
1..720, days out of 1..90, limit out of 1..1000, negative offset, unknown status or
toggle, empty model name) raise ``herd.errors.BadRequest``. All times are epoch seconds
(float, UTC); days are ``"YYYY-MM-DD"`` (UTC). Latencies are seconds; ``None`` means "no
data" (never NaN). Every return value is plain JSON-able data (dict / list / str / int /
float / bool / None).

Sync (database)
---------------
``overview(hours=24) -> dict``
    ``{"since", "until", "requests", "ok", "errors", "rejected", "disconnected",
    "error_rate" (0..1), "avg_latency_s", "p50_latency_s", "p95_latency_s", "avg_ttft_s",
    "prompt_tokens", "completion_tokens", "tokens_per_s" (mean completion tokens/s of ok
    requests), "retries", "fallbacks", "models" (distinct served), "nodes" (distinct),
    "apps" (distinct tags)}``
``trends(hours=24) -> list[dict]``  one row per hour, oldest first, zero-filled:
    ``{"hour" (epoch of the hour start), "label" ("YYYY-MM-DD HH:00"), "requests",
    "errors", "avg_latency_s", "avg_ttft_s", "prompt_tokens", "completion_tokens",
    "tokens_per_s"}``. ``hours`` in 1..720 (the views offer 24..168).
``models(hours=24) -> list[dict]``  one row per served model, most requests first:
    ``{"model", "requests", "errors", "error_rate", "avg_latency_s", "p50_latency_s",
    "p95_latency_s", "avg_ttft_s", "tokens_per_s", "prompt_tokens", "completion_tokens",
    "total_tokens", "token_share" (0..1 of all tokens: the doughnut), "nodes" [ids]}``
``model_daily(model, days=7) -> list[dict]``  one row per UTC day touching the range
    (so 7 days give 8 rows, the first and last partial), oldest first, zero-filled:
    ``{"day", "requests", "errors", "avg_latency_s", "p95_latency_s", "tokens_per_s",
    "prompt_tokens", "completion_tokens"}``
``usage(hours=24) -> dict``
    ``{"by_node_model": [{"node_id", "model", "requests", "errors", "prompt_tokens",
    "completion_tokens", "avg_latency_s"}], "by_day": [{"day", "node_id", "model",
    "requests", "prompt_tokens", "completion_tokens"}]}``
``apps(hours=24) -> list[dict]``  one row per tag (a request with two tags counts for both;
    untagged requests are one row with ``"tag": None``), most requests first:
    ``{"tag", "requests", "errors", "error_rate", "avg_latency_s", "p95_latency_s",
    "prompt_tokens", "completion_tokens", "models" [names]}``
``apps_daily(days=7) -> list[dict]``  ``{"day", "tag", "requests", "errors",
    "avg_latency_s", "prompt_tokens", "completion_tokens"}`` (tagged requests only)
``traces(model=None, node=None, status=None, tag=None, hours=None, limit=100, offset=0)
-> dict``  newest first: ``{"total", "limit", "offset", "items": [trace]}`` where a trace
    is :meth:`herd.traces.records.TraceRecord.to_dict` (all fields below, plus
    ``tokens_per_s``) without ``candidates`` / ``eliminated`` (see ``trace``). ``status`` is one of
    ``ok | error | rejected | disconnected``.
``trace(request_id) -> dict | None``  the full record plus ``"candidates"`` sorted by
    ``total`` descending, each ``{"node_id", "total", "breakdown": {signal: points},
    "winner": bool}`` and ``"eliminated": {node_id: reason}``.
    Record fields: request_id, attempts, time, requested_model, served_model, node_id,
    score, breakdown, candidates, eliminated, status, http_status, latency_s, ttft_s,
    load_s, prompt_tokens, completion_tokens, retries, fallback_used, excluded_nodes, tags,
    client, dialect, kind, error, finish_reason, stream.
``latency(node=None, model=None, hours=24, limit=1000) -> list[dict]``  latency
    observations, newest first: ``{"time", "node_id", "model", "latency_s", "ttft_s",
    "tokens_per_s", "load_s"}``
``benchmarks(limit=50) -> list[dict]``  newest first: ``{"id", "name", "started_at",
    "finished_at", "duration_s", "params", "summary"}`` where ``summary`` holds the
    scalar top-level entries of ``results`` (requests, requests_per_s, tokens_per_s,
    latency_p50_s, latency_p95_s, latency_p99_s, ttft_p50_s, errors, ...)
``benchmark(run_id) -> dict | None``  the same plus ``"results"`` (whole JSON, with
    ``"per_model": {model: {...}}`` and ``"per_node": {node: {...}}``)
``add_benchmark(run: dict) -> dict``  stores ``{"name"?, "started_at", "finished_at"?,
    "params"?: {}, "results": {}}``; returns ``{"id": int}``. Raises
    ``herd.errors.BadRequest`` on a malformed run.

Async (fleet)
-------------
``async live() -> dict``  what ``/dashboard/events`` pushes every ~2 s:
    ``fleet.status()`` (``{"nodes": [...], "queue": {"waiting", "in_flight"},
    "counters", "time"}``, see ``herd.routing.core.RouterCore.status``) plus
    ``"overview": overview(hours=1)``.
``async health() -> dict``  ``{"checked_at", "status": "healthy"|"warning"|"critical",
    "checks": [{"id", "severity": "ok"|"info"|"warning"|"critical", "title",
    "explanation", "action", "details": {...}}]}``; every check is listed, passing
    ones with severity ``ok``.
``async recommendations(refresh=False) -> dict``  cached 5 min:
    ``{"generated_at", "cached": bool, "nodes": [{"node_id", "hostname", "status",
    "memory_gb", "cpu_count", "budget_gb", "used_gb", "installed" [names],
    "recommended": [{"model", "size_gb", "role", "reason", "installed": bool,
    "loaded": bool, "requests": int}]}]}``
``async settings() -> dict``  ``{"toggles": {"auto_pull": bool, "vram_fallback": bool},
    "config": {category: {key: value}}, "nodes": [{"node_id", "hostname", "status",
    "herd_version", "backend", "backend_version", "is_router": bool}],
    "versions_consistent": bool}``
``async set_settings(changes: dict) -> dict``  only ``auto_pull`` / ``vram_fallback``
    (bool); anything else raises ``herd.errors.BadRequest``; returns ``settings()``.
``pull(model, node=None) -> AsyncIterator[dict]``  (an async generator) progress dicts
    as NDJSON lines from Ollama's pull (``{"status", "completed"?, "total"?, "node"?}``);
    a failure ends the stream with ``{"status": "error", "error": "..."}``.
``async model_management(days=30) -> dict``  ``{"nodes": [{"node_id", "hostname",
    "status", "memory_gb", "models": [{"name", "size", "size_gb", "loaded": bool,
    "requests", "last_used" (epoch|None), "avg_latency_s"}]}]}``
``async delete(model, node=None) -> dict``  passthrough from the fleet
    (``{"deleted": [node ids], "errors": {node: message}}``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from dashboard import queries as q
from dashboard import queries_traces as qt
from dashboard.fleet import TOGGLES, Fleet
from dashboard.health import Thresholds, run_checks
from dashboard.recommend import recommend
from herd.domain import canonical_model
from herd.errors import BadRequest
from herd.traces.records import TRACE_STATUSES
from herd.traces.store import TraceStore

HOUR = 3600.0
DAY = 86400.0
MAX_HOURS = 720
MAX_DAYS = 90
MAX_LIMIT = 1000


def _hours(hours: float) -> float:
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 1 <= hours <= MAX_HOURS:
        raise BadRequest(f"hours must be between 1 and {MAX_HOURS}")
    return float(hours)


def _days(days: float) -> float:
    if isinstance(days, bool) or not isinstance(days, int | float) or not 1 <= days <= MAX_DAYS:
        raise BadRequest(f"days must be between 1 and {MAX_DAYS}")
    return float(days)


def _model(model: str) -> str:
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise BadRequest("model must be a non-empty name")
    return model.strip()


class DashboardService:
    def __init__(
        self,
        store: TraceStore,
        fleet: Fleet,
        *,
        clock: Callable[[], float] = time.time,
        recommendations_ttl: float = 300.0,
        health_window_s: float = HOUR,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.clock = clock
        self.recommendations_ttl = recommendations_ttl
        self.health_window_s = health_window_s
        self.thresholds = thresholds or Thresholds()
        self._recommendations: tuple[float, dict[str, Any]] | None = None

    @property
    def db(self) -> Any:
        return self.store.engine

    def _range(self, seconds: float) -> tuple[float, float]:
        now = self.clock()
        return now - seconds, now

    # --- sync: the database ---------------------------------------------------------------
    def overview(self, hours: float = 24) -> dict[str, Any]:
        return q.overview(self.db, *self._range(_hours(hours) * HOUR))

    def trends(self, hours: float = 24) -> list[dict[str, Any]]:
        return q.trends(self.db, *self._range(_hours(hours) * HOUR))

    def models(self, hours: float = 24) -> list[dict[str, Any]]:
        return q.model_stats(self.db, *self._range(_hours(hours) * HOUR))

    def model_daily(self, model: str, days: float = 7) -> list[dict[str, Any]]:
        return q.model_daily(self.db, _model(model), *self._range(_days(days) * DAY))

    def usage(self, hours: float = 24) -> dict[str, Any]:
        return q.usage(self.db, *self._range(_hours(hours) * HOUR))

    def apps(self, hours: float = 24) -> list[dict[str, Any]]:
        return q.apps(self.db, *self._range(_hours(hours) * HOUR))

    def apps_daily(self, days: float = 7) -> list[dict[str, Any]]:
        return q.apps_daily(self.db, *self._range(_days(days) * DAY))

    def traces(
        self,
        model: str | None = None,
        node: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        hours: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        if status is not None and status not in TRACE_STATUSES:
            raise BadRequest(f"status must be one of {', '.join(TRACE_STATUSES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise BadRequest("offset must be 0 or more")
        since = None if hours is None else self.clock() - _hours(hours) * HOUR
        return qt.traces(
            self.db,
            since=since,
            model=model or None,
            node=node or None,
            status=status,
            tag=tag or None,
            limit=limit,
            offset=offset,
        )

    def trace(self, request_id: str) -> dict[str, Any] | None:
        return qt.trace(self.db, request_id)

    def latency(
        self,
        node: str | None = None,
        model: str | None = None,
        hours: float = 24,
        limit: int = MAX_LIMIT,
    ) -> list[dict[str, Any]]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
        since, until = self._range(_hours(hours) * HOUR)
        return qt.latency_observations(
            self.db, since, until, node=node or None, model=model or None, limit=limit
        )

    def benchmarks(self, limit: int = 50) -> list[dict[str, Any]]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
        return qt.benchmarks(self.db, limit)

    def benchmark(self, run_id: int) -> dict[str, Any] | None:
        return qt.benchmark(self.db, run_id)

    def add_benchmark(self, run: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": self.store.add_benchmark(run, now=self.clock())}

    # --- async: the live fleet ------------------------------------------------------------
    async def live(self) -> dict[str, Any]:
        status = await self.fleet.status()
        status["overview"] = await asyncio.to_thread(self.overview, 1)
        return status

    async def health(self) -> dict[str, Any]:
        status = await self.fleet.status()
        since, until = self._range(self.health_window_s)
        traffic = await asyncio.to_thread(qt.health_inputs, self.db, since, until)
        return run_checks(status, traffic, until, self.thresholds)

    async def recommendations(self, refresh: bool = False) -> dict[str, Any]:
        now = self.clock()
        cached = self._recommendations
        if not refresh and cached is not None and now - cached[0] < self.recommendations_ttl:
            return {**cached[1], "cached": True}
        status = await self.fleet.status()
        models = await asyncio.to_thread(self.models, 168)
        usage = {m["model"]: m["requests"] for m in models}
        result = recommend(status, usage, now)
        self._recommendations = (now, result)
        return result

    def invalidate_recommendations(self) -> None:
        self._recommendations = None

    async def settings(self) -> dict[str, Any]:
        toggles, config, status = await asyncio.gather(
            self.fleet.toggles(), self.fleet.settings(), self.fleet.status()
        )
        router_id = status.get("router_node_id")
        nodes = [
            {
                "node_id": n.get("node_id"),
                "hostname": n.get("hostname"),
                "status": n.get("status"),
                "herd_version": n.get("herd_version") or "",
                "backend": (n.get("backend") or "") + (" (remote)" if n.get("remote") else ""),
                "backend_version": n.get("backend_version") or "",
                "is_router": bool(n.get("is_router")) or n.get("node_id") == router_id,
            }
            for n in status.get("nodes") or []
        ]
        versions = {n["herd_version"] for n in nodes if n["status"] != "offline"}
        return {
            "toggles": {k: bool(toggles.get(k)) for k in TOGGLES},
            "config": config,
            "nodes": nodes,
            "versions_consistent": len(versions - {""}) <= 1,
        }

    async def set_settings(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, Mapping) or not changes:
            raise BadRequest(f"send a JSON object with any of: {', '.join(TOGGLES)}")
        unknown = sorted(set(changes) - set(TOGGLES))
        if unknown:
            raise BadRequest(f"not a runtime toggle: {', '.join(unknown)}")
        bad = sorted(k for k, v in changes.items() if not isinstance(v, bool))
        if bad:
            raise BadRequest(f"toggles take true or false: {', '.join(bad)}")
        await self.fleet.set_toggles(dict(changes))
        return await self.settings()

    async def pull(self, model: str, node: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Progress events; a failure ends the stream with ``{"status": "error", ...}``."""
        name = _model(model)
        try:
            async for event in self.fleet.pull(name, node or None):
                yield dict(event)
        except Exception as exc:
            yield {"status": "error", "error": str(exc) or type(exc).__name__, "model": name}
        finally:
            self.invalidate_recommendations()

    async def model_management(self, days: float = 30) -> dict[str, Any]:
        status = await self.fleet.status()
        since, until = self._range(_days(days) * DAY)
        usage = await asyncio.to_thread(qt.model_usage, self.db, since, until)
        return {
            "nodes": [
                _node_models(n, usage.get(n.get("node_id"), {})) for n in status.get("nodes") or []
            ]
        }

    async def delete(self, model: str, node: str | None = None) -> dict[str, Any]:
        result = await self.fleet.delete(_model(model), node or None)
        self.invalidate_recommendations()
        return result


def _node_models(node: Mapping[str, Any], usage: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    gb = 1024**3
    sizes: dict[str, int] = {}
    for m in node.get("model_details") or []:
        sizes[canonical_model(m["name"])] = int(m.get("size") or 0)
    loaded = {}
    for m in node.get("loaded_models") or []:
        loaded[canonical_model(m["name"])] = int(m.get("size") or 0)
    names = list(
        dict.fromkeys(
            [*(node.get("models") or []), *(m["name"] for m in node.get("loaded_models") or [])]
        )
    )
    by_key = {canonical_model(k): v for k, v in usage.items()}
    models = []
    for name in names:
        key = canonical_model(name)
        size = sizes.get(key) or loaded.get(key) or 0
        used = by_key.get(key, {})
        models.append(
            {
                "name": name,
                "size": size,
                "size_gb": round(size / gb, 2),
                "loaded": key in loaded,
                "requests": int(used.get("requests", 0)),
                "last_used": used.get("last_used"),
                "avg_latency_s": used.get("avg_latency_s"),
            }
        )
    models.sort(key=lambda m: (-m["requests"], m["name"]))
    return {
        "node_id": node.get("node_id"),
        "hostname": node.get("hostname"),
        "status": node.get("status"),
        "memory_gb": round((node.get("memory_total") or 0) / gb, 1),
        "models": models,
    }
