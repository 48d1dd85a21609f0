"""In-process fakes of the dispatcher's two ports (herd/dispatch/ports.py), for unit tests.

:class:`FakeRouter` is the ``RouterPort`` over a real :class:`RouterCore` (decisions, the
holding queue, 404 vs 503, reports and views are the router's own); :class:`FakeNodes` is
the ``NodePort`` whose answers each test scripts per node (:class:`Reply`): chunks,
failures before the first chunk, failures mid-stream, hangs. :func:`running` wires a
:class:`Dispatcher` over both and closes it (and its background tasks) afterwards.
No Ray, no sockets.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from herd.dispatch.dispatcher import Dispatcher
from herd.dispatch.ports import Chunk
from herd.domain import (
    Decision,
    InferenceRequest,
    LoadedModel,
    ModelOnDisk,
    NodeHeartbeat,
    Outcome,
    RequestKind,
)
from herd.routing.core import RouterCore
from herd.routing.events import Begin, Event, MirrorData
from herd.scoring import RouteQuery
from herd.settings import Settings, load_settings
from herd.sim.testing import wait_for
from herd.traces.records import TraceRecord

GIB = 1024**3


def make_settings(**over: Any) -> Settings:
    values: dict[str, Any] = {
        # The holding queue also re-checks once per heartbeat interval: a long one means
        # a held request that is served soon was woken by the fleet change itself.
        "heartbeat_interval": 30.0,
        "heartbeat_timeout": 15.0,
        "heartbeat_offline": 30.0,
        "holding_queue_timeout": 5.0,
        "actor_call_timeout": 2.0,
        "routing_policy": "score",  # deterministic: the node with the model loaded wins
    }
    values.update(over)
    return load_settings(**values)


def heartbeat(
    node_id: str,
    *,
    models: Sequence[str] = (),
    loaded: Sequence[str] = (),
    draining: bool = False,
    memory_available: int = 8 * GIB,
    backend: str = "ollama",
) -> NodeHeartbeat:
    on_disk = tuple(dict.fromkeys((*models, *loaded)))
    return NodeHeartbeat(
        node_id=node_id,
        hostname=f"{node_id}.local",
        backend=backend,  # type: ignore[arg-type]
        backend_url="http://127.0.0.1:11434",
        backend_ok=True,
        cpu_count=8,
        memory_total=16 * GIB,
        memory_available=memory_available,
        models=tuple(ModelOnDisk(m, size=100) for m in on_disk),
        loaded=tuple(LoadedModel(m, size=100, context_length=4096) for m in loaded),
        draining=draining,
        sent_at=time.time(),
        data_url=f"http://{node_id}.local:9000",
    )


def request(
    model: str = "tiny:1b", kind: RequestKind = "chat", rid: str | None = None, **over: Any
) -> InferenceRequest:
    if kind in ("chat", "generate"):
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    else:
        body = {"model": model, "input": "hi"}
    values: dict[str, Any] = {
        "request_id": rid or uuid.uuid4().hex,
        "kind": kind,
        "model": model,
        "body": body,
        "stream": kind in ("chat", "generate"),
    }
    values.update(over)
    return InferenceRequest(**values)


# --- scripted node answers ----------------------------------------------------------------
def content(model: str, text: str) -> Chunk:
    return {"model": model, "message": {"role": "assistant", "content": text}, "done": False}


def final(model: str) -> Chunk:
    return {
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 7,
        "eval_count": 3,
        "load_duration": 250_000_000,
        "prompt_eval_duration": 10_000_000,
        "eval_duration": 30_000_000,
    }


@dataclass
class Reply:
    """What one ``open`` on a node does. ``rest`` items are batches, or an exception the
    answer raises at that point (a failure mid-stream)."""

    first: list[Chunk] = field(default_factory=list)
    rest: list[list[Chunk] | BaseException] = field(default_factory=list)
    fail: BaseException | None = None  # raised by open: a failure before the first chunk
    hang: bool = False  # open never answers
    hang_after: bool = False  # next_batch never answers once ``rest`` is used up


def chat_reply(model: str = "tiny:1b", *, done: bool = True) -> Reply:
    rest: list[list[Chunk] | BaseException] = [[content(model, "lo "), content(model, "world")]]
    if done:
        rest.append([final(model)])
    return Reply(first=[content(model, "Hel")], rest=rest)


def failing(exc: BaseException) -> Reply:
    return Reply(fail=exc)


class FakeAnswer:
    def __init__(self, node_id: str, reply: Reply) -> None:
        self.node_id = node_id
        self.first = list(reply.first)
        self._rest = deque(reply.rest)
        self._hang_after = reply.hang_after
        self.cancelled = False
        self.waiting = False  # blocked in next_batch (hang_after)
        self.exhausted = False  # answered StopAsyncIteration

    async def next_batch(self) -> list[Chunk]:
        if self._rest:
            item = self._rest.popleft()
            if isinstance(item, BaseException):
                raise item
            return item
        if self._hang_after:
            self.waiting = True
            await asyncio.Event().wait()
        self.exhausted = True
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.cancelled = True

    def finish(self) -> None:
        """The node's side runs to its end (what a real transport does in the background)."""
        self._rest.clear()
        self.exhausted = True


