"""Fleet simulation benchmark: the real router over six emulated devices, per policy.

Runs herd's routing code (``RouterCore``: scoring, holding queue, in-flight book-keeping;
``NodeAgent`` over the Ollama backend; the ingress's request conversion) against a
heterogeneous fleet of Ollama emulators (``bench/_simfleet_profiles.py``) under seeded
workloads (``bench/_simfleet_workloads.py``), once per routing policy, and prints a table
plus one JSON line ``{"bench": "fleet", ...}``. No Ray: ``bench/_simfleet_driver.py``
does what the ingress dispatcher does (decide, stream, retry before the first chunk,
report outcomes) with direct calls.

The emulators run ``--time-scale`` times faster than the devices they model (tokens/s and
load bandwidth multiplied, the router's timeouts and heartbeat interval divided), and every
time is reported in simulated seconds (wall seconds x scale)::

    python bench/fleet.py                      # every workload x every available policy
    python bench/fleet.py --workloads steady,node-death --policies score --seed 7
    python bench/fleet.py --quick              # a small config, under a minute

Policies need ``FLEET_ROUTING_POLICY`` (``Settings.routing_policy``); without that setting
only the router's built-in scoring runs (as ``score``) and the others are listed as skipped.

Columns (one row per workload x policy, every policy gets the very same requests):

* ``issued`` / ``ok`` / ``failed``: requests sent, answered in full, and not (a stream
  cut by the node death, a 503 after the holding queue...); ``retries``: attempts that
  failed before their first chunk and went to another node;
* ``p50 s`` / ``p95 s``: end-to-end latency of the answered requests, from arrival
  (holding queue and retries included) to the final chunk; ``p95 ttft s``: to the first;
* ``cold loads`` / ``evictions``: model loads and LRU evictions the emulators counted
  (pre-warms included);
* ``req/s``: answered requests / (last answer - first arrival), in simulated time;
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

from _simfleet_hosts import open_host
from _simfleet_profiles import CHUNK_TOKENS, DEVICES, describe_fleet
from _simfleet_run import (
    POLICIES,
    PolicyUnavailable,
    RunResult,
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
    ("issued", "issued", "d"),
    ("ok", "completed", "d"),
    ("failed", "failed", "d"),
    ("retries", "retries", "d"),
    ("p50 s", "p50_s", ".2f"),
    ("p95 s", "p95_s", ".2f"),
    ("p95 ttft s", "p95_ttft_s", ".2f"),
    ("cold loads", "cold_loads", "d"),
    ("evictions", "evictions", "d"),
    ("req/s", "req_per_s", ".3f"),
    ("wall s", "wall_s", ".1f"),
    ("lag ms", "loop_lag_p99_ms", ".0f"),
)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    workloads: tuple[str, ...]
    policies: tuple[str, ...]
    seed: int = 1
    requests: int = DEFAULT_REQUESTS
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
    rows: list[RunResult] = []
    async with open_host(config.host) as host:
        for name in config.workloads:
            workload = build_workload(name, config.seed, config.requests)
            for policy in policies:
                result = await run_once(policy, workload, config.time_scale, host)
                rows.append(result)
                if log is not None:
                    print(
                        f"  {name:<10} {policy:<16} ok {result.completed}/{result.issued} "
                        f"p95 {result.p95_s:.2f} s  ({result.wall_s:.1f} s wall)",
                        file=log,
                        flush=True,
                    )
    perfbook = sorted({r.perfbook for r in rows})
    return {
        "bench": "fleet",
        "seed": config.seed,
        "requests": config.requests,
        "time_scale": config.time_scale,
        "units": "simulated seconds (wall seconds x time_scale)",
        "emulators": config.host,
        "chunk_tokens": CHUNK_TOKENS,
        "nodes": [d.name for d in DEVICES],
        "policy_setting": has_policy_setting(),
        "policies": policies,
        "skipped_policies": skipped,
        "perfbook": perfbook,
        "rows": [r.row() for r in rows],
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    cells = [[h for h, _, _ in COLUMNS]]
    for row in rows:
        line = []
        for _, key, fmt in COLUMNS:
            value = row.get(key)
            line.append("-" if value is None else format(value, fmt))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    out = []
    for n, line in enumerate(cells):
        parts = [
            c.ljust(w) if COLUMNS[i][2] == "s" else c.rjust(w)
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
        **base,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    print(f"fleet ({config.host} emulators, time x{config.time_scale:g}):", file=sys.stderr)
    for line in describe_fleet():
        print(f"  {line}", file=sys.stderr)
    doc = asyncio.run(run_bench(config, log=sys.stderr))
    print(format_table(doc["rows"]))
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
