"""Router overhead: the same client against an ``instant`` Ollama emulator and through herd.

For each Serve mode (``--modes haproxy,default``) a fresh local fleet is started in a
child process (``bench/_fleet.py``: Ray head with the router and the Serve ingress, one
worker Ray node with a NodeActor over the emulator). This process is the load generator
(aiohttp, one keep-alive session, no Ray) and runs every workload against the emulator
directly and through herd, side by side (alternating blocks of 10 sequential requests,
alternating windows of load):

* sequential non-streaming ``/api/chat``: p50/p99 latency;
* sequential streaming ``/api/chat``: time to the first NDJSON line, p50/p99;
* 16 concurrent clients, non-streaming, for 10 s: requests/s;
* sequential streaming ``/v1/chat/completions`` through herd: time to the first SSE event
  (the emulator speaks only Ollama's API, so "direct" is its ``/api/chat`` stream);
* the same for Anthropic's ``/v1/messages`` and OpenAI's ``/v1/responses`` through herd
  (translated to ``/api/chat`` there), non-streaming and streaming, interleaved with the
  ``/api/chat`` rows above: "direct" is again the emulator's ``/api/chat``, so their
  "added" is herd plus the dialect's translation, and their "herd" column sits next to
  herd's own ``/api/chat`` from the same run.

Prints a table, then one line of JSON (``{"bench": "overhead", ...}``) as the last line
of stdout. ``--quick`` runs small counts (CI, under ~2 minutes for both modes).

    python bench/overhead.py [--quick] [--modes haproxy,default] [--fail-on-target]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from _fleet import MODES, FleetProcess
from _load import (
    MESSAGES,
    MODEL,
    NUM_PREDICT,
    Target,
    alternating_throughput,
    cpu_by_process,
    cpu_snapshot,
    interleaved,
    new_session,
)

# Targets from the brief: added latency at p50, added time to first chunk, herd's req/s.
TARGET_ADDED_P50_MS = 4.0
TARGET_ADDED_TTFT_MS = 3.5
TARGET_RPS = 200.0


@dataclass(frozen=True)
class Config:
    n: int
    warmup: int
    load_s: float
    concurrency: int
    replicas: int
    slices: int


Row = dict[str, float | None]


def _json(**body: Any) -> bytes:
    return json.dumps({"model": MODEL, **body}).encode()


# The same question and token budget as the /api/chat rows, in each dialect.
MESSAGES_BODY = _json(max_tokens=NUM_PREDICT, messages=MESSAGES)
MESSAGES_STREAM = _json(max_tokens=NUM_PREDICT, messages=MESSAGES, stream=True)
RESPONSES_BODY = _json(max_output_tokens=NUM_PREDICT, input=MESSAGES)
RESPONSES_STREAM = _json(max_output_tokens=NUM_PREDICT, input=MESSAGES, stream=True)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pair(direct: float, herd: float) -> Row:
    return {"direct": round(direct, 3), "herd": round(herd, 3), "added": round(herd - direct, 3)}


async def run_workloads(info: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Every workload hits the emulator and herd alternately (blocks of 10 sequential
    requests, alternating load windows), so background noise on this machine hits both
    alike."""
    direct, herd = info["emulator"], info["endpoint"]
    metrics: dict[str, Any] = {}
    async with new_session(cfg.concurrency * 2) as session:
        chat = [
            Target(direct + "/api/chat"),
            Target(herd + "/api/chat"),
            Target(herd + "/v1/messages", body=MESSAGES_BODY),
            Target(herd + "/v1/responses", body=RESPONSES_BODY),
        ]
        d, h, msg, resp = await interleaved(session, chat, cfg.n, cfg.warmup)
        metrics["chat_p50_ms"] = _pair(d.p50_ms, h.p50_ms)
        metrics["chat_p99_ms"] = _pair(d.p99_ms, h.p99_ms)
        metrics["chat_mean_ms"] = _pair(d.mean_ms, h.mean_ms)
        metrics["messages_p50_ms"] = _pair(d.p50_ms, msg.p50_ms)
        metrics["messages_p99_ms"] = _pair(d.p99_ms, msg.p99_ms)
        metrics["responses_p50_ms"] = _pair(d.p50_ms, resp.p50_ms)
        metrics["responses_p99_ms"] = _pair(d.p99_ms, resp.p99_ms)
        streams = [
            Target(direct + "/api/chat", stream=True),
            Target(herd + "/api/chat", stream=True),
            Target(herd + "/v1/chat/completions", stream=True, sse=True),
            Target(
                herd + "/v1/messages",
                stream=True,
                sse=True,
                body=MESSAGES_STREAM,
                sse_end=(b'"message_stop"',),
            ),
            Target(
                herd + "/v1/responses",
                stream=True,
                sse=True,
                body=RESPONSES_STREAM,
                # max_output_tokens ends the emulator's answer: response.incomplete
                sse_end=(b'"response.completed"', b'"response.incomplete"'),
            ),
        ]
        d, h, oai, msg, resp = await interleaved(session, streams, cfg.n, cfg.warmup)
        metrics["ttft_p50_ms"] = _pair(d.p50_ms, h.p50_ms)
        metrics["ttft_p99_ms"] = _pair(d.p99_ms, h.p99_ms)
        # The emulator speaks only Ollama's API: compare with its native stream.
        metrics["openai_ttft_p50_ms"] = _pair(d.p50_ms, oai.p50_ms)
        metrics["openai_ttft_p99_ms"] = _pair(d.p99_ms, oai.p99_ms)
        metrics["messages_ttft_p50_ms"] = _pair(d.p50_ms, msg.p50_ms)
        metrics["messages_ttft_p99_ms"] = _pair(d.p99_ms, msg.p99_ms)
        metrics["responses_ttft_p50_ms"] = _pair(d.p50_ms, resp.p50_ms)
        metrics["responses_ttft_p99_ms"] = _pair(d.p99_ms, resp.p99_ms)
        urls = [direct + "/api/chat", herd + "/api/chat"]
        td, th = await alternating_throughput(
            session, urls, cfg.concurrency, cfg.load_s, slices=cfg.slices
        )
        metrics["rps"] = {"direct": round(td.rps, 1), "herd": round(th.rps, 1), "added": None}
        metrics["rps_latency_p50_ms"] = _pair(td.p50_ms, th.p50_ms)
        metrics["rps_latency_p99_ms"] = _pair(td.p99_ms, th.p99_ms)
        metrics["errors"] = {"direct": td.errors, "herd": th.errors}
    return metrics


