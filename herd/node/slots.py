"""Per-model parallel slots on a node, with pending requests that can be moved elsewhere.

Ollama runs at most ``OLLAMA_NUM_PARALLEL`` requests per loaded model and queues the
rest inside itself, where nobody can take them back. The node keeps that queue on its
own side instead: a request holds one of the model's slots while the backend works on
it, and waits FIFO ("pending") for a slot otherwise. A pending request has sent nothing
to the client yet, so the router can move it (rebalancer) and a draining node can hand
it back (graceful drain): :meth:`SlotGate.shed` wakes it with :class:`Rebalanced`, and
the dispatcher re-routes it to another node.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from herd.domain import canonical_model
from herd.errors import Rebalanced


@dataclass(slots=True)
class _Model:
    running: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class SlotGate:
    def __init__(self, per_model: int) -> None:
        self.per_model = max(1, per_model)
        self._models: dict[str, _Model] = {}

    # --- reads -------------------------------------------------------------------------
    def running(self) -> dict[str, int]:
        return {m: s.running for m, s in self._models.items() if s.running}

    def pending(self) -> dict[str, int]:
        return {m: len(s.waiters) for m, s in self._models.items() if s.waiters}

    # --- slots -------------------------------------------------------------------------
    @asynccontextmanager
    async def slot(self, model: str) -> AsyncIterator[None]:
        """Hold one of ``model``'s slots for the body; wait FIFO when all are taken."""
        key = canonical_model(model)
        state = self._models.setdefault(key, _Model())
        if state.running >= self.per_model or state.waiters:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            state.waiters.append(waiter)
            try:
                await waiter  # resolved by _release with the slot already counted as ours
            except BaseException:
                if waiter in state.waiters:
                    state.waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._release(key)  # we were handed a slot but leave without using it
                raise
        else:
            state.running += 1
        try:
            yield
        finally:
            self._release(key)

    def _release(self, key: str) -> None:
        state = self._models[key]
        while state.waiters:
            waiter = state.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next waiter
                return
        state.running -= 1
        if state.running == 0 and not state.waiters:
            del self._models[key]

    def shed(self, model: str | None = None, count: int | None = None, reason: str = "") -> int:
        """Hand back up to ``count`` pending requests of ``model`` (all models when None),
        newest first, so the oldest keep their place. Returns how many were shed."""
        keys = [canonical_model(model)] if model is not None else list(self._models)
        shed = 0
        for key in keys:
            state = self._models.get(key)
            while state is not None and state.waiters and (count is None or shed < count):
                waiter = state.waiters.pop()
                if not waiter.done():
                    waiter.set_exception(Rebalanced(reason or f"moved off this node ({key})"))
                    shed += 1
        return shed