@dataclass(frozen=True)
class Opened:
    node_id: str
    model: str
    req: InferenceRequest
    data_url: str


class FakeNodes:
    """The ``NodePort``: the nodes' heartbeats (sent to the core) and scripted answers."""

    def __init__(self, core: RouterCore) -> None:
        self.core = core
        self.beats: dict[str, NodeHeartbeat] = {}
        self.scripts: dict[str, deque[Reply]] = {}
        self.opened: list[Opened] = []
        self.answers: list[FakeAnswer] = []
        self.forgotten: list[str] = []
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []
        self.call_results: dict[tuple[str, str], Any] = {}  # value, or exception to raise
        self.pulls: list[tuple[str, str, bool]] = []
        self.pull_lines: list[Chunk] = [{"status": "pulling manifest"}, {"status": "success"}]
        self.hanging = 0  # opens blocked right now
        self.closed = self.aclosed = False

    def add(self, hb: NodeHeartbeat) -> None:
        """A node joins (or sends a new heartbeat)."""
        self.beats[hb.node_id] = hb
        self.core.heartbeat(hb)

    def script(self, node_id: str, *replies: Reply) -> None:
        """The next opens on ``node_id``; once used up, the node answers normally."""
        self.scripts.setdefault(node_id, deque()).extend(replies)

    def opened_on(self) -> list[str]:
        return [o.node_id for o in self.opened]

    async def open(self, node_id: str, req: InferenceRequest, model: str, data_url: str) -> Any:
        self.opened.append(Opened(node_id, model, req, data_url))
        await asyncio.sleep(0)  # reaching a node takes a turn of the loop: others run
        queue = self.scripts.get(node_id)
        if queue:
            reply = queue.popleft()
        elif req.kind in ("chat", "generate"):
            reply = chat_reply(model)
        else:
            reply = Reply(first=[{"model": model, "embeddings": [[0.1, 0.2]]}])
        if reply.hang:
            self.hanging += 1
            try:
                await asyncio.Event().wait()
            finally:
                self.hanging -= 1
        if reply.fail is not None:
            raise reply.fail
        answer = FakeAnswer(node_id, reply)
        self.answers.append(answer)
        return answer

    async def call(self, node_id: str, method: str, *args: Any) -> Any:
        self.calls.append((node_id, method, args))
        if (node_id, method) in self.call_results:
            result = self.call_results[(node_id, method)]
            if isinstance(result, BaseException):
                raise result
            return result
        if method == "push_heartbeat":
            self.add(replace(self.beats[node_id], sent_at=time.time()))
            return True
        if method == "show":
            return {"modelfile": f"FROM {args[0]}", "node": node_id}
        if method == "delete":
            return True
        raise AssertionError(f"unexpected node call {method}")

    async def pull(self, node_id: str, model: str, insecure: bool) -> AsyncIterator[Chunk]:
        self.pulls.append((node_id, model, insecure))
        for line in self.pull_lines:
            await asyncio.sleep(0)
            if line.get("status") == "success":  # the node has it now (heartbeat pending)
                hb = self.beats[node_id]
                models = (*hb.models, ModelOnDisk(model, size=100))
                self.beats[node_id] = replace(hb, models=models)
            yield line

    def forget(self, node_id: str) -> None:
        self.forgotten.append(node_id)

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.aclosed = True


