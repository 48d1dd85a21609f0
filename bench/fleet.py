"""Fleet simulation benchmark: the real router over six emulated devices, per policy.

Runs herd's routing code (``RouterCore``: scoring, holding queue, in-flight book-keeping;
``NodeAgent`` over the Ollama backend; the ingress's request conversion) against a
heterogeneous fleet of Ollama emulators (``bench/_simfleet_profiles.py``) under seeded
workloads (``bench/_simfleet_workloads.py``), once per routing policy, and prints a table
plus one JSON line ``{"bench": "fleet", ...}``. No Ray, but the production request loop:
every request runs through ``herd.dispatch.Dispatcher`` over in-process ports
(``bench/_simfleet_ports.py``, ``bench/_simfleet_driver.py``).

The emulators run ``--time-scale`` times faster than the devices they model (tokens/s and
load bandwidth multiplied, the router's timeouts and heartbeat interval divided), and every
time is reported in simulated seconds (wall seconds x scale)::

    python bench/fleet.py                      # every workload x every available policy
    python bench/fleet.py --workloads steady,node-death --policies score --seed 7
    python bench/fleet.py --quick              # a small config, under a minute
    python bench/fleet.py --seeds 1,2,3        # every run once per seed, plus a summary
    python bench/fleet.py --workloads owner-busy --policies expected_latency,least_busy

After the per-run table comes a summary per workload x policy over the seeds: ok rate,
mean p50 and p95, p95 as a multiple of the floor and of round-robin's, rank by p95.

Policies need ``FLEET_ROUTING_POLICY`` (``Settings.routing_policy``); without that setting
only the router's built-in scoring runs (as ``score``) and the others are listed as skipped.

Columns (one row per workload x policy, every policy gets the very same requests):

* ``features``: ``owner-busy`` runs every policy twice, capacity learning and failure
  memory ``off`` and ``on`` (``bench/_simfleet_owner.py``); ``-`` elsewhere (failure
  memory at its defaults, no capacity learning); ``owner hits``: requests that arrived
  while the owner was busy or in the call and ran on the owner's device (``call hits``:
  in the call);
* ``issued`` / ``ok`` / ``failed``: requests sent, answered in full, and not (a stream
  cut by the node death, a 503 after the holding queue...); ``retries``: attempts that
  failed before their first chunk and went to another node;
* ``p50 s`` / ``p95 s``: end-to-end latency of the answered requests, from arrival
  (holding queue and retries included) to the final chunk; ``p95 ttft s``: to the first;
* ``cold loads`` / ``evictions``: model loads and LRU evictions the emulators counted
  (pre-warms included);
* ``req/s``: answered requests / (last answer - first arrival), in simulated time;
* ``floor p95``: the workload's service-time floor (``bench/_simfleet_floor.py``: every
  request alone on the fastest device that holds its model, loaded, no queue), and
  ``x floor``: the row's p95 as a multiple of it;
* ``lag ms``: p99 lateness of the bench's event loop (wall ms): a fidelity check, a
  large value means the machine was too busy for the simulated timings to hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from _simfleet_floor import workload_floor
from _simfleet_hosts import open_host
from _simfleet_owner import FEATURES
from _simfleet_profiles import CHUNK_TOKENS, DEVICES, describe_fleet
from _simfleet_run import (
    POLICIES,
    PolicyUnavailable,
    has_policy_setting,
    router_settings,
    run_once,
)
from _simfleet_workloads import WORKLOADS, build_workload

DEFAULT_SCALE = 20.0
DEFAULT_REQUESTS = 200
QUICK = {"requests": 24, "time_scale": DEFAULT_SCALE, "host": "process"}

COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (header, RunResult field, format)
    ("workload", "workload", "s"),
    ("policy", "policy", "s"),
    ("features", "features", "s"),
    ("issued", "issued", "d"),
    ("ok", "completed", "d"),
    ("failed", "failed", "d"),
    ("retries", "retries", "d"),
    ("owner hits", "owner_hits", "d"),
    ("call hits", "call_hits", "d"),
    ("p50 s", "p50_s", ".2f"),
    ("p95 s", "p95_s", ".2f"),
    ("p95 ttft s", "p95_ttft_s", ".2f"),
    ("cold loads", "cold_loads", "d"),
    ("evictions", "evictions", "d"),
    ("req/s", "req_per_s", ".3f"),
    ("floor p95", "floor_p95_s", ".2f"),
    ("x floor", "p95_x_floor", ".2f"),
    ("wall s", "wall_s", ".1f"),
    ("lag ms", "loop_lag_p99_ms", ".0f"),
)
SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("workload", "workload", "s"),
    ("policy", "policy", "s"),
    ("features", "features", "s"),
    ("seeds", "seeds", "d"),
    ("ok %", "ok_pct", ".1f"),
    ("mean p50 s", "p50_s", ".2f"),
    ("mean p95 s", "p95_s", ".2f"),
    ("p95 x floor", "p95_x_floor", ".2f"),
    ("p95 vs rr", "p95_vs_round_robin", ".2f"),
    ("rank", "rank", "d"),
)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    workloads: tuple[str, ...]
    policies: tuple[str, ...]
    seed: int = 1
    requests: int = DEFAULT_REQUESTS
    seeds: tuple[int, ...] = ()  # several seeds: every run once per seed (overrides seed)
    time_scale: float = DEFAULT_SCALE
    host: str = "process"


def available_policies(wanted: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The policies the router accepts now, and why the others are skipped."""
    ok: list[str] = []
    skipped: dict[str, str] = {}
    for policy in wanted:
        try:
            router_settings(policy, 1.0)
        except PolicyUnavailable as exc:
            skipped[policy] = str(exc)
        else:
            ok.append(policy)
    return ok, skipped


