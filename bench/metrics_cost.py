"""What ``/metrics`` costs on the token path: two local fleets side by side in one run,
one with metrics (``FLEET_METRICS=true``, the default, scraped every second the whole
time) and one without (``FLEET_METRICS=false``: the router records nothing).

Both fleets (``bench/_fleet.py``: Ray head with the router and Serve, one worker Ray node
with a NodeActor over an ``instant`` emulator) run at the same time; every workload
alternates between them (blocks of 10 sequential requests, alternating load windows),
so the machine's background noise lands on both alike. The whole set runs ``--rounds``
times: the spread of one fleet's numbers across rounds is the run-to-run noise, and the
cost (metrics minus none, averaged over rounds) must stay within it.

* sequential non-streaming ``/api/chat``: p50 / p99 latency;
* sequential streaming ``/api/chat``: time to the first NDJSON line, p50 / p99;
* 16 concurrent clients, non-streaming: requests/s.

Prints a table, then one line of JSON (``{"bench": "metrics_cost", ...}``) as the last
line of stdout.

    python bench/metrics_cost.py [--quick] [--rounds 4] [--scrape-every 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
from typing import Any

import aiohttp
from _fleet import FleetProcess
from _load import Target, alternating_throughput, interleaved, new_session

SIDES = ("metrics", "none")
METRICS = (
    ("chat_p50_ms", "chat p50 ms", -1),
    ("chat_p99_ms", "chat p99 ms", -1),
    ("ttft_p50_ms", "stream 1st chunk p50 ms", -1),
    ("ttft_p99_ms", "stream 1st chunk p99 ms", -1),
    ("rps", "req/s at c=16", +1),
)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _scraper(session: aiohttp.ClientSession, url: str, every: float, seen: list[int]) -> None:
    """GET /metrics every ``every`` s (Prometheus' default is 15-60 s: this is harsher)."""
    while True:
        async with session.get(url) as r:
            await r.read()
            seen.append(r.status)
        await asyncio.sleep(every)


async def one_round(
    urls: dict[str, str], args: argparse.Namespace, flip: int
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {side: {} for side in SIDES}
    async with new_session(args.concurrency * 2) as session:
        chats = [Target(urls[s] + "/api/chat") for s in SIDES]
        for side, lat in zip(
            SIDES, await interleaved(session, chats, args.n, args.warmup), strict=True
        ):
            out[side]["chat_p50_ms"], out[side]["chat_p99_ms"] = lat.p50_ms, lat.p99_ms
        streams = [Target(urls[s] + "/api/chat", stream=True) for s in SIDES]
        for side, lat in zip(
            SIDES, await interleaved(session, streams, args.n, args.warmup), strict=True
        ):
            out[side]["ttft_p50_ms"], out[side]["ttft_p99_ms"] = lat.p50_ms, lat.p99_ms
        # Each load window runs one side then the other; which goes first flips every
        # round, so neither side always follows the sequential phases.
        order = SIDES if flip % 2 == 0 else SIDES[::-1]
        loads = await alternating_throughput(
            session, [urls[s] + "/api/chat" for s in order], args.concurrency, args.seconds
        )
        for side, load in zip(order, loads, strict=True):
            out[side]["rps"], out[side]["errors"] = load.rps, float(load.errors)
    return out


def summarize(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for key, _, _ in METRICS:
        per_side = {s: [r[s][key] for r in rounds] for s in SIDES}
        diffs = [r["metrics"][key] - r["none"][key] for r in rounds]
        cost = statistics.fmean(diffs)
        # run-to-run noise: how far one fleet's own number moves between rounds
        noise = max(max(v) - min(v) for v in per_side.values()) if len(rounds) > 1 else None
        result[key] = {
            "metrics": round(statistics.fmean(per_side["metrics"]), 3),
            "none": round(statistics.fmean(per_side["none"]), 3),
            "cost": round(cost, 3),
            "noise": None if noise is None else round(noise, 3),
            "within_noise": None if noise is None else abs(cost) <= noise,
            "rounds": {s: [round(v, 3) for v in vals] for s, vals in per_side.items()},
        }
    return result


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = ["metric", "metrics on", "metrics off", "cost", "noise", ""]
    rows = [head]
    for key, label, _ in METRICS:
        s = summary[key]
        verdict = "" if s["within_noise"] is None else ("ok" if s["within_noise"] else "ABOVE")
        noise = "-" if s["noise"] is None else f"{s['noise']:.2f}"
        cells = [f"{s['metrics']:.2f}", f"{s['none']:.2f}", f"{s['cost']:+.2f}", noise]
        rows.append([label, *cells, verdict])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for r in rows:
        pairs = zip(r, widths, strict=True)
        lines.append(
            "  ".join(c.rjust(w) if 0 < i < 5 else c.ljust(w) for i, (c, w) in enumerate(pairs))
        )
    return "\n".join(line.rstrip() for line in lines)


async def measure(infos: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    urls = {side: info["endpoint"] for side, info in infos.items()}
    scrapes: list[int] = []
    async with new_session(2) as scrape_session:
        scraper = asyncio.create_task(
            _scraper(scrape_session, urls["metrics"] + "/metrics", args.scrape_every, scrapes)
        )
        rounds = []
        try:
            for i in range(args.rounds):
                _say(f"round {i + 1}/{args.rounds} ...")
                rounds.append(await one_round(urls, args, i))
        finally:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
        # Proof that each side is what it says: requests counted on one, 404 on the other.
        async with scrape_session.get(urls["metrics"] + "/metrics") as r:
            text = await r.text()
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("herd_requests_total{")
        )
        async with scrape_session.get(urls["none"] + "/metrics") as r:
            off_status = r.status
    return {
        "rounds": rounds,
        "scrapes": len(scrapes),
        "scrape_failures": sum(1 for s in scrapes if s != 200),
        "requests_counted_by_metrics": counted,
        "metrics_off_status": off_status,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (CI)")
    parser.add_argument("-n", type=int, help="sequential requests per workload (300; quick 60)")
    parser.add_argument("--seconds", type=float, help="c=16 load per side (6; quick 2)")
    parser.add_argument("--rounds", type=int, default=4, help="even: each side leads as often")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--scrape-every", type=float, default=1.0)
    parser.add_argument("--mode", default="haproxy", help="Serve proxy mode (haproxy, default)")
    args = parser.parse_args(argv)
    args.n = args.n or (60 if args.quick else 300)
    args.warmup = 20 if args.quick else 50
    args.seconds = args.seconds or (2.0 if args.quick else 6.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    envs = {"metrics": ["FLEET_METRICS=true"], "none": ["FLEET_METRICS=false"]}
    fleets = {side: FleetProcess(args.mode, 1, envs[side]) for side in SIDES}
    try:
        _say("starting two local fleets (metrics on, metrics off) ...")
        infos = {side: fleet.ready() for side, fleet in fleets.items()}
        for side, info in infos.items():
            _say(f"{side}: up in {info['startup_s']:.1f} s at {info['endpoint']}")
        run = asyncio.run(measure(infos, args))
    finally:
        for fleet in fleets.values():
            fleet.release()
        for fleet in fleets.values():
            fleet.wait()
    summary = summarize(run["rounds"])
    print(table(summary), flush=True)
    print(
        f"scrapes of /metrics during the run: {run['scrapes']} ({run['scrape_failures']} failed); "
        f"requests counted there: {run['requests_counted_by_metrics']:.0f}; "
        f"/metrics on the other fleet: HTTP {run['metrics_off_status']}"
    )
    verdicts = [s["within_noise"] for s in summary.values() if s["within_noise"] is not None]
    out = {
        "bench": "metrics_cost",
        "quick": args.quick,
        "n": args.n,
        "warmup": args.warmup,
        "load_s": args.seconds,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "scrape_every_s": args.scrape_every,
        "mode": args.mode,
        "cpus": os.cpu_count(),
        "loadavg_1m_before": round(load_before[0], 2),
        "results": summary,
        "errors": {s: sum(r[s]["errors"] for r in run["rounds"]) for s in SIDES},
        **{k: v for k, v in run.items() if k != "rounds"},
        "within_noise": all(verdicts) if verdicts else None,
    }
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        _say("interrupted; the fleets were stopped")
        sys.exit(130)
