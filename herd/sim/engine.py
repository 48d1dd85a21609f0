"""Running one generation on a runner: timing, faults, streamed or whole answers.

The shape of the chunks (``/api/generate`` vs ``/api/chat``) is a :class:`Shape`;
this module owns the flow every generation shares:

1. faults decided on arrival (hang before anything, fail before the first chunk);
2. hold a runner and a slot (:meth:`Device.session`: queue, load, slots);
3. prompt evaluation: the tokens not in a slot's cache, at ``prompt_tokens_per_s``;
4. tokens at ``tokens_per_s`` (each piece due at ``start + i / rate``), thinking
   first, then the content or the tool-call chunk;
5. the final ``done: true`` chunk with ``done_reason`` and the metrics.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import web

from herd.sim.device import Device, DiskEntry, Lease
from herd.sim.faults import FaultPlan
from herd.sim.protocol import KeepAliveArg, metrics
from herd.sim.textgen import Completion
from herd.sim.wire import NdjsonWriter, error_response, json_response

PieceKind = Literal["thinking", "content", "tool_calls"]


@dataclass(frozen=True, slots=True)
class Piece:
    kind: PieceKind
    text: str = ""
    calls: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class Timings:
    start_ns: int
    load_ns: int = 0
    prompt_eval_count: int = 0
    prompt_eval_ns: int = 0
    eval_count: int = 0
    eval_ns: int = 0

    def as_metrics(self) -> dict[str, int]:
        return metrics(
            total_duration=time.perf_counter_ns() - self.start_ns,
            load_duration=self.load_ns,
            prompt_eval_count=self.prompt_eval_count,
            prompt_eval_duration=self.prompt_eval_ns,
            eval_count=self.eval_count,
            eval_duration=self.eval_ns,
        )


class Shape(Protocol):
    def chunk(self, piece: Piece) -> dict[str, Any]: ...

    def final(self, done_reason: str, timings: Timings) -> dict[str, Any]: ...

    def whole(self, completion: Completion, timings: Timings) -> dict[str, Any]: ...


def logprob_entries(text: str, top: int) -> list[dict[str, Any]]:
    """Deterministic fake log-probabilities for one piece."""
    h = zlib.crc32(text.encode())
    entry: dict[str, Any] = {
        "token": text,
        "logprob": -(h % 2000) / 1000.0,
        "bytes": list(text.encode()),
    }
    if top > 0:
        entry["top_logprobs"] = [
            {"token": text if i == 0 else f"{text}~{i}", "logprob": -(h % 2000 + 500 * i) / 1000.0}
            for i in range(top)
        ]
    return [entry]


def _sequence(completion: Completion) -> list[tuple[Piece, int]]:
    seq = [(Piece("thinking", t), 1) for t in completion.thinking]
    seq += [(Piece("content", t), 1) for t in completion.content]
    if completion.tool_calls:
        seq.append((Piece("tool_calls", calls=completion.tool_calls), completion.tool_tokens))
    return seq


def _grouped(seq: list[tuple[Piece, int]], size: int) -> list[tuple[Piece, int]]:
    """Merge up to ``size`` consecutive text pieces of one kind into one, after the first
    (so the first token still arrives alone); a merged piece is due with its last token."""
    if size <= 1 or len(seq) <= 2:
        return seq
    out = [seq[0]]
    for piece, weight in seq[1:]:
        last, count = out[-1]
        if (
            len(out) > 1
            and piece.kind == last.kind != "tool_calls"
            and count < size
            and weight == 1
        ):
            out[-1] = (Piece(piece.kind, last.text + piece.text), count + 1)
        else:
            out.append((piece, weight))
    return out


async def pieces(
    device: Device,
    lease: Lease,
    completion: Completion,
    prompt_tokens: Sequence[str],
    timings: Timings,
    slow: float,
) -> AsyncGenerator[Piece, None]:
    """Evaluate the prompt, then yield the pieces at the device's speed."""
    runner = lease.runner
    model = runner.model
    cached = runner.cached_prefix(prompt_tokens)
    n_prompt = len(prompt_tokens) - cached
    t = time.perf_counter_ns()
    delay = device.prompt_delay(model, n_prompt, slow)
    if delay > 0:
        await asyncio.sleep(delay)
    runner.remember(prompt_tokens)
    timings.prompt_eval_count = n_prompt
    timings.prompt_eval_ns = max(1, time.perf_counter_ns() - t) if n_prompt else 0
    interval = device.token_interval(model, slow)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    t_eval = time.perf_counter_ns()
    done = 0
    for piece, weight in _grouped(_sequence(completion), device.profile.stream_chunk_tokens):
        done += weight
        if interval > 0:
            wait = begin + done * interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        yield piece
    timings.eval_count = completion.eval_count
    timings.eval_ns = max(1, time.perf_counter_ns() - t_eval) if completion.eval_count else 0
    device.counters.prompt_tokens += n_prompt
    device.counters.eval_tokens += completion.eval_count


