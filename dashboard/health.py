"""Automated fleet health checks (pure): each says what is wrong, why it matters, what to do.

Inputs: ``status``, the fleet status dict (``herd.routing.core.RouterCore.status``: nodes,
queue, counters, recent router ``events``), and ``traffic``, the trace aggregates of the
recent window (``dashboard.queries_traces.health_inputs``). :func:`run_checks` runs every
check and returns ``{"checked_at", "status", "checks"}``; each check is
``{"id", "severity", "title", "explanation", "action", "details"}`` with severity
``ok`` (passing), ``info``, ``warning`` or ``critical``.

Router events read (by ``kind``): ``zombie_reaped``, ``context_protection`` (any event
whose kind starts with ``context``: ``num_ctx`` stripped, upgraded or warned about). The
failure memory's pairs are read from each node's ``failures`` and the ``cooled_down`` /
``readmitted`` counters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SEVERITY_ORDER = {"ok": 0, "info": 1, "warning": 2, "critical": 3}


@dataclass(frozen=True, slots=True)
class Thresholds:
    error_rate_warn: float = 0.05
    error_rate_critical: float = 0.25
    min_requests: int = 10  # rates below this many requests are not judged
    node_error_rate: float = 0.2
    timeout_rate_critical: float = 0.1
    retry_rate_warn: float = 0.1
    cold_loads_per_node: int = 5  # per window: the node keeps swapping models
    cold_loads_per_model: int = 3  # the same model reloaded this often on one node
    disconnect_rate_info: float = 0.1
    memory_available_low: float = 0.1  # fraction of total


def _check(
    id: str,
    severity: str,
    title: str,
    explanation: str,
    action: str,
    **details: Any,
) -> dict[str, Any]:
    return {
        "id": id,
        "severity": severity,
        "title": title,
        "explanation": explanation,
        "action": action,
        "details": details,
    }


def _ok(id: str, title: str, explanation: str) -> dict[str, Any]:
    return _check(id, "ok", title, explanation, "Nothing to do.")


def _nodes(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(status.get("nodes") or [])


def _online(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [n for n in _nodes(status) if n.get("status") != "offline"]


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _count(data: Mapping[str, Any], key: str) -> int:
    return int(data.get(key) or 0)


def _flagged_nodes(
    id: str,
    nodes: list[str],
    ok: tuple[str, str],
    severity: str,
    title: str,
    explanation: str,
    action: str,
) -> dict[str, Any]:
    """A check about the ``nodes`` listed (passing when none is): ``ok`` is the passing
    check's title and explanation; ``{n}`` in ``title`` is the number of nodes."""
    if not nodes:
        return _ok(id, *ok)
    return _check(id, severity, title.format(n=len(nodes)), explanation, action, nodes=nodes)


# --- fleet state ------------------------------------------------------------------------------
def check_nodes_present(status: Mapping[str, Any], _t: Mapping[str, Any], _th: Thresholds) -> dict:
    if _nodes(status):
        return _ok("no_nodes", "Nodes registered", f"{len(_nodes(status))} node(s) known.")
    return _check(
        "no_nodes", "critical", "No nodes in the fleet",
        "The router knows no node, so every request fails with 404 or 503.",
        "Run `herd deploy` on each device (after `ray start --address=HEAD:6379`).",
    )  # fmt: skip


def check_offline(status: Mapping[str, Any], _t: Mapping[str, Any], _th: Thresholds) -> dict:
    nodes = _nodes(status)
    offline = [n["node_id"] for n in nodes if n.get("status") == "offline"]
    return _flagged_nodes(
        "offline_nodes", offline, ("All nodes online", "Every node sent a recent heartbeat."),
        "critical" if len(offline) == len(nodes) else "warning", "{n} node(s) offline",
        "These nodes stopped sending heartbeats; the router sends them nothing, so the "
        "fleet has less capacity and fewer models.",
        "Check that the device is awake and on the network, that its Ray node is alive "
        "(`ray status`) and restart `herd deploy` there.",
    )  # fmt: skip


def check_degraded(status: Mapping[str, Any], _t: Mapping[str, Any], _th: Thresholds) -> dict:
    degraded = [n["node_id"] for n in _nodes(status) if n.get("status") == "degraded"]
    return _flagged_nodes(
        "degraded_nodes", degraded, ("Heartbeats on time", "No node is late with heartbeats."),
        "warning", "{n} node(s) late with heartbeats",
        "Heartbeats from these nodes are overdue (FLEET_HEARTBEAT_TIMEOUT); the router "
        "avoids them and marks them offline after FLEET_HEARTBEAT_OFFLINE.",
        "Look for a saturated CPU, a sleeping laptop or a flaky network on those devices.",
    )  # fmt: skip


