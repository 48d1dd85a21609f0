"""Stream scale: N concurrent clients each streaming a long ``/api/chat`` answer, against
the Ollama emulator alone ("backend") and through herd ("herd"), side by side.

One local fleet is started in a child process (``bench/_fleet.py``: Ray head with the
router and the Serve ingress, one worker Ray node with a NodeActor over the emulator).
The emulator runs the ``instant`` profile made to stream: ``instant`` off (it would send
a whole answer in one write), no prompt or load delays, ``--tokens-per-s`` generation
(1000: a chunk every ms), answers of ``--tokens`` tokens (256) in chunks of
``--chunk-tokens`` (1: one NDJSON line per token, as Ollama), 64 parallel slots (herd's
node allows at most 64: at c=128 half the streams wait for a slot, on both targets).

This process is the load generator (aiohttp, no Ray). For each concurrency level
(``--concurrency 1,16,64,128``) both targets get ``--slices`` windows each of
``--seconds / --slices`` (alternating backend/herd, the first target alternating per
level), after a warm-up of c short streams each. In a window c clients each stream one
answer after the other until the window ends (the streams then running finish, outside
the window). A read of the stream costs one clock read and one ``bytes.count``: lines are
timestamped when the read that completes them returns; stats are computed afterwards.
Per level and target:

* chunks/s: NDJSON lines received by all clients inside the windows / window time;
* per-stream chunks/s, median: (lines - 1) / (last line - first line) of each stream;
* inter-chunk gap p50/p99 (ms) between consecutive lines of a stream (lines that arrive
  in one read are 0 apart), time to first chunk p50/p99 (ms), errors;
* CPU (cores) of this client process, and of every process of the fleet by name, over
  the windows and their tails: a client near 1.0 core is the bottleneck, not herd; and
  of every other process on the machine (noise, e.g. a test suite).

Per level, herd/backend of chunks/s and herd - backend of the gaps. Prints a table, then
one line of JSON (``{"bench": "stream_scale", ...}``) as the last line of stdout.
``--quick`` runs short windows (under ~2 minutes in all).

    python bench/stream_scale.py [--quick] [--concurrency 1,16,64,128] [--seconds 10]
        [--slices 2] [--tokens 256] [--tokens-per-s 1000] [--chunk-tokens 1]
        [--mode haproxy|default]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from _fleet import MODES, FleetProcess
from _load import (
    CHAT_STREAM,
    MESSAGES,
    MODEL,
    BadResponse,
    StreamTrace,
    cpu_by_process,
    cpu_snapshot,
    first_chunk_once,
    percentiles,
    stream_trace,
)

TARGETS = ("backend", "herd")
MAX_ERRORS = 200  # per window: the clients stop early past this
TAIL_S = 120.0  # a window's streams must all end this long after the window


@dataclass(frozen=True)
class Config:
    levels: tuple[int, ...]
    seconds: float  # measured per level and target, split into slices
    slices: int
    tokens: int
    tokens_per_s: float
    chunk_tokens: int
    mode: str


@dataclass
class Window:
    start: float
    deadline: float
    end: float = 0.0
    traces: list[StreamTrace] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    client_cpu_s: float = 0.0
    procs: dict[str, float] = field(default_factory=dict)  # CPU seconds by process name
    other_cpu_s: float = 0.0  # by every process on the machine that is not ours


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emulator_profile(cfg: Config) -> dict[str, Any]:
    return {
        "extends": "instant",
        "description": "instant, but streaming: fast, one write per chunk",
        "instant": False,
        "tokens_per_s": cfg.tokens_per_s,
        "prompt_tokens_per_s": 0.0,
        "load_bytes_per_s": 0.0,
        "response_tokens": cfg.tokens,
        "stream_chunk_tokens": cfg.chunk_tokens,
    }


def chat_body(tokens: int) -> bytes:
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    return json.dumps({**body, "options": {"num_predict": tokens}}).encode()


async def _client(session: aiohttp.ClientSession, url: str, body: bytes, w: Window) -> None:
    while time.perf_counter() < w.deadline and len(w.errors) < MAX_ERRORS:
        try:
            w.traces.append(await stream_trace(session, url, body))
        except (BadResponse, aiohttp.ClientError, TimeoutError) as exc:
            w.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(0.01)


async def run_window(
    session: aiohttp.ClientSession, url: str, body: bytes, c: int, seconds: float, roots: list[int]
) -> Window:
    before, cpu0 = cpu_snapshot(), time.process_time()
    t0 = time.perf_counter()
    w = Window(t0, t0 + seconds)
    clients = asyncio.gather(*(_client(session, url, body, w) for _ in range(c)))
    try:
        await asyncio.wait_for(clients, timeout=seconds + TAIL_S)
    except TimeoutError:
        w.errors.append(f"window overran by {TAIL_S:g} s: streams cut")
    w.end = time.perf_counter()
    w.client_cpu_s = time.process_time() - cpu0
    w.procs, w.other_cpu_s = cpu_by_process(before, cpu_snapshot(), roots)
    return w


def _r(value: float, digits: int = 2) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def summarize(windows: list[Window]) -> dict[str, Any]:
    """One target's windows at one level -> its numbers (ms, chunks/s, cores)."""
    in_window = 0
    gaps: list[float] = []
    zeros = 0
    rates: list[float] = []
    ttft: list[float] = []
    lines: list[float] = []
    for w in windows:
        for tr in w.traces:
            ts, ns = tr.times, tr.counts
            in_window += sum(n for t, n in zip(ts, ns, strict=True) if t <= w.deadline)
            ttft.append(ts[0] - tr.start)
            zeros += sum(ns) - len(ns)  # lines that came in the same read as the one before
            gaps.extend(b - a for a, b in itertools.pairwise(ts))
            total = sum(ns)
            lines.append(total)
            if ts[-1] > ts[0]:
                rates.append((total - 1) / (ts[-1] - ts[0]))
    window_s = sum(w.deadline - w.start for w in windows)
    busy_s = sum(w.end - w.start for w in windows)
    procs: dict[str, float] = {}
    for w in windows:
        for name, spent in w.procs.items():
            procs[name] = procs.get(name, 0.0) + spent
    gap50, gap99 = percentiles(gaps, (50, 99), zeros)
    ttft50, ttft99 = percentiles(ttft, (50, 99))
    (rate50,) = percentiles(rates, (50,))
    (lines50,) = percentiles(lines, (50,))
    errors = [e for w in windows for e in w.errors]
    top = sorted(procs.items(), key=lambda kv: -kv[1])[:8]
    return {
        "chunks_per_s": round(in_window / window_s, 1),
        "stream_chunks_per_s_p50": _r(rate50, 1),
        "gap_p50_ms": _r(gap50 * 1000, 3),
        "gap_p99_ms": _r(gap99 * 1000, 3),
        "ttft_p50_ms": _r(ttft50 * 1000),
        "ttft_p99_ms": _r(ttft99 * 1000),
        "streams": len(ttft),
        "lines_per_stream_p50": _r(lines50, 0),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "window_s": round(window_s, 2),
        "busy_s": round(busy_s, 2),  # the windows plus their tails
        "client_cpu_cores": round(sum(w.client_cpu_s for w in windows) / busy_s, 2),
        "cpu_cores": {name: round(spent / busy_s, 2) for name, spent in top},
        "other_cpu_cores": round(sum(w.other_cpu_s for w in windows) / busy_s, 2),
    }


