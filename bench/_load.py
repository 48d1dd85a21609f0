"""The load generator: one aiohttp session (keep-alive), the same code for every target.

No Ray in this process: it only speaks HTTP to the emulator and to herd's ingress.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

MODEL = "smollm2:135m"
NUM_PREDICT = 8
HEADERS = {"Content-Type": "application/json"}
MESSAGES = [{"role": "user", "content": "Say hi."}]


def _body(**fields: Any) -> bytes:
    return json.dumps(
        {"model": MODEL, "messages": MESSAGES, "options": {"num_predict": NUM_PREDICT}, **fields}
    ).encode()


CHAT = _body(stream=False)
CHAT_STREAM = _body(stream=True)
OPENAI_STREAM = json.dumps(
    {"model": MODEL, "messages": MESSAGES, "max_tokens": NUM_PREDICT, "stream": True}
).encode()


class BadResponse(RuntimeError):
    pass


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latencies:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    n: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latencies:
        ms = [s * 1000 for s in seconds]
        return cls(percentile(ms, 50), percentile(ms, 99), sum(ms) / max(1, len(ms)), len(ms))


def new_session(connections: int = 64) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def complete_once(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    """One non-streaming request, whole body read; seconds."""
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers=HEADERS) as resp:
        payload = await resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise BadResponse(f"{url}: HTTP {resp.status}: {payload[:200]!r}")
    return elapsed


async def first_chunk_once(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    sse: bool = False,
    sse_end: tuple[bytes, ...] = (b"data: [DONE]",),
) -> float:
    """One streaming request: seconds until the first NDJSON line (or SSE ``data:`` line);
    the rest of the stream is then read and checked (an SSE stream's last line must hold
    one of ``sse_end``)."""
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers=HEADERS) as resp:
        if resp.status != 200:
            raise BadResponse(f"{url}: HTTP {resp.status}: {(await resp.read())[:200]!r}")
        while True:
            line = await resp.content.readline()
            if not line:
                raise BadResponse(f"{url}: stream ended before its first chunk")
            if line.strip() and (not sse or line.startswith(b"data:")):
                break
        elapsed = time.perf_counter() - t0
        rest = await resp.read()
    last = (line + rest).rstrip().rsplit(b"\n", 1)[-1]
    if sse and not any(end in last for end in sse_end):
        raise BadResponse(f"{url}: SSE stream did not end with {sse_end!r}: {last[:120]!r}")
    if not sse and b'"done":true' not in last.replace(b" ", b""):
        raise BadResponse(f"{url}: NDJSON stream did not end with done: {last[:120]!r}")
    return elapsed


@dataclass(frozen=True, slots=True)
class StreamTrace:
    """One streamed answer as the client saw it: when the request went out, and for each
    read that completed lines, when it returned (``perf_counter``) and how many."""

    start: float
    times: list[float]
    counts: list[int]


async def stream_trace(session: aiohttp.ClientSession, url: str, body: bytes) -> StreamTrace:
    """One NDJSON stream read with ``readany`` (no per-line parsing: one clock read and
    one ``bytes.count`` per read), checked to end with ``"done":true``."""
    clock = time.perf_counter
    t0 = clock()
    times: list[float] = []
    counts: list[int] = []
    tail = b""
    async with session.post(url, data=body, headers=HEADERS) as resp:
        if resp.status != 200:
            raise BadResponse(f"{url}: HTTP {resp.status}: {(await resp.read())[:200]!r}")
        read = resp.content.readany
        while data := await read():
            now = clock()
            if n := data.count(b"\n"):
                times.append(now)
                counts.append(n)
            tail = data[-512:] if len(data) >= 512 else (tail + data)[-512:]
    last = tail.rstrip().rsplit(b"\n", 1)[-1]
    if not times or b'"done":true' not in last.replace(b" ", b""):
        raise BadResponse(f"{url}: NDJSON stream did not end with done: {last[:120]!r}")
    return StreamTrace(t0, times, counts)


def percentiles(values: Sequence[float], qs: Sequence[float], zeros: int = 0) -> list[float]:
    """Nearest-rank percentiles of ``values`` plus ``zeros`` more values of 0.0 (sorted
    once; the zeros are counted, not stored)."""
    ordered = sorted(values)
    n = len(ordered) + zeros
    if not n:
        return [math.nan for _ in qs]
    out = []
    for q in qs:
        rank = max(1, math.ceil(q / 100 * n))
        out.append(0.0 if rank <= zeros else ordered[rank - zeros - 1])
    return out


@dataclass(frozen=True)
class Target:
    """One endpoint and how to call it (``body``: another dialect's request; default:
    Ollama's chat, or OpenAI's when ``sse``)."""

    url: str
    stream: bool = False
    sse: bool = False
    body: bytes | None = None
    sse_end: tuple[bytes, ...] = (b"data: [DONE]",)

    async def once(self, session: aiohttp.ClientSession) -> float:
        if not self.stream:
            return await complete_once(session, self.url, self.body or CHAT)
        body = self.body or (OPENAI_STREAM if self.sse else CHAT_STREAM)
        return await first_chunk_once(session, self.url, body, self.sse, self.sse_end)


async def interleaved(
    session: aiohttp.ClientSession,
    targets: Sequence[Target],
    n: int,
    warmup: int,
    block: int = 10,
) -> list[Latencies]:
    """``n`` requests per target, one at a time, in blocks of ``block`` that alternate
    between the targets (the order rotating every round), after ``warmup`` unmeasured
    requests each. Background noise lands on every target alike; blocks (rather than
    single alternating requests) keep one target's leftover work (a fire-and-forget
    report, metrics) from landing on the next target's every request."""
    for target in targets:
        for _ in range(warmup):
            await target.once(session)
    samples: list[list[float]] = [[] for _ in targets]
    for r in range(math.ceil(n / block)):
        shift = r % len(targets)
        for k in [*range(shift, len(targets)), *range(shift)]:
            for _ in range(min(block, n - len(samples[k]))):
                samples[k].append(await targets[k].once(session))
    return [Latencies.of(s) for s in samples]