async def run_bench(config: BenchConfig, log: Any = None) -> dict[str, Any]:
    """Every workload x every available policy; returns the JSON document."""
    policies, skipped = available_policies(config.policies)
    rows: list[dict[str, Any]] = []
    perfbook: set[str] = set()
    seeds = config.seeds or (config.seed,)
    async with open_host(config.host) as host:
        for seed in seeds:
            for name in config.workloads:
                workload = build_workload(name, seed, config.requests)
                floor = workload_floor(workload)
                runs = [
                    (p, f) for p in policies for f in (FEATURES if workload.owner_phases else "-")
                ]
                for policy, features in runs:
                    result = await run_once(policy, workload, config.time_scale, host, features)
                    perfbook.add(result.perfbook)
                    row = result.row()
                    row["seed"] = seed
                    row["floor_p50_s"] = round(floor["p50_s"], 3)
                    row["floor_p95_s"] = round(floor["p95_s"], 3)
                    row["p95_x_floor"] = _ratio(result.p95_s, floor["p95_s"])
                    rows.append(row)
                    if log is not None:
                        print(
                            f"  seed {seed} {name:<10} {policy:<16} {features:<3} ok "
                            f"{result.completed}/{result.issued} p95 {result.p95_s:.2f} s "
                            f"({row['p95_x_floor']} x floor, {result.wall_s:.1f} s wall)",
                            file=log,
                            flush=True,
                        )
    return {
        "bench": "fleet",
        "seed": config.seed,
        "seeds": list(seeds),
        "requests": config.requests,
        "time_scale": config.time_scale,
        "units": "simulated seconds (wall seconds x time_scale)",
        "emulators": config.host,
        "chunk_tokens": CHUNK_TOKENS,
        "nodes": [d.name for d in DEVICES],
        "policy_setting": has_policy_setting(),
        "policies": policies,
        "skipped_policies": skipped,
        "perfbook": sorted(perfbook),
        "rows": rows,
        "summary": summarize_seeds(rows),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or a != a:  # nan: no answered request
        return None
    return round(a / b, 3)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and v == v]
    return sum(kept) / len(kept) if kept else None