def _pair(row: dict[str, Any], key: str, herd: dict[str, Any], backend: dict[str, Any]) -> None:
    h, b = herd[key], backend[key]
    row[f"added_{key}"] = None if h is None or b is None else round(h - b, 3)


async def run_levels(info: dict[str, Any], cfg: Config, roots: list[int]) -> list[dict[str, Any]]:
    urls = {"backend": info["emulator"] + "/api/chat", "herd": info["endpoint"] + "/api/chat"}
    body = chat_body(cfg.tokens)
    limit = 2 * max(cfg.levels) + 16
    timeout = aiohttp.ClientTimeout(total=TAIL_S, sock_read=30)
    connector = aiohttp.TCPConnector(limit=limit, keepalive_timeout=60)
    levels = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for i, c in enumerate(cfg.levels):
            order = TARGETS if i % 2 == 0 else TARGETS[::-1]
            for target in order:  # warm-up: c connections, the herd path
                await asyncio.gather(
                    *(first_chunk_once(session, urls[target], CHAT_STREAM) for _ in range(c))
                )
            windows: dict[str, list[Window]] = {t: [] for t in TARGETS}
            for s in range(cfg.slices):
                for target in order:
                    _say(f"  c={c} {target} window {s + 1}/{cfg.slices} ...")
                    w = await run_window(
                        session, urls[target], body, c, cfg.seconds / cfg.slices, roots
                    )
                    windows[target].append(w)
            row: dict[str, Any] = {"concurrency": c, "first": order[0]}
            row.update({t: summarize(windows[t]) for t in TARGETS})
            b, h = row["backend"], row["herd"]
            row["ratio_chunks_per_s"] = (
                round(h["chunks_per_s"] / b["chunks_per_s"], 3) if b["chunks_per_s"] else None
            )
            for key in ("gap_p50_ms", "gap_p99_ms", "ttft_p50_ms"):
                _pair(row, key, h, b)
            _say(
                f"  c={c}: backend {b['chunks_per_s']:.0f} chunks/s, herd "
                f"{h['chunks_per_s']:.0f} chunks/s (x{row['ratio_chunks_per_s']})"
            )
            levels.append(row)
    return levels


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.2f}"
    return str(value)


HEAD = ["c", "target", "chunks/s", "herd/backend", "per-stream c/s p50", "gap p50 ms",
        "gap p99 ms", "ttft p50 ms", "streams", "lines/stream", "errors", "client cpu"]  # fmt: skip
