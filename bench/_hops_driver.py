"""The driver side of ``bench/hops.py``: HTTP timings per hop, CPU per request, output.

Kept apart from ``hops.py`` because that file's probe actor and Serve app are pickled
by value from ``__main__``; nothing here goes to a worker.
"""

from __future__ import annotations

from _load import (
    Target,
    alternating_throughput,
    cpu_by_process,
    cpu_snapshot,
    interleaved,
    new_session,
    percentile,
    throughput,
)

PROBE_PREFIX = "/probe"


def ms_stats(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"p50": round(percentile(ms, 50), 3), "p99": round(percentile(ms, 99), 3)}


async def http_hops(
    endpoint: str, emulator: str, n: int, warmup: int, seconds: float
) -> dict[str, dict[str, float]]:
    """Every target in one interleaved loop (and alternating load windows)."""
    probe = endpoint + PROBE_PREFIX
    plain = (
        ("emulator directly", emulator + "/api/chat"),
        ("serve: canned answer", probe + "/canned"),
        ("serve: aiohttp proxy to emulator", probe + "/http"),
        ("serve: 1 empty router call", probe + "/router-ping"),
        ("serve: 1 node.complete call", probe + "/node"),
        ("serve: local RouterCore + node call", probe + "/local"),
        ("serve: Dispatcher (acquire+node+release)", probe + "/dispatch"),
        ("herd /api/chat", endpoint + "/api/chat"),
    )
    streams = (
        ("stream: emulator directly", emulator + "/api/chat"),
        ("stream: serve + node.stream", probe + "/node"),
        ("stream: local RouterCore + node.stream", probe + "/local"),
        ("stream: herd /api/chat", endpoint + "/api/chat"),
    )
    out: dict[str, dict[str, float]] = {}
    async with new_session(64) as session:
        lats = await interleaved(session, [Target(url) for _, url in plain], n, warmup)
        urls = [url for _, url in plain]
        tputs = await alternating_throughput(session, urls, 16, seconds, slices=2)
        for (name, _), lat, tput in zip(plain, lats, tputs, strict=True):
            out[name] = {
                "p50": round(lat.p50_ms, 3),
                "p99": round(lat.p99_ms, 3),
                "rps_c16": round(tput.rps, 1),
                "errors": tput.errors,
            }
        targets = [Target(url, stream=True) for _, url in streams]
        lats = await interleaved(session, targets, n, warmup)
        for (name, _), lat in zip(streams, lats, strict=True):
            out[name] = {"p50": round(lat.p50_ms, 3), "p99": round(lat.p99_ms, 3)}
    return out


async def cpu_costs(
    roots: list[int], targets: list[tuple[str, str]], seconds: float
) -> dict[str, dict[str, float]]:
    """CPU milliseconds per request, by process, during c=16 load on each target alone."""
    out: dict[str, dict[str, float]] = {}
    async with new_session(64) as session:
        for name, url in targets:
            await throughput(session, url, 16, 1.0)  # warm
            before = cpu_snapshot()
            tput = await throughput(session, url, 16, seconds)
            by_name, other = cpu_by_process(before, cpu_snapshot(), roots)
            per_req = {k: round(1000 * v / max(1, tput.ok), 3) for k, v in by_name.items()}
            per_req["(total, ours)"] = round(sum(per_req.values()), 3)
            per_req["(req/s)"] = round(tput.rps, 1)
            per_req["(other processes, CPU s/s)"] = round(other / tput.seconds, 2)
            out[name] = per_req
    return out


def print_cpu(cpu: dict[str, dict[str, float]]) -> None:
    names = sorted(
        {k for row in cpu.values() for k in row},
        key=lambda k: (k.startswith("("), -max(row.get(k, 0.0) for row in cpu.values())),
    )
    cols = list(cpu)
    width = max(len(n) for n in names)
    print()
    print("CPU ms per request at c=16".ljust(width + 2) + "  ".join(cols))
    for n in names:
        cells = []
        for c in cols:
            value = cpu[c].get(n)
            cells.append(("-" if value is None else f"{value:.3f}").rjust(len(c)))
        if any(cpu[c].get(n, 0.0) >= 0.01 for c in cols):
            print(f"{n:{width}}  " + "  ".join(cells))