def check_backends(status: Mapping[str, Any], _t: Mapping[str, Any], _th: Thresholds) -> dict:
    down = [n["node_id"] for n in _online(status) if n.get("backend_ok") is False]
    return _flagged_nodes(
        "backend_down", down, ("Backends answering", "Every online node's backend answers."),
        "critical", "Backend not answering on {n} node(s)",
        "The node agent is alive but its local Ollama (or llama.cpp) does not answer, so "
        "the node cannot serve.",
        "Start or restart Ollama on those devices (`ollama serve`); check FLEET_NODE_OLLAMA_HOST.",
    )  # fmt: skip


def check_memory(status: Mapping[str, Any], _t: Mapping[str, Any], th: Thresholds) -> dict:
    critical, warn = [], []
    for n in _online(status):
        total = n.get("memory_total") or 0
        low = total and (n.get("memory_available") or 0) / total < th.memory_available_low
        if n.get("memory_pressure") == "critical":
            critical.append(n["node_id"])
        elif n.get("memory_pressure") == "warn" or low:
            warn.append(n["node_id"])
    if not critical and not warn:
        return _ok("memory_pressure", "Memory healthy", "No node is short of memory.")
    return _check(
        "memory_pressure", "critical" if critical else "warning",
        f"Memory pressure on {len(critical) + len(warn)} node(s)",
        "Nodes under critical memory pressure are eliminated from routing; under pressure "
        "models get evicted and reloaded, which is slow.",
        "Unload models you do not need (`ollama stop MODEL`), lower OLLAMA_NUM_PARALLEL "
        "(its KV cache is per slot) or move big models to bigger machines.",
        critical=critical, warn=warn,
    )  # fmt: skip


def check_versions(status: Mapping[str, Any], _t: Mapping[str, Any], _th: Thresholds) -> dict:
    nodes = _online(status)
    herd = {n["node_id"]: n.get("herd_version") or "?" for n in nodes}
    backend = {n["node_id"]: n.get("backend_version") or "?" for n in nodes}
    herd_set = sorted({v for v in herd.values() if v != "?"})
    backend_set = sorted({v for v in backend.values() if v != "?"})
    if len(herd_set) > 1:
        finding = (
            "warning", "herd versions differ across nodes",
            "Nodes run different herd versions; heartbeats or the wire format may disagree.",
            "Update every device to the same herd version and re-run `herd deploy`.",
        )  # fmt: skip
    elif len(backend_set) > 1:
        finding = (
            "info", "Ollama versions differ across nodes",
            "Different Ollama versions can differ in model support and API behaviour.",
            "Upgrade Ollama on the older devices.",
        )  # fmt: skip
    else:
        return _ok("version_mismatch", "Versions consistent", "All nodes run the same versions.")
    return _check("version_mismatch", *finding, herd_versions=herd, backend_versions=backend)


def check_queue(status: Mapping[str, Any], traffic: Mapping[str, Any], _th: Thresholds) -> dict:
    queue = status.get("queue") or {}
    waiting = _count(queue, "waiting")
    capacity = sum(int(n.get("num_parallel") or 1) for n in _online(status))
    in_flight = sum(int(n.get("in_flight") or 0) for n in _online(status))
    rejected = _count(traffic, "rejected_503")
    if rejected:
        severity = "critical"
    elif waiting or (capacity and in_flight >= capacity):
        severity = "warning"
    else:
        return _ok("queue_saturation", "Queues have room", f"{in_flight}/{capacity} slots busy.")
    return _check(
        "queue_saturation", severity, "Request queues saturated",
        f"{in_flight} of {capacity} parallel slots are busy and {waiting} request(s) wait in "
        f"the holding queue; {rejected} request(s) got 503 recently after waiting too long.",
        "Add a node, raise OLLAMA_NUM_PARALLEL where memory allows, or spread traffic over "
        "more models with fallback_models.",
        waiting=waiting, in_flight=in_flight, capacity=capacity, rejected_503=rejected,
    )  # fmt: skip


# --- traffic --------------------------------------------------------------------------------
def check_thrashing(_s: Mapping[str, Any], traffic: Mapping[str, Any], th: Thresholds) -> dict:
    cold: Mapping[str, Mapping[str, int]] = traffic.get("cold_loads") or {}
    nodes = {n: sum(m.values()) for n, m in cold.items()}
    hot = {
        n: total
        for n, total in nodes.items()
        if total >= th.cold_loads_per_node
        or any(c >= th.cold_loads_per_model for c in cold[n].values())
    }
    if not hot:
        return _ok("model_thrashing", "No model thrashing", "Models stay loaded between requests.")
    return _check(
        "model_thrashing", "warning", f"Models reloaded over and over on {len(hot)} node(s)",
        "Requests keep cold-loading models (seconds each): the node swaps models in and out "
        "of memory instead of serving.",
        "Set OLLAMA_KEEP_ALIVE=-1 and OLLAMA_MAX_LOADED_MODELS, lower OLLAMA_NUM_PARALLEL, "
        "or keep fewer models in rotation on those nodes.",
        cold_loads=dict(cold),
    )  # fmt: skip