KEYS = ["chunks_per_s", None, "stream_chunks_per_s_p50", "gap_p50_ms", "gap_p99_ms",
        "ttft_p50_ms", "streams", "lines_per_stream_p50", "errors", "client_cpu_cores"]  # fmt: skip


def table(levels: list[dict[str, Any]]) -> str:
    rows = [HEAD]
    for row in levels:
        for target in TARGETS:
            m = row[target]
            cells = [str(row["concurrency"]), target]
            for key in KEYS:
                if key is None:
                    cells.append(_cell(row["ratio_chunks_per_s"]) if target == "herd" else "")
                else:
                    cells.append(_cell(m[key]))
            rows.append(cells)
        rows.append(
            ["", "added", "", "", "", _cell(row["added_gap_p50_ms"]),
             _cell(row["added_gap_p99_ms"]), _cell(row["added_ttft_p50_ms"]), "", "", "", ""]
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    lines = []
    for r in rows:
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def busiest(levels: list[dict[str, Any]]) -> str:
    out = ["CPU (cores) by process while streaming through herd:"]
    for row in levels:
        procs = ", ".join(f"{n} {v:.2f}" for n, v in row["herd"]["cpu_cores"].items() if v >= 0.01)
        out.append(f"  c={row['concurrency']}: {procs}")
    pairs = ((r["concurrency"], r["backend"], r["herd"]) for r in levels)
    other = ", ".join(
        f"c={c} {b['other_cpu_cores']:.2f}/{h['other_cpu_cores']:.2f}" for c, b, h in pairs
    )
    out.append(f"CPU used by other processes on this machine (cores, backend/herd): {other}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 s per level and target")
    parser.add_argument("--concurrency", default="1,16,64,128", help="levels, comma-separated")
    parser.add_argument("--seconds", type=float, help="per level and target (10; quick 2)")
    parser.add_argument("--slices", type=int, help="alternating windows per target (2; quick 1)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per answer")
    parser.add_argument("--tokens-per-s", type=float, default=1000.0, help="per stream")
    parser.add_argument("--chunk-tokens", type=int, default=1, help="tokens per chunk")
    parser.add_argument("--mode", choices=MODES, default=MODES[0], help="Serve proxy mode")
    parser.add_argument(
        "--ray-env", action="append", default=[], metavar="NAME=VALUE", help="for the Ray nodes"
    )
    args = parser.parse_args(argv)
    try:
        args.levels = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
    except ValueError:
        parser.error(f"--concurrency takes integers, got {args.concurrency!r}")
    if not args.levels or not all(0 < c <= 1024 for c in args.levels):
        parser.error("--concurrency takes 1..1024 clients per level")
    if args.tokens < 2 or args.tokens_per_s <= 0 or args.chunk_tokens < 1:
        parser.error("--tokens >= 2, --tokens-per-s > 0, --chunk-tokens >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(
        levels=args.levels,
        seconds=args.seconds or (2.0 if args.quick else 10.0),
        slices=max(1, args.slices or (1 if args.quick else 2)),
        tokens=args.tokens,
        tokens_per_s=args.tokens_per_s,
        chunk_tokens=args.chunk_tokens,
        mode=args.mode,
    )
    load_before = os.getloadavg()
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="stream-scale-") as tmp:
        json.dump(emulator_profile(cfg), tmp)
        tmp.flush()
        _say(f"{cfg.mode}: starting a local fleet (Ray head + 1 worker, streaming emulator) ...")
        fleet = FleetProcess(cfg.mode, 1, args.ray_env, profile=tmp.name)
        try:
            info = fleet.ready()
            startup = round(info["startup_s"], 1)
            _say(f"up in {startup} s at {info['endpoint']}; measuring ...")
            roots = [*info["pids"], fleet.proc.pid, os.getpid()]
            levels = asyncio.run(run_levels(info, cfg, roots))
        finally:
            fleet.wait()
    print(table(levels), flush=True)
    print(busiest(levels))
    summary = {
        "bench": "stream_scale",
        "quick": args.quick,
        "mode": cfg.mode,
        "concurrency": list(cfg.levels),
        "seconds": cfg.seconds,
        "slices": cfg.slices,
        "tokens": cfg.tokens,
        "tokens_per_s": cfg.tokens_per_s,
        "chunk_tokens": cfg.chunk_tokens,
        "ray_env": args.ray_env,
        "cpus": os.cpu_count(),
        "loadavg_1m_before": round(load_before[0], 2),
        "startup_s": startup,
        "ratio_chunks_per_s": {str(r["concurrency"]): r["ratio_chunks_per_s"] for r in levels},
        "added_gap_p99_ms": {str(r["concurrency"]): r["added_gap_p99_ms"] for r in levels},
        "levels": levels,
    }
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        _say("interrupted; the fleet was stopped")
        sys.exit(130)
