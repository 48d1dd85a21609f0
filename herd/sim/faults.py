"""Injectable faults: what can go wrong on a node, on purpose.

Kinds (:class:`herd.sim.profile.FaultSpec`):

* ``fail_before``: answer at once with HTTP ``status`` (default 500) and
  ``{"error": message}``; nothing is loaded.
* ``fail_mid_stream``: after ``after_chunks`` chunks, end the stream with a final
  ``{"error": message}`` line (status stays 200). A non-streamed request that would
  have produced more chunks than that gets a 500 instead.
* ``hang``: never answer (after ``after_chunks`` chunks; 0 = before the headers)
  until the client gives up, the faults are cleared, or the server stops.
* ``slow``: multiply every delay (load, prompt evaluation, tokens) by ``factor``.
* ``down``: the whole Ollama server fails: every route (``/api/version``, ``/api/tags``,
  ``/api/ps``, inference, ...) answers HTTP ``status`` with ``{"error": message}``, so
  a node's health probe sees its backend down. ``/_sim/`` keeps working; takes no
  ``model`` or ``endpoint``; ``count`` limits it to the next K requests of any route.

``/api/embed`` and ``/api/embeddings`` send no chunks: there ``hang`` always acts
before the answer and ``fail_mid_stream`` answers 500. A request that only loads
or unloads (empty prompt / messages) is subject to ``fail_before`` only.

Each fault may be limited to one ``model`` and/or ``endpoint`` and to the next
``count`` matching requests. When several faults of the same kind match, the
oldest applies and only its count is used up.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

from herd.domain import canonical_model
from herd.sim.profile import FaultKind, FaultSpec

DEFAULT_MESSAGES: dict[FaultKind, str] = {
    "fail_before": "llama runner process has terminated: exit status 2",
    "fail_mid_stream": "an error was encountered while running the model: unexpected EOF",
    "hang": "",
    "slow": "",
    "down": "the Ollama server is not available",
}


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The faults that apply to one request (decided once, when it arrives)."""

    fail_before: tuple[int, str] | None = None
    fail_after: tuple[int, str] | None = None
    hang_after: int | None = None
    slow_factor: float = 1.0

    @property
    def any(self) -> bool:
        return self != NO_FAULTS


NO_FAULTS = FaultPlan()


@dataclass(slots=True)
class _Active:
    id: int
    spec: FaultSpec
    key: str | None
    remaining: int | None
    hits: int = 0

    def matches(self, key: str, endpoint: str) -> bool:
        if self.key is not None and self.key != key:
            return False
        return self.spec.endpoint is None or self.spec.endpoint == endpoint

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.spec.model_dump(exclude_none=True),
            "remaining": self.remaining,
            "hits": self.hits,
        }


class FaultInjector:
    """The live set of faults of one device."""

    def __init__(self, specs: list[FaultSpec] | tuple[FaultSpec, ...] = ()) -> None:
        self._faults: list[_Active] = []
        self._ids = itertools.count(1)
        self._release = asyncio.Event()
        self.injected = 0
        for spec in specs:
            self.add(spec)

    def add(self, spec: FaultSpec) -> int:
        fid = next(self._ids)
        key = canonical_model(spec.model) if spec.model else None
        self._faults.append(_Active(fid, spec, key, spec.count))
        return fid

    def remove(self, fault_id: int) -> bool:
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.id != fault_id]
        return len(self._faults) != before

    def clear(self) -> int:
        """Remove every fault and wake every hung request; returns how many were removed."""
        n = len(self._faults)
        self._faults.clear()
        self.release_hangs()
        return n

    def release_hangs(self) -> None:
        self._release.set()
        self._release = asyncio.Event()

    def list(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self._faults]

    def plan(self, model: str, endpoint: str) -> FaultPlan:
        """Decide (and use up) the faults for one request."""
        if not self._faults:
            return NO_FAULTS
        key = canonical_model(model)
        chosen: dict[FaultKind, _Active] = {}
        for fault in self._faults:
            if fault.spec.kind == "down":  # whole-server faults: see :meth:`down`
                continue
            if fault.spec.kind not in chosen and fault.matches(key, endpoint):
                chosen[fault.spec.kind] = fault
        if not chosen:
            return NO_FAULTS
        for fault in chosen.values():
            fault.hits += 1
            if fault.remaining is not None:
                fault.remaining -= 1
        self._faults = [f for f in self._faults if f.remaining is None or f.remaining > 0]
        self.injected += 1

        def message(kind: FaultKind) -> str:
            return chosen[kind].spec.message or DEFAULT_MESSAGES[kind]

        fb = chosen.get("fail_before")
        fm = chosen.get("fail_mid_stream")
        hang = chosen.get("hang")
        slow = chosen.get("slow")
        return FaultPlan(
            fail_before=(fb.spec.status, message("fail_before")) if fb else None,
            fail_after=(fm.spec.after_chunks, message("fail_mid_stream")) if fm else None,
            hang_after=hang.spec.after_chunks if hang else None,
            slow_factor=slow.spec.factor if slow else 1.0,
        )

    def down(self) -> tuple[int, str] | None:
        """``(status, message)`` when the server is down for this request (uses up the
        oldest ``down`` fault's count); ``None`` when it answers normally."""
        fault = next((f for f in self._faults if f.spec.kind == "down"), None)
        if fault is None:
            return None
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
        self.injected += 1
        return fault.spec.status, fault.spec.message or DEFAULT_MESSAGES["down"]

    async def hang(self) -> None:
        """Block until the faults are cleared or the server stops (or the caller is cancelled)."""
        await self._release.wait()
