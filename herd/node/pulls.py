"""Pulls on one node: one at a time per model, bounded by progress, never by a total.

A second pull of a model this node is already pulling **joins** the running one: it gets
the progress so far (the latest line of each step: manifest, each layer, verifying, ...)
and then every new line, and ends with the same success or error. That is what a user
of ``ollama pull`` expects: two ``ollama pull`` of one model on one Ollama share the
download of each layer and both finish; a 429 would make the second command fail
for no reason of its own (the CLI does not retry), and two herd pulls of one model
would only fetch the same bytes twice.

A pull stops when nobody follows it any more (every client left) or when the backend
sent no progress line for ``stall`` seconds (``FLEET_NODE_PULL_STALL_TIMEOUT``; Ollama
reports a download several times a second, and is silent only while it verifies a
layer). Memory per pull: one line per step, whatever the pull's length.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from herd.deadlines import IdleTimeout
from herd.domain import canonical_model
from herd.errors import BackendTimeout, NodeUnavailable

Line = dict[str, Any]


class PullJob:
    """One running pull of ``model`` and the clients following it."""

    __slots__ = (
        "_changed",
        "_on_end",
        "_seq",
        "_steps",
        "_task",
        "done",
        "error",
        "followers",
        "model",
    )

    def __init__(
        self,
        model: str,
        source: AsyncGenerator[Line, None],
        stall: float,
        where: str,
        on_end: Callable[[PullJob], None],
    ) -> None:
        self.model = model
        self.followers = 0
        self.done = False
        self.error: BaseException | None = None
        self._steps: dict[tuple[str, str], tuple[int, Line]] = {}  # step -> (seq, latest)
        self._seq = 0
        self._changed = asyncio.Event()
        self._on_end = on_end
        self._task = asyncio.create_task(self._run(source, stall, where))

    async def _run(self, source: AsyncGenerator[Line, None], stall: float, where: str) -> None:
        try:
            async with aclosing(source) as lines, IdleTimeout(stall) as idle:
                async for line in lines:
                    idle.touch()
                    self._record(line)
        except TimeoutError:
            self.error = BackendTimeout(
                f"{where}: the pull of '{self.model}' made no progress for {stall:g}s "
                "(FLEET_NODE_PULL_STALL_TIMEOUT)",
                retryable=False,
            )
        except asyncio.CancelledError:
            self.error = NodeUnavailable(f"{where}: the pull of '{self.model}' was stopped")
        except Exception as exc:  # handed to every follower
            self.error = exc
        finally:
            self.done = True
            self._on_end(self)
            self._wake()

    def _record(self, line: Line) -> None:
        step = (str(line.get("status", "")), str(line.get("digest", "")))
        self._seq += 1
        self._steps[step] = (self._seq, line)
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self) -> AsyncGenerator[Line, None]:
        """The pull's progress from its start (one line per step), then live, to its end."""
        self.followers += 1
        seen = 0
        try:
            while True:
                changed = self._changed
                fresh = sorted((s for s in self._steps.values() if s[0] > seen), key=_seq)
                for seq, line in fresh:
                    seen = seq
                    yield line
                if fresh:
                    continue  # more may have come while a line was out
                if self.done:
                    if self.error is not None:
                        raise copy.copy(self.error)
                    return
                await changed.wait()
        finally:
            self.followers -= 1
            if self.followers == 0 and not self.done:
                self._on_end(self)  # a new pull of the model starts afresh
                self._task.cancel()


def _seq(step: tuple[int, Line]) -> int:
    return step[0]


class NodePulls:
    """The pulls running on one node, by canonical model name."""

    def __init__(self, where: str, stall: float) -> None:
        self.where = where
        self.stall = stall
        self._jobs: dict[str, PullJob] = {}

    def join(self, model: str, start: Callable[[], AsyncGenerator[Line, None]]) -> PullJob:
        """The running pull of ``model``, or a new one over ``start()``."""
        key = canonical_model(model)
        job = self._jobs.get(key)
        if job is None or job.done:
            job = PullJob(model, start(), self.stall, self.where, self._ended)
            self._jobs[key] = job
        return job

    def _ended(self, job: PullJob) -> None:
        key = canonical_model(job.model)
        if self._jobs.get(key) is job:
            del self._jobs[key]

    def running(self) -> list[str]:
        return sorted(job.model for job in self._jobs.values())
