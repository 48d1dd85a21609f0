"""``POST /api/generate`` and ``POST /api/chat``."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from herd.sim.device import Device, DiskEntry
from herd.sim.engine import Job, Piece, Timings, logprob_entries, run_job
from herd.sim.profile import SimModel
from herd.sim.protocol import (
    KeepAliveArg,
    OllamaError,
    check_fields,
    created_at,
    request_keep_alive,
    require_model,
    stream_flag,
    think_value,
    validate_options,
)
from herd.sim.textgen import Completion, plan_completion, token_ids, tokenize
from herd.sim.wire import DEVICE, json_response, read_json


def full_name(name: str) -> str:
    """How Ollama names a model in capability errors."""
    parts = name.split("/")
    if len(parts) == 1:
        parts = ["registry.ollama.ai", "library", *parts]
    elif len(parts) == 2:
        parts = ["registry.ollama.ai", *parts]
    last = parts[-1] if ":" in parts[-1] else f"{parts[-1]}:latest"
    return "/".join([*parts[:-1], last])


def think_level(body: Mapping[str, Any], model: SimModel, name: str) -> str | None:
    think = think_value(body)
    if think is None:
        return "true" if model.has("thinking") else None
    if think is False:
        return None
    if not model.has("thinking"):
        raise OllamaError(400, f'"{name}" does not support thinking')
    return "true" if think is True else str(think)


def check_format(fmt: Any) -> str | Mapping[str, Any] | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json" or isinstance(fmt, dict):
        return fmt
    raise OllamaError(
        400, f'invalid format: {json.dumps(fmt)}; expected "json" or a valid JSON schema'
    )


def check_top_logprobs(body: Mapping[str, Any]) -> int:
    top = int(body.get("top_logprobs") or 0)
    if not 0 <= top <= 20:
        raise OllamaError(400, "top_logprobs must be between 0 and 20")
    return top


@dataclass(frozen=True, slots=True)
class Common:
    name: str
    entry: DiskEntry
    options: dict[str, Any]
    keep_alive: KeepAliveArg
    stream: bool
    think: str | None
    fmt: str | Mapping[str, Any] | None
    logprobs: bool
    top_logprobs: int


def parse_common(device: Device, body: dict[str, Any], struct: str, endpoint: str) -> Common:
    check_fields(body, struct)
    name = require_model(body)
    options = validate_options(body.get("options"))
    keep_alive = request_keep_alive(body)
    entry = device.lookup(name)
    model = entry.model
    if not model.has("completion"):
        raise OllamaError(400, f'"{name}" does not support {endpoint}')
    return Common(
        name=name,
        entry=entry,
        options=options,
        keep_alive=keep_alive,
        stream=stream_flag(body),
        think=think_level(body, model, name),
        fmt=check_format(body.get("format")),
        logprobs=bool(body.get("logprobs")),
        top_logprobs=check_top_logprobs(body),
    )


async def load_or_unload(device: Device, c: Common, extra: dict[str, Any]) -> web.Response:
    """An empty prompt / message list: load the model, or unload it with ``keep_alive: 0``."""
    if c.keep_alive == 0:
        device.expire(c.entry)
        reason = "unload"
    else:
        async with device.session(c.entry, c.options, c.keep_alive, need_slot=False):
            pass
        reason = "load"
    body = {"model": c.name, "created_at": created_at(), **extra}
    return json_response({**body, "done": True, "done_reason": reason})


_CACHE: OrderedDict[tuple[Any, ...], Completion] = OrderedDict()
_CACHE_SIZE = 1024


def _completion(
    c: Common,
    device: Device,
    prompt: str,
    tools: list[Any] | None = None,
    last_user: str | None = None,
) -> Completion:
    """The deterministic answer; answers without tools or a schema are memoised."""
    p = device.profile
    n_tokens = (p.response_tokens, p.response_tokens_max or p.response_tokens)
    seed = c.options.get("seed", "")
    stop = tuple(c.options.get("stop") or ())
    key: tuple[Any, ...] | None = None
    if not tools and not isinstance(c.fmt, Mapping):
        key = (c.entry.model.key, prompt, seed, n_tokens, c.fmt, c.think, stop,
               c.options.get("num_predict"))  # fmt: skip
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    completion = plan_completion(
        model=c.entry.model.key,
        prompt=prompt,
        seed=seed,
        n_tokens=n_tokens,
        fmt=c.fmt,
        tools=tools,
        last_user=last_user,
        think=c.think,
        num_predict=c.options.get("num_predict"),
        stop=stop,
    )
    if key is not None:
        _CACHE[key] = completion
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return completion


# --- /api/generate -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GenerateShape:
    name: str
    context: list[int] | None
    logprobs: bool
    top: int

    def chunk(self, piece: Piece) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.name, "created_at": created_at()}
        if piece.kind == "thinking":
            out.update(response="", thinking=piece.text)
        else:
            out["response"] = piece.text
            if self.logprobs:
                out["logprobs"] = logprob_entries(piece.text, self.top)
        out["done"] = False
        return out

    def final(self, done_reason: str, timings: Timings) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.name, "created_at": created_at(), "response": ""}
        out.update(done=True, done_reason=done_reason)
        if self.context is not None:
            out["context"] = self.context
        return {**out, **timings.as_metrics()}

    def whole(self, completion: Completion, timings: Timings) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.name, "created_at": created_at()}
        out["response"] = completion.text
        if completion.thinking:
            out["thinking"] = completion.thinking_text
        if self.logprobs:
            out["logprobs"] = [e for t in completion.content for e in logprob_entries(t, self.top)]
        out.update(done=True, done_reason=completion.done_reason)
        if self.context is not None:
            out["context"] = self.context
        return {**out, **timings.as_metrics()}


async def generate(request: web.Request) -> web.StreamResponse:
    start = time.perf_counter_ns()
    device = request.app[DEVICE]
    body = await read_json(request, "GenerateRequest")
    c = parse_common(device, body, "GenerateRequest", "generate")
    model = c.entry.model
    raw = bool(body.get("raw"))
    if raw and (body.get("template") or body.get("system") or body.get("context")):
        raise OllamaError(400, "raw mode does not support template, system, or context")
    if body.get("suffix") and not model.has("insert"):
        raise OllamaError(400, f"{full_name(c.name)} does not support insert")
    images = body.get("images") or []
    if images and not model.has("vision"):
        raise OllamaError(400, f"{full_name(c.name)} does not support vision")
    prompt = body.get("prompt") or ""
    device.count_request("generate")
    plan = device.faults.plan(c.name, "generate")
    if not prompt and not images:
        if plan.fail_before is not None:
            return json_response({"error": plan.fail_before[1]}, plan.fail_before[0])
        return await load_or_unload(device, c, {"response": ""})
    full = f"{body.get('system') or ''}\n{prompt}{body.get('suffix') or ''}"
    prompt_tokens = tokenize(full) + ["<img>"] * len(images)
    completion = _completion(c, device, full)
    context = None if raw else token_ids([*prompt_tokens, *completion.content])[-4096:]
    shape = GenerateShape(c.name, context, c.logprobs, c.top_logprobs)
    job = Job(
        "generate",
        c.entry,
        c.options,
        c.keep_alive,
        c.stream,
        completion,
        prompt_tokens,
        shape,
        plan,
        start,
    )
    return await run_job(request, device, job)


# --- /api/chat -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatShape:
    name: str
    logprobs: bool
    top: int

    def chunk(self, piece: Piece) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": ""}
        out: dict[str, Any] = {"model": self.name, "created_at": created_at(), "message": msg}
        if piece.kind == "thinking":
            msg["thinking"] = piece.text
        elif piece.kind == "tool_calls":
            msg["tool_calls"] = list(piece.calls)
        else:
            msg["content"] = piece.text
            if self.logprobs:
                out["logprobs"] = logprob_entries(piece.text, self.top)
        out["done"] = False
        return out

    def final(self, done_reason: str, timings: Timings) -> dict[str, Any]:
        out = {"model": self.name, "created_at": created_at()}
        msg = {"role": "assistant", "content": ""}
        return {
            **out,
            "message": msg,
            "done": True,
            "done_reason": done_reason,
            **timings.as_metrics(),
        }

    def whole(self, completion: Completion, timings: Timings) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": completion.text}
        if completion.thinking:
            msg["thinking"] = completion.thinking_text
        if completion.tool_calls:
            msg["tool_calls"] = list(completion.tool_calls)
        out: dict[str, Any] = {"model": self.name, "created_at": created_at(), "message": msg}
        if self.logprobs:
            out["logprobs"] = [e for t in completion.content for e in logprob_entries(t, self.top)]
        out.update(done=True, done_reason=completion.done_reason)
        return {**out, **timings.as_metrics()}


def render_chat(
    model: SimModel, name: str, messages: list[Any], tools: list[Any] | None
) -> tuple[str, str | None]:
    """The prompt text a chat template would produce, and the last user message (if last)."""
    parts: list[str] = []
    last_user: str | None = None
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise OllamaError(400, "json: cannot unmarshal value into Go value of type api.Message")
        role = str(msg.get("role") or "").lower()
        content = msg.get("content") or ""
        if not isinstance(content, str):
            raise OllamaError(
                400,
                "json: cannot unmarshal array into Go struct field Message.content of type string",
            )
        if msg.get("images") and not model.has("vision"):
            raise OllamaError(400, f"{full_name(name)} does not support vision")
        parts.append(f"<|{role}|>{content}\n")
        if msg.get("tool_calls"):
            parts.append(json.dumps(msg["tool_calls"]))
        if i == len(messages) - 1:
            last_user = content if role == "user" else None
    if tools:
        parts.insert(0, f"<|tools|>{json.dumps(tools)}\n")
    return "".join(parts), last_user


async def chat(request: web.Request) -> web.StreamResponse:
    start = time.perf_counter_ns()
    device = request.app[DEVICE]
    body = await read_json(request, "ChatRequest")
    c = parse_common(device, body, "ChatRequest", "chat")
    model = c.entry.model
    tools = body.get("tools") or None
    if tools and not model.has("tools"):
        raise OllamaError(400, f"{full_name(c.name)} does not support tools")
    messages = body.get("messages") or []
    prompt, last_user = render_chat(model, c.name, messages, tools)
    device.count_request("chat")
    plan = device.faults.plan(c.name, "chat")
    if not messages:
        if plan.fail_before is not None:
            return json_response({"error": plan.fail_before[1]}, plan.fail_before[0])
        return await load_or_unload(device, c, {"message": {"role": "assistant", "content": ""}})
    completion = _completion(c, device, prompt, tools=tools, last_user=last_user)
    shape = ChatShape(c.name, c.logprobs, c.top_logprobs)
    job = Job(
        "chat",
        c.entry,
        c.options,
        c.keep_alive,
        c.stream,
        completion,
        tokenize(prompt),
        shape,
        plan,
        start,
    )
    return await run_job(request, device, job)