def summarize_seeds(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload x policy over every seed: means, p95 as a multiple of the floor and
    of round-robin's, and each policy's rank by mean p95 within its workload."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by = (row["workload"], row["policy"], row.get("features", "-"))
        groups.setdefault(by, []).append(row)
    out: list[dict[str, Any]] = []
    for (workload, policy, features), group in groups.items():
        issued = sum(r["issued"] for r in group)
        out.append(
            {
                "workload": workload,
                "policy": policy,
                "features": features,
                "seeds": len(group),
                "ok_pct": round(100.0 * sum(r["completed"] for r in group) / issued, 1)
                if issued
                else None,
                "p50_s": _mean([r["p50_s"] for r in group]),
                "p95_s": _mean([r["p95_s"] for r in group]),
                "p95_x_floor": _mean([r["p95_x_floor"] for r in group]),
            }
        )
    for entry in out:
        same = [e for e in out if e["workload"] == entry["workload"]]
        rr = next(
            (
                e["p95_s"]
                for e in same
                if e["policy"] == "round_robin" and e["features"] == entry["features"]
            ),
            None,
        )
        entry["p95_vs_round_robin"] = _ratio(entry["p95_s"], rr)
        ranked = sorted(same, key=lambda e: (e["p95_s"] is None, e["p95_s"] or 0.0))
        entry["rank"] = ranked.index(entry) + 1
        for key in ("p50_s", "p95_s", "p95_x_floor"):
            if entry[key] is not None:
                entry[key] = round(entry[key], 3)
    return out


def format_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]] = COLUMNS
) -> str:
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        line = []
        for _, key, fmt in columns:
            value = row.get(key)
            line.append("-" if value is None else format(value, fmt))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    out = []
    for n, line in enumerate(cells):
        parts = [
            c.ljust(w) if columns[i][2] == "s" else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(parts).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _csv(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in items if x not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return items


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", help="several seeds, e.g. 1,2,3 (overrides --seed)")
    parser.add_argument("--requests", type=int, help=f"per workload (default {DEFAULT_REQUESTS})")
    parser.add_argument("--time-scale", type=float, help=f"default {DEFAULT_SCALE:g}")
    parser.add_argument("--emulators", choices=("process", "inproc"), help="default process")
    parser.add_argument("--quick", action="store_true", help="small and fast (< 60 s)")
    args = parser.parse_args(argv)
    base: dict[str, Any] = (
        dict(QUICK)
        if args.quick
        else {"requests": DEFAULT_REQUESTS, "time_scale": DEFAULT_SCALE, "host": "process"}
    )
    if args.requests is not None:
        base["requests"] = args.requests
    if args.time_scale is not None:
        base["time_scale"] = args.time_scale
    if args.emulators is not None:
        base["host"] = args.emulators
    return BenchConfig(
        workloads=_csv(args.workloads, WORKLOADS, "workloads"),
        policies=_csv(args.policies, POLICIES, "policies"),
        seed=args.seed,
        seeds=tuple(int(x) for x in args.seeds.split(",") if x.strip()) if args.seeds else (),
        **base,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    print(f"fleet ({config.host} emulators, time x{config.time_scale:g}):", file=sys.stderr)
    for line in describe_fleet():
        print(f"  {line}", file=sys.stderr)
    doc = asyncio.run(run_bench(config, log=sys.stderr))
    print(format_table(doc["rows"]))
    print()
    print(format_table(doc["summary"], SUMMARY_COLUMNS))
    print(
        f"times in simulated seconds (wall x {config.time_scale:g}); cold loads and evictions "
        "from the emulators' counters; lag ms: p99 event-loop lag of the bench (wall ms, "
        f"fidelity check); the router's PerfBook fed by: {', '.join(doc['perfbook'])}"
    )
    for policy, why in doc["skipped_policies"].items():
        print(f"skipped {policy}: {why}")
    print(json.dumps(doc, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
