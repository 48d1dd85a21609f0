"""A stall deadline that costs no timer per chunk: :class:`IdleTimeout`.

``asyncio.timeout`` around every read of a stream schedules and cancels one timer per
chunk. An :class:`IdleTimeout` keeps one timer for the whole stream: each read that
makes progress only notes the time (:meth:`IdleTimeout.touch`), and the timer, when it
fires, either finds the stream idle for ``limit`` seconds (and cancels the task, which
raises ``TimeoutError`` from the ``async with``, as ``asyncio.timeout`` does) or moves
itself to ``last progress + limit``. While paused (the task is away doing something
else, e.g. an async generator handing a batch to its consumer) it never fires.

    async with IdleTimeout(30.0) as idle:
        async for chunk in source:
            idle.touch()
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class IdleTimeout:
    __slots__ = ("_fired", "_handle", "_last", "_loop", "_paused", "_task", "limit")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._paused = False
        self._fired = False

    async def __aenter__(self) -> IdleTimeout:
        self._loop = loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._last = loop.time()
        self._handle = loop.call_at(self._last + self.limit, self._check)
        return self

    def touch(self, limit: float | None = None) -> None:
        """Progress: the stream may now be idle for ``limit`` (default: unchanged) more."""
        if limit is not None:
            self.limit = limit
        assert self._loop is not None
        self._last = self._loop.time()

    def pause(self) -> None:
        """The task leaves the guarded reads for a while: do not count that time."""
        self._paused = True

    def resume(self) -> None:
        """Back to reading, possibly in another task (a generator resumed elsewhere)."""
        self._paused = False
        self._task = asyncio.current_task()
        self.touch()

    def _check(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if self._paused:  # resume() restarts the count; look again a full limit later
            self._handle = loop.call_at(now + self.limit, self._check)
            return
        due = self._last + self.limit
        if now < due:
            self._handle = loop.call_at(due, self._check)
            return
        self._handle = None
        if self._task is not None and not self._task.done():
            self._fired = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fired and self._task is not None:
            self._fired = False
            if self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
                raise TimeoutError(f"no progress for {self.limit:g} s") from exc
