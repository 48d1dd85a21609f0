"""The dispatcher's two ports in-process, for ``bench/fleet.py``: no Ray, real code.

:class:`CoreRouter` is the router port over a real :class:`herd.routing.core.RouterCore`
(what the RouterActor wraps); :class:`AgentNodes` is the node port over the emulated
devices' real :class:`herd.node.agent.NodeAgent` streams (what each NodeActor wraps).
So ``bench/fleet.py`` runs the production attempt loop
(:class:`herd.dispatch.dispatcher.Dispatcher`): the mirror and its reports, plan and
settle, retries, moves, fallbacks, outcomes and traces. A dead device answers as a dead
actor does over Ray: ``NodeUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

from herd.dispatch.ports import Chunk, read_first
from herd.domain import Decision, InferenceRequest
from herd.errors import HerdError, NodeUnavailable
from herd.node.agent import NodeAgent
from herd.routing.core import RouterCore
from herd.routing.events import Event, MirrorData
from herd.scoring import RouteQuery


class CoreRouter:
    """The router port over a RouterCore; ``record_traces`` only counts the records."""

    def __init__(self, core: RouterCore) -> None:
        self.core = core
        self.traces = 0

    async def acquire(
        self,
        request_id: str,
        models: Sequence[str],
        exclude: frozenset[str],
        attempt: int,
        query: RouteQuery | None,
    ) -> Decision:
        return await self.core.acquire(request_id, models, exclude, attempt, query=query)

    async def report(self, source: str, seq: int, events: Sequence[Event]) -> None:
        self.core.report(source, seq, events)

    async def view(self, epoch: str | None, since: int, wait: float) -> MirrorData | None:
        return await self.core.wait_view(epoch, since, min(wait, 5.0))

    async def call(self, method: str, *args: Any) -> Any:
        if method == "record_traces":
            self.traces += len(args[0])
            return len(args[0])
        result = getattr(self.core, method)(*args)
        return await result if asyncio.iscoroutine(result) else result

    def forget(self) -> None:
        pass


class AgentAnswer:
    """A NodeAgent's answer stream as the dispatcher reads it."""

    def __init__(self, stream: AsyncGenerator[list[Chunk], None]) -> None:
        self._stream = stream
        self.first: list[Chunk] = []
        self._closer: asyncio.Task[None] | None = None

    async def next_batch(self) -> list[Chunk]:
        try:
            return await anext(self._stream)
        except (StopAsyncIteration, asyncio.CancelledError, HerdError):
            raise
        except Exception as exc:  # the backend connection broke (the device died)
            raise NodeUnavailable(f"{type(exc).__name__}: {exc}") from None

    def cancel(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._closer = asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stream.aclose()

    def finish(self) -> None:
        """Let the agent's stream run to its end (it gives its slot back there)."""
        self._closer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        with contextlib.suppress(Exception):
            async for _ in self._stream:
                pass


class AgentNodes:
    """The node port over the emulated devices' NodeAgents; ``alive(name)`` says whether
    the device is still up."""

    def __init__(self, agents: dict[str, NodeAgent], alive: Callable[[str], bool]) -> None:
        self.agents = agents
        self.alive = alive

    def _agent(self, node_id: str) -> NodeAgent:
        agent = self.agents.get(node_id)
        if agent is None or not self.alive(node_id):
            raise NodeUnavailable(f"node actor is gone ({node_id})")
        return agent

    async def open(self, node_id: str, req: InferenceRequest, model: str, data_url: str) -> Any:
        answer = AgentAnswer(self._agent(node_id).stream(req, model))
        await read_first(answer)
        return answer

    async def call(self, node_id: str, method: str, *args: Any) -> Any:
        result = getattr(self._agent(node_id), method)(*args)
        return await result if asyncio.iscoroutine(result) else result

    async def pull(self, node_id: str, model: str, insecure: bool) -> AsyncIterator[Chunk]:
        async for line in self._agent(node_id).pull(model, insecure):
            yield line

    def forget(self, node_id: str) -> None:
        pass

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