class FakeRouter:
    """The ``RouterPort`` over a real RouterCore; every call is recorded."""

    def __init__(self, core: RouterCore) -> None:
        self.core = core
        self.acquired: list[tuple[str, tuple[str, ...], frozenset[str], int]] = []
        self.reports: list[tuple[str, int, list[Event]]] = []
        self.traces: list[TraceRecord] = []  # what record_traces received
        self.forgotten = 0
        self.view_error: BaseException | None = None
        self.report_error: BaseException | None = None
        self.call_hangs = False
        self.acquire_hangs = False

    async def acquire(
        self,
        request_id: str,
        models: Sequence[str],
        exclude: frozenset[str],
        attempt: int,
        query: RouteQuery | None,
    ) -> Decision:
        self.acquired.append((request_id, tuple(models), exclude, attempt))
        if self.acquire_hangs:
            await asyncio.Event().wait()
        return await self.core.acquire(request_id, models, exclude, attempt, query=query)

    async def report(self, source: str, seq: int, events: Sequence[Event]) -> None:
        if self.report_error is not None:
            raise self.report_error
        self.reports.append((source, seq, list(events)))
        self.core.report(source, seq, events)

    async def view(self, epoch: str | None, since: int, wait: float) -> MirrorData | None:
        if self.view_error is not None:
            raise self.view_error
        return await self.core.wait_view(epoch, since, wait)

    async def call(self, method: str, *args: Any) -> Any:
        if self.call_hangs:
            await asyncio.Event().wait()
        if method == "record_traces":
            self.traces.extend(args[0])
            return len(args[0])
        result = getattr(self.core, method)(*args)
        return await result if inspect.isawaitable(result) else result

    def forget(self) -> None:
        self.forgotten += 1

    def events(self) -> list[Event]:
        return [e for _, _, events in self.reports for e in events]

    def outcomes(self) -> list[Outcome]:
        return [e for e in self.events() if isinstance(e, Outcome)]

    def begins(self) -> list[Begin]:
        return [e for e in self.events() if isinstance(e, Begin)]


@dataclass
class Fleet:
    core: RouterCore
    router: FakeRouter
    nodes: FakeNodes
    d: Dispatcher

    async def synced(self) -> None:
        """Until the dispatcher's mirror holds the router's current view."""
        d, core = self.d, self.core
        d.link.ensure_background()
        await wait_for(
            lambda: d.mirror.fresh(time.time()) and d.mirror.version == core.view_version()
        )

    async def records(self) -> list[TraceRecord]:
        """Every trace the dispatcher finished, shipped to the router."""
        await self.d.traces.drain()
        assert len(self.d.traces.outbox) == 0
        return list(self.router.traces)

    async def outcomes(self) -> list[Outcome]:
        await self.d.flush()
        return self.router.outcomes()


@asynccontextmanager
async def running(
    *beats: NodeHeartbeat, local_routing: bool = True, sync: bool = True, **over: Any
) -> AsyncIterator[Fleet]:
    """A dispatcher over a RouterCore with ``beats`` as its nodes; with local routing its
    mirror is loaded before the test starts (``sync``)."""
    settings = make_settings(**over)
    core = RouterCore(settings)
    nodes = FakeNodes(core)
    for hb in beats:
        nodes.add(hb)
    router = FakeRouter(core)
    fleet = Fleet(core, router, nodes, Dispatcher(settings, router, nodes, local_routing))
    try:
        if local_routing and sync:
            await fleet.synced()
        yield fleet
    finally:
        tasks = list(fleet.d.link._tasks)
        await fleet.d.aclose()
        async with asyncio.timeout(5):  # the background tasks end when cancelled
            await asyncio.gather(*tasks, return_exceptions=True)
        assert nodes.closed and nodes.aclosed
        assert all(t.done() for t in tasks)


async def drain(rest: AsyncIterator[list[Chunk]]) -> list[Chunk]:
    return [chunk async for batch in rest for chunk in batch]
