"""The router's holding queue: requests no node can take yet, FIFO per model.

:meth:`herd.routing.core.RouterCore.acquire` puts a waiter here and awaits its future;
``serve`` hands freed capacity to the oldest waiter of each model first, and nobody
behind a waiter that still finds no node jumps ahead of it. A waiter whose caller went
away (its future done) leaves the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from herd.domain import Decision
from herd.scoring import RouteQuery


@dataclass(eq=False, slots=True)
class Waiter:
    request_id: str
    models: tuple[str, ...]
    exclude: frozenset[str]
    attempt: int
    future: asyncio.Future[Decision] = field(repr=False)
    query: RouteQuery | None = None


class HoldingQueue:
    """Waiters per canonical model name, oldest first."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Waiter]] = {}

    def __bool__(self) -> bool:
        return bool(self._queues)

    def has_waiters(self, key: str) -> bool:
        return bool(self._queues.get(key))

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def by_model(self) -> dict[str, int]:
        return {m: len(q) for m, q in self._queues.items() if q}

    def join(self, key: str, waiter: Waiter) -> None:
        self._queues.setdefault(key, deque()).append(waiter)

    def leave(self, key: str, waiter: Waiter) -> None:
        """``waiter`` is done waiting (served, timed out or cancelled): out of the queue."""
        if not waiter.future.done():
            waiter.future.cancel()
        queue = self._queues.get(key)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[key]

    def serve(self, route: Callable[[Waiter], Decision | None]) -> int:
        """Give each model's oldest waiters the node ``route`` finds them, until it finds
        none. Returns how many waiters got a node."""
        served = 0
        for key in list(self._queues):
            queue = self._queues[key]
            while queue:
                head = queue[0]
                if head.future.done():  # cancelled or timed out meanwhile
                    queue.popleft()
                    continue
                decision = route(head)
                if decision is None:
                    break  # FIFO: nobody behind the head jumps ahead for this model
                queue.popleft()
                head.future.set_result(decision)
                served += 1
            if not queue:
                del self._queues[key]
        return served