def check_timeouts(_s: Mapping[str, Any], traffic: Mapping[str, Any], th: Thresholds) -> dict:
    timeouts, requests = _count(traffic, "timeouts"), _count(traffic, "requests")
    if not timeouts:
        return _ok("timeouts", "No timeouts", "No request timed out recently.")
    rate = timeouts / requests if requests else 1.0
    by_node = {n: v["timeouts"] for n, v in (traffic.get("nodes") or {}).items() if v["timeouts"]}
    return _check(
        "timeouts", "critical" if rate >= th.timeout_rate_critical else "warning",
        f"{timeouts} request(s) timed out",
        "Nodes took too long to answer (FLEET_FIRST_CHUNK_TIMEOUT / FLEET_CHUNK_TIMEOUT): an "
        "overloaded node, a model too big for its memory, or a stuck backend.",
        "Check the nodes listed for load and memory; move big models to bigger machines.",
        timeouts=timeouts, rate=round(rate, 4), nodes=by_node,
    )  # fmt: skip


def check_errors(_s: Mapping[str, Any], traffic: Mapping[str, Any], th: Thresholds) -> dict:
    requests, errors = _count(traffic, "requests"), _count(traffic, "errors")
    nodes = traffic.get("nodes") or {}
    bad_nodes = {
        n: round(v["errors"] / v["requests"], 4)
        for n, v in nodes.items()
        if v["requests"] >= th.min_requests // 2
        and v["errors"] / v["requests"] >= th.node_error_rate
    }
    rate = errors / requests if requests else 0.0
    if requests < th.min_requests and not bad_nodes:
        return _ok(
            "error_rate", "Error rate", f"Too little traffic to judge ({requests} requests)."
        )
    if rate < th.error_rate_warn and not bad_nodes:
        return _ok("error_rate", "Error rate low", f"{_pct(rate)} of requests failed.")
    severity = "critical" if rate >= th.error_rate_critical else "warning"
    return _check(
        "error_rate", severity, f"{_pct(rate)} of requests failed",
        "Failed and rejected requests reach clients as errors (retries only cover failures "
        "before the first token).",
        "Open Traces filtered by status=error to see the messages; check the nodes listed.",
        errors=errors, requests=requests, rate=round(rate, 4), nodes=bad_nodes,
    )  # fmt: skip


def check_retries(_s: Mapping[str, Any], traffic: Mapping[str, Any], th: Thresholds) -> dict:
    requests, retries = _count(traffic, "requests"), _count(traffic, "retries")
    rate = retries / requests if requests else 0.0
    if requests < th.min_requests or rate < th.retry_rate_warn:
        return _ok("retries", "Few retries", f"{retries} retried attempt(s) recently.")
    return _check(
        "retries", "warning", f"{_pct(rate)} of requests needed a retry",
        "Nodes fail before the first token often; retries hide it from clients but add latency.",
        "Look at the nodes with errors in Traces; a node that keeps failing may need a restart.",
        retries=retries, requests=requests,
    )  # fmt: skip


def check_disconnects(_s: Mapping[str, Any], traffic: Mapping[str, Any], th: Thresholds) -> dict:
    requests, gone = _count(traffic, "requests"), _count(traffic, "disconnected")
    if requests < th.min_requests or gone / requests < th.disconnect_rate_info:
        return _ok("client_disconnects", "Clients wait for answers", f"{gone} disconnect(s).")
    return _check(
        "client_disconnects", "info", f"{gone} client(s) hung up before the answer",
        "Clients gave up mid-request: their timeout is shorter than the fleet's latency.",
        "Raise the client timeout or route those apps to faster models.",
        disconnected=gone, requests=requests,
    )  # fmt: skip


# --- router events --------------------------------------------------------------------------
def _events(status: Mapping[str, Any], match: Callable[[str], bool]) -> list[Mapping[str, Any]]:
    return [e for e in status.get("events") or [] if match(str(e.get("kind", "")))]


def check_zombies(status: Mapping[str, Any], _t: Mapping[str, Any], _th: Thresholds) -> dict:
    events = _events(status, lambda k: k == "zombie_reaped")
    total = _count(status.get("counters") or {}, "reaped")
    if not events and not total:
        return _ok("zombie_reaper", "No stuck requests", "The zombie reaper found nothing.")
    nodes = sorted({str(e.get("node_id")) for e in events})
    return _check(
        "zombie_reaper", "warning", f"{total or len(events)} stuck request(s) reclaimed",
        "In-flight requests that never ended held queue slots until the reaper freed them "
        "(FLEET_ZOMBIE_TIMEOUT): a node or ingress lost track of them.",
        "Check the nodes listed for crashes or network drops; restart their `herd deploy`.",
        reaped=total, nodes=nodes,
    )  # fmt: skip