@dataclass(slots=True)
class Job:
    """Everything a chat/generate handler decided before running."""

    endpoint: str
    entry: DiskEntry
    options: Mapping[str, Any]
    keep_alive: KeepAliveArg
    stream: bool
    completion: Completion
    prompt_tokens: Sequence[str]
    shape: Shape
    plan: FaultPlan
    start_ns: int


async def run_job(request: web.Request, device: Device, job: Job) -> web.StreamResponse:
    """Run a generation; a client that goes away is counted (and the handler cancelled)."""
    try:
        return await _run_job(request, device, job)
    except asyncio.CancelledError:
        device.counters.client_gone += 1
        raise


async def _run_job(request: web.Request, device: Device, job: Job) -> web.StreamResponse:
    plan = job.plan
    if plan.hang_after == 0:
        await device.faults.hang()
    if plan.fail_before is not None:
        device.counters.errors += 1
        return error_response(*plan.fail_before)
    timings = Timings(job.start_ns)
    session = device.session(job.entry, job.options, job.keep_alive, slow=plan.slow_factor)
    async with session as lease:
        timings.load_ns = lease.load_ns
        if job.stream:
            resp = await _stream(request, device, job, lease, timings)
        else:
            resp = await _whole(device, job, lease, timings)
        lease.runner.served += 1
        return resp


async def _stream(
    request: web.Request, device: Device, job: Job, lease: Lease, timings: Timings
) -> web.StreamResponse:
    batch = device.profile.no_delays and not job.plan.any
    writer = NdjsonWriter(request, batch=batch)
    try:
        return await _write_stream(device, job, lease, timings, writer)
    except ConnectionResetError:
        device.counters.client_gone += 1
        return writer.response


async def _write_stream(
    device: Device, job: Job, lease: Lease, timings: Timings, writer: NdjsonWriter
) -> web.StreamResponse:
    plan = job.plan
    fail_at = plan.fail_after[0] if plan.fail_after else None
    hang_at = plan.hang_after
    sent = 0
    gen = pieces(device, lease, job.completion, job.prompt_tokens, timings, plan.slow_factor)
    async with aclosing(gen):
        async for piece in gen:
            if fail_at is not None and sent >= fail_at:
                return await _fail_stream(device, writer, plan)
            if hang_at is not None and sent >= hang_at > 0:
                await writer.flush()
                await device.faults.hang()
                hang_at = None
            await writer.send(job.shape.chunk(piece))
            sent += 1
    if fail_at is not None and sent >= fail_at:
        return await _fail_stream(device, writer, plan)
    await writer.send(job.shape.final(job.completion.done_reason, timings))
    device.counters.served += 1
    return await writer.finish()


async def _fail_stream(device: Device, writer: NdjsonWriter, plan: FaultPlan) -> web.StreamResponse:
    assert plan.fail_after is not None
    device.counters.errors += 1
    await writer.send({"error": plan.fail_after[1]})
    return await writer.finish()


async def _whole(device: Device, job: Job, lease: Lease, timings: Timings) -> web.StreamResponse:
    plan = job.plan
    n = 0
    gen = pieces(device, lease, job.completion, job.prompt_tokens, timings, plan.slow_factor)
    async with aclosing(gen):
        async for _ in gen:
            n += 1
            if plan.hang_after is not None and n == plan.hang_after:
                await device.faults.hang()
    if plan.fail_after is not None and n + 1 > plan.fail_after[0]:
        device.counters.errors += 1
        return error_response(500, plan.fail_after[1])
    device.counters.served += 1
    return json_response(job.shape.whole(job.completion, timings))