def check(metrics: dict[str, Any]) -> dict[str, bool]:
    return {
        "added_p50_ms": metrics["chat_p50_ms"]["added"] < TARGET_ADDED_P50_MS,
        "added_ttft_ms": metrics["ttft_p50_ms"]["added"] < TARGET_ADDED_TTFT_MS,
        "herd_rps": metrics["rps"]["herd"] > TARGET_RPS and metrics["errors"]["herd"] == 0,
    }


LABELS: tuple[tuple[str, str, str], ...] = (
    # metric key, label, target (shown in the table)
    ("chat_p50_ms", "chat p50 ms", f"added < {TARGET_ADDED_P50_MS:g}"),
    ("chat_p99_ms", "chat p99 ms", ""),
    ("ttft_p50_ms", "stream 1st chunk p50 ms", f"added < {TARGET_ADDED_TTFT_MS:g}"),
    ("ttft_p99_ms", "stream 1st chunk p99 ms", ""),
    ("openai_ttft_p50_ms", "/v1 stream 1st event p50 ms", ""),
    ("openai_ttft_p99_ms", "/v1 stream 1st event p99 ms", ""),
    ("messages_p50_ms", "/v1/messages p50 ms", ""),
    ("messages_p99_ms", "/v1/messages p99 ms", ""),
    ("messages_ttft_p50_ms", "/v1/messages stream 1st event p50 ms", ""),
    ("messages_ttft_p99_ms", "/v1/messages stream 1st event p99 ms", ""),
    ("responses_p50_ms", "/v1/responses p50 ms", ""),
    ("responses_p99_ms", "/v1/responses p99 ms", ""),
    ("responses_ttft_p50_ms", "/v1/responses stream 1st event p50 ms", ""),
    ("responses_ttft_p99_ms", "/v1/responses stream 1st event p99 ms", ""),
    ("rps", "req/s at c=16", f"herd > {TARGET_RPS:g}"),
    ("rps_latency_p50_ms", "c=16 latency p50 ms", ""),
    ("rps_latency_p99_ms", "c=16 latency p99 ms", ""),
)
PASS_KEY = {"chat_p50_ms": "added_p50_ms", "ttft_p50_ms": "added_ttft_ms", "rps": "herd_rps"}


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ["mode", "metric", "direct", "herd", "added", "target", ""]
    rows = [head]
    for mode, metrics in results.items():
        passed = check(metrics)
        for key, label, target in LABELS:
            row = metrics[key]
            verdict = ""
            if key in PASS_KEY:
                verdict = "ok" if passed[PASS_KEY[key]] else "MISS"
            rows.append(
                [
                    mode,
                    label,
                    _cell(row["direct"]),
                    _cell(row["herd"]),
                    _cell(row["added"]),
                    target,
                    verdict,
                ]
            )
        errs = metrics["errors"]
        rows.append([mode, "errors under load", str(errs["direct"]), str(errs["herd"]), "", "", ""])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {2, 3, 4}
    lines = []
    for r in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--modes", default=",".join(MODES), help="haproxy,default (both)")
    parser.add_argument("--quick", action="store_true", help="small counts and 3 s of load")
    parser.add_argument("-n", type=int, help="sequential requests per workload (300; quick 60)")
    parser.add_argument("--seconds", type=float, help="length of the c=16 load (10; quick 3)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--replicas", type=int, default=1, help="Serve ingress replicas")
    parser.add_argument(
        "--ray-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the Ray nodes, e.g. RAY_worker_niceness=0 (repeatable)",
    )
    parser.add_argument(
        "--fail-on-target", action="store_true", help="exit 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown or not args.modes:
        parser.error(f"--modes takes {', '.join(MODES)}; got {args.modes}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(
        n=args.n or (60 if args.quick else 300),
        warmup=20 if args.quick else 50,
        load_s=args.seconds or (3.0 if args.quick else 10.0),
        concurrency=args.concurrency,
        replicas=args.replicas,
        slices=2 if args.quick else 4,
    )
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    startup: dict[str, float] = {}
    fleets: list[FleetProcess] = []
    try:
        previous: FleetProcess | None = None
        for mode in args.modes:
            _say(f"{mode}: starting a local fleet (Ray head + 1 worker, instant emulator) ...")
            fleets.append(current := FleetProcess(mode, cfg.replicas, args.ray_env))
            info = current.ready()  # boots while the previous mode's fleet tears down
            if previous is not None:
                previous.wait()  # measure with only this fleet running
            startup[mode] = round(info["startup_s"], 1)
            _say(f"{mode}: up in {startup[mode]} s at {info['endpoint']}; measuring ...")
            before, t0 = cpu_snapshot(), time.perf_counter()
            results[mode] = asyncio.run(run_workloads(info, cfg))
            roots = [*info["pids"], current.proc.pid, os.getpid()]
            _ours, other = cpu_by_process(before, cpu_snapshot(), roots)
            results[mode]["other_cpu_cores"] = round(other / (time.perf_counter() - t0), 2)
            current.release()
            previous = current
    finally:
        for fleet in fleets:
            fleet.release()
        for fleet in fleets:
            fleet.wait()
    print(table(results), flush=True)
    busy = ", ".join(f"{m} {r['other_cpu_cores']:.2f}" for m, r in results.items())
    print(f"CPU used by other processes on this machine while measuring (cores): {busy}")
    passed = {mode: check(metrics) for mode, metrics in results.items()}
    ok = all(all(p.values()) for p in passed.values())
    summary = {
        "bench": "overhead",
        "quick": args.quick,
        "n": cfg.n,
        "warmup": cfg.warmup,
        "load_s": cfg.load_s,
        "concurrency": cfg.concurrency,
        "replicas": cfg.replicas,
        "ray_env": args.ray_env,
        "cpus": os.cpu_count(),
        "loadavg_1m_before": round(load_before[0], 2),
        "startup_s": startup,
        "targets": {
            "added_p50_ms": TARGET_ADDED_P50_MS,
            "added_ttft_ms": TARGET_ADDED_TTFT_MS,
            "herd_rps": TARGET_RPS,
        },
        "modes": results,
        "pass": passed,
        "ok": ok,
    }
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 1 if args.fail_on_target and not ok else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        _say("interrupted; the fleet was stopped")
        sys.exit(130)