async def sequential(
    session: aiohttp.ClientSession, url: str, n: int, warmup: int, stream: bool, sse: bool = False
) -> Latencies:
    """``warmup`` unmeasured requests, then ``n`` measured ones, one at a time."""
    (lat,) = await interleaved(session, [Target(url, stream, sse)], n, warmup)
    return lat


@dataclass(frozen=True)
class Throughput:
    rps: float
    ok: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float


async def throughput(
    session: aiohttp.ClientSession, url: str, concurrency: int, seconds: float
) -> Throughput:
    """``concurrency`` clients in a closed loop for ``seconds`` (after a short warm-up)."""
    (result,) = await alternating_throughput(session, [url], concurrency, seconds, slices=1)
    return result


async def alternating_throughput(
    session: aiohttp.ClientSession,
    urls: Sequence[str],
    concurrency: int,
    seconds: float,
    slices: int = 4,
) -> list[Throughput]:
    """Closed-loop load on each URL in turn, ``slices`` windows of ``seconds / slices``
    each per URL (so a burst of background load hits all of them), after a warm-up."""
    for url in urls:
        warm_until = time.perf_counter() + min(1.0, seconds / 3)
        await asyncio.gather(*(_loop(session, url, warm_until, [], []) for _ in range(concurrency)))
    samples: list[list[float]] = [[] for _ in urls]
    errors: list[list[str]] = [[] for _ in urls]
    spent = [0.0 for _ in urls]
    for _ in range(slices):
        for k, url in enumerate(urls):
            t0 = time.perf_counter()
            deadline = t0 + seconds / slices
            await asyncio.gather(
                *(_loop(session, url, deadline, samples[k], errors[k]) for _ in range(concurrency))
            )
            spent[k] += time.perf_counter() - t0
    results = []
    for k in range(len(urls)):
        lat = Latencies.of(samples[k])
        results.append(
            Throughput(
                len(samples[k]) / spent[k],
                len(samples[k]),
                len(errors[k]),
                spent[k],
                lat.p50_ms,
                lat.p99_ms,
            )
        )
    return results


async def _loop(
    session: aiohttp.ClientSession,
    url: str,
    deadline: float,
    samples: list[float],
    errors: list[str],
) -> None:
    while time.perf_counter() < deadline:
        try:
            samples.append(await complete_once(session, url, CHAT))
        except (BadResponse, aiohttp.ClientError, TimeoutError) as exc:
            errors.append(str(exc))
            if len(errors) > 1000:
                raise BadResponse(f"too many errors, last: {exc}") from None


# --- CPU accounting (Linux /proc) -------------------------------------------------------
def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, utime+stime in clock ticks, short name) for every process."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), _name(argv))
    return table


def _name(argv: list[bytes]) -> str:
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0].split(".")[0][:48]
    base = Path(words[0]).name
    if base.startswith("python") and len(words) > 1:
        script = words[2] if words[1] in ("-m", "-u") and len(words) > 2 else words[1]
        if "herd.sim" in words:
            return "emulator (herd.sim)"
        if script.endswith("/ray") and "start" in words:
            return "ray start (head)" if "--head" in words else "ray start (worker)"
        return f"python {Path(script).name}"[:48]
    return base[:48]


def descendants(roots: Sequence[int], table: dict[int, tuple[int, int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _ticks, _name) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    return seen


def cpu_snapshot() -> dict[int, tuple[int, int, str]]:
    return _proc_table()


def cpu_by_process(
    before: dict[int, tuple[int, int, str]],
    after: dict[int, tuple[int, int, str]],
    roots: Sequence[int],
) -> tuple[dict[str, float], float]:
    """CPU seconds spent between two snapshots by the processes under ``roots`` (grouped
    by name), and by every other process on the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    ours = descendants(roots, after) | descendants(roots, before)
    by_name: dict[str, float] = {}
    other = 0.0
    for pid, (_ppid, ticks, name) in after.items():
        spent = (ticks - before.get(pid, (0, 0, ""))[1]) / tick
        if spent <= 0:
            continue
        if pid in ours:
            by_name[name] = by_name.get(name, 0.0) + spent
        else:
            other += spent
    return by_name, other
