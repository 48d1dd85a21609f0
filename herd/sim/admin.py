"""Admin endpoints under ``/_sim/`` (not part of Ollama's API).

* ``GET /_sim/state``: :meth:`Device.snapshot` (loaded models, queue, counters...).
* ``GET /_sim/faults``: ``{"faults": [...]}`` (each with ``id``, ``remaining``, ``hits``).
* ``POST /_sim/faults``: one fault object, a list, or ``{"faults": [...]}`` ->
  ``{"added": [ids], "faults": [...]}``; 400 ``{"error": ...}`` on a bad spec.
* ``DELETE /_sim/faults``: remove all (and release hung requests) -> ``{"removed": n}``.
* ``DELETE /_sim/faults/{id}``: remove one -> ``{"removed": 1}`` or 404.
* ``PATCH /_sim/profile``: change speeds/limits at runtime (keys in
  :data:`TUNABLE`) -> ``{"profile": {...}}``.
* ``POST /_sim/reset``: zero the counters and forget the event log.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from herd.sim.device import Counters
from herd.sim.profile import FaultSpec
from herd.sim.protocol import OllamaError
from herd.sim.wire import DEVICE, json_response, read_json

TUNABLE = frozenset(
    {
        "tokens_per_s",
        "prompt_tokens_per_s",
        "load_bytes_per_s",
        "pull_bytes_per_s",
        "instant",
        "keep_alive",
        "max_queue",
        "response_tokens",
        "response_tokens_max",
        "gpu_offload",
    }
)
_SPECS = TypeAdapter(list[FaultSpec])


def _error(exc: ValidationError) -> OllamaError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return OllamaError(400, f"invalid fault: {where}: {first['msg']}")


async def state(request: web.Request) -> web.Response:
    return json_response(request.app[DEVICE].snapshot())


async def list_faults(request: web.Request) -> web.Response:
    return json_response({"faults": request.app[DEVICE].faults.list()})


async def add_faults(request: web.Request) -> web.Response:
    device = request.app[DEVICE]
    try:
        raw = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OllamaError(400, f"invalid JSON body: {exc}") from None
    items: Any = raw.get("faults") if isinstance(raw, dict) and "faults" in raw else raw
    if isinstance(items, dict):
        items = [items]
    try:
        specs = _SPECS.validate_python(items)
    except ValidationError as exc:
        raise _error(exc) from None
    added = [device.faults.add(spec) for spec in specs]
    return json_response({"added": added, "faults": device.faults.list()})


async def clear_faults(request: web.Request) -> web.Response:
    return json_response({"removed": request.app[DEVICE].faults.clear()})


async def remove_fault(request: web.Request) -> web.Response:
    try:
        fid = int(request.match_info["fault_id"])
    except ValueError:
        raise OllamaError(400, "fault id must be an integer") from None
    if not request.app[DEVICE].faults.remove(fid):
        raise OllamaError(404, f"fault {fid} not found")
    return json_response({"removed": 1})


async def patch_profile(request: web.Request) -> web.Response:
    device = request.app[DEVICE]
    body = await read_json(request, "SimProfile")
    unknown = sorted(set(body) - TUNABLE)
    if unknown:
        raise OllamaError(400, f"not tunable at runtime: {', '.join(unknown)}")
    try:
        profile = device.update_profile(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise OllamaError(400, f"invalid profile: {first['loc']}: {first['msg']}") from None
    return json_response({"profile": profile.model_dump(include={*TUNABLE, "name"})})


async def reset(request: web.Request) -> web.Response:
    device = request.app[DEVICE]
    device.counters = Counters()
    device.faults.injected = 0
    device.events.clear()
    return json_response({"ok": True})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/_sim/state", state)
    app.router.add_get("/_sim/faults", list_faults)
    app.router.add_post("/_sim/faults", add_faults)
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_delete("/_sim/faults/{fault_id}", remove_fault)
    app.router.add_patch("/_sim/profile", patch_profile)
    app.router.add_post("/_sim/reset", reset)
