"""``POST /api/embed`` and the legacy ``POST /api/embeddings``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from herd.sim.device import Device, DiskEntry
from herd.sim.inference import full_name
from herd.sim.protocol import (
    OllamaError,
    check_fields,
    metrics,
    request_keep_alive,
    require_model,
    resolve_num_ctx,
    validate_options,
)
from herd.sim.textgen import count_tokens, embed_vector, legacy_embedding
from herd.sim.wire import DEVICE, error_response, json_response, read_json


async def _run(
    device: Device,
    endpoint: str,
    name: str,
    entry: DiskEntry,
    body: dict[str, Any],
    n_tokens: int,
    compute: Callable[[], dict[str, Any]],
    start: int | None = None,
) -> web.Response:
    """Faults, a runner and a slot, prompt-evaluation time, then ``compute()``.

    With ``start`` (``/api/embed``) the metrics are added when there are vectors.
    """
    options = validate_options(body.get("options"))
    keep_alive = request_keep_alive(body)
    plan = device.faults.plan(name, endpoint)
    if plan.hang_after is not None:
        await device.faults.hang()
    failure = plan.fail_before or (plan.fail_after and (500, plan.fail_after[1]))
    if failure:
        device.counters.errors += 1
        return error_response(*failure)
    need_slot = n_tokens > 0
    try:
        session = device.session(
            entry, options, keep_alive, slow=plan.slow_factor, need_slot=need_slot
        )
        async with session as lease:
            delay = device.prompt_delay(entry.model, n_tokens, plan.slow_factor)
            if delay > 0:
                await asyncio.sleep(delay)
            result = compute()
            if need_slot:
                lease.runner.served += 1
    except asyncio.CancelledError:
        device.counters.client_gone += 1
        raise
    device.counters.served += 1
    device.counters.prompt_tokens += n_tokens
    if start is not None and n_tokens > 0:
        result.update(
            metrics(
                total_duration=time.perf_counter_ns() - start,
                load_duration=lease.load_ns,
                prompt_eval_count=n_tokens,
            )
        )
    return json_response(result)


async def embed(request: web.Request) -> web.StreamResponse:
    start = time.perf_counter_ns()
    device = request.app[DEVICE]
    body = await read_json(request, "EmbedRequest")
    check_fields(body, "EmbedRequest")
    name = require_model(body)
    entry = device.lookup(name)
    model = entry.model
    if not model.has("embedding"):
        raise OllamaError(400, f"{full_name(name)} does not support embedding")
    raw = body.get("input")
    if raw is None or raw == "":
        inputs: list[str] = []
    elif isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        inputs = list(raw)
    else:
        raise OllamaError(400, "invalid input type")
    options = validate_options(body.get("options"))
    ctx = resolve_num_ctx(options, device.profile.default_num_ctx, model.context_length)
    counts = [count_tokens(text) for text in inputs]
    if body.get("truncate") is False and any(n > ctx for n in counts):
        raise OllamaError(400, "the input length exceeds the context length")
    total = sum(min(n, ctx) for n in counts)
    dims = body.get("dimensions")
    cut = int(dims) if isinstance(dims, int | float) and dims > 0 else None
    device.count_request("embed")

    def compute() -> dict[str, Any]:
        vectors = [embed_vector(model.key, text, model.dims, cut) for text in inputs]
        return {"model": name, "embeddings": vectors}

    return await _run(device, "embed", name, entry, body, total, compute, start)


async def embeddings(request: web.Request) -> web.StreamResponse:
    device = request.app[DEVICE]
    body = await read_json(request, "EmbeddingRequest")
    check_fields(body, "EmbeddingRequest")
    name = require_model(body)
    entry = device.find(name)
    if entry is None:
        raise OllamaError(404, f'model "{name}" not found, try pulling it first')
    prompt = body.get("prompt") or ""
    model = entry.model
    device.count_request("embeddings")

    def compute() -> dict[str, Any]:
        vec = legacy_embedding(model.key, prompt, model.dims) if prompt else []
        return {"embedding": vec}

    return await _run(device, "embeddings", name, entry, body, count_tokens(prompt), compute)