def check_context(status: Mapping[str, Any], _t: Mapping[str, Any], _th: Thresholds) -> dict:
    events = _events(status, lambda k: k.startswith("context"))
    if not events:
        return _ok(
            "context_protection", "No context reloads", "No request tried to change num_ctx."
        )
    models = sorted({str(e.get("model")) for e in events if e.get("model")})
    return _check(
        "context_protection", "info", f"Context protection acted {len(events)} time(s)",
        "Requests asked for a num_ctx that would have reloaded a loaded model (tens of "
        "seconds for a big one); the router stripped or upgraded it (FLEET_CONTEXT_PROTECTION).",
        "Drop num_ctx from those clients, or load the model with the context they need.",
        events=len(events), models=models,
    )  # fmt: skip


def check_failure_memory(status: Mapping[str, Any], _t: Mapping[str, Any], _th: Thresholds) -> dict:
    """Pairs the router's failure memory cools down (``failures`` per node in the status)."""
    pairs = [
        {"node_id": n["node_id"], **f}
        for n in _nodes(status)
        for f in n.get("failures") or []
        if f.get("state") in ("cooling_down", "half_open")
    ]
    trips = _count(status.get("counters") or {}, "cooled_down")
    if pairs:
        return _check(
            "failure_memory", "warning", f"{len(pairs)} node/model pair(s) cooling down",
            "These nodes failed requests for these models again and again (backend errors, "
            "timeouts); the router sends them none until the cooldown ends, then one probe: "
            "success readmits the pair, failure doubles the cooldown (FLEET_FAILURE_*).",
            "Read each pair's last error; check that node's backend logs, memory and model "
            "files (`ollama run MODEL` there), and re-pull a damaged model.",
            pairs=pairs, cooled_down=trips,
        )  # fmt: skip
    if trips:
        return _check(
            "failure_memory", "info", f"Pairs were cooled down {trips} time(s) since start",
            "Nodes failed requests often enough to be cooled down; every pair is admitted now.",
            "If it keeps happening, look for that node's errors in Traces (status=error).",
            cooled_down=trips, readmitted=_count(status.get("counters") or {}, "readmitted"),
        )  # fmt: skip
    return _ok("failure_memory", "No failing nodes", "No node is cooled down after failures.")


def check_trace_store(status: Mapping[str, Any], _t: Mapping[str, Any], _th: Thresholds) -> dict:
    stats = status.get("traces") or {}
    behind = list(stats.get("committed") or []) < list(stats.get("end") or [])
    if stats and stats.get("failures") and behind:
        return _check(
            "trace_store", "warning", "Traces are waiting for the database",
            "The trace database rejected writes; traces are safe in the router's journal "
            "and are written as soon as it accepts them, but the dashboard lags behind.",
            "Check FLEET_DATABASE_URL, the database server and free disk space in the data dir.",
            failures=stats.get("failures"), crashes=stats.get("crashes"),
            last_error=stats.get("last_error"),
        )  # fmt: skip
    if stats.get("quarantined"):
        return _check(
            "trace_store", "warning", f"{stats['quarantined']} trace(s) quarantined",
            "The database refused these traces even repaired (text cut to its column, NUL "
            "removed); they are kept, readable, in the quarantine file, not in the dashboard.",
            "Read each entry's reason in the quarantine file (a database rule or encoding "
            "refuses them), fix that and load the records back.",
            quarantined=stats["quarantined"], file=stats.get("quarantine_file"),
        )  # fmt: skip
    return _ok("trace_store", "Traces stored", "Request traces reach the database.")


CHECKS: Sequence[Callable[[Mapping[str, Any], Mapping[str, Any], Thresholds], dict]] = (
    check_nodes_present,
    check_offline,
    check_degraded,
    check_backends,
    check_memory,
    check_thrashing,
    check_timeouts,
    check_errors,
    check_retries,
    check_versions,
    check_context,
    check_zombies,
    check_failure_memory,
    check_queue,
    check_disconnects,
    check_trace_store,
)


def run_checks(
    status: Mapping[str, Any],
    traffic: Mapping[str, Any],
    now: float,
    thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    th = thresholds or Thresholds()
    checks = [check(status, traffic, th) for check in CHECKS]
    worst = max((SEVERITY_ORDER[c["severity"]] for c in checks), default=0)
    overall = "critical" if worst == 3 else "warning" if worst == 2 else "healthy"
    checks.sort(key=lambda c: -SEVERITY_ORDER[c["severity"]])
    return {"checked_at": now, "status": overall, "checks": checks}
