"""The two ports the request lifecycle is handed: one to the nodes, one to the router.

``herd.dispatch`` never talks to Ray or HTTP itself. The actor layer implements these
ports over Ray and each node's HTTP data plane (``actors.ports``); the fleet benchmark
implements them in-process over the real ``RouterCore`` and ``NodeAgent``s
(``bench/_simfleet_ports.py``); the unit tests use small fakes.

Every method raises only :mod:`herd.errors` types (the adapter maps its transport's
exceptions) or ``TimeoutError``/``CancelledError``; the dispatcher bounds every call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from herd.domain import Decision, InferenceRequest
from herd.routing.events import Event, MirrorData
from herd.scoring import RouteQuery

Chunk = dict[str, Any]


class Answer(Protocol):
    """One node's answer being read: the first batch of Ollama chunks, then the rest.

    A streaming kind (chat, generate) yields Ollama's chunks, the last with ``done``;
    every other kind yields one chunk, the whole result."""

    first: list[Chunk]

    async def next_batch(self) -> list[Chunk]:
        """The chunks that arrived since the last call; ``StopAsyncIteration`` at the end."""
        ...

    def cancel(self) -> None:
        """Stop the node's side (the client went away, or the answer failed)."""
        ...

    def finish(self) -> None:
        """The final chunk is here: wind the transport down (read what is left, give the
        connection back) without making the caller wait for it."""
        ...


async def read_first(answer: Answer) -> None:
    """Fill ``answer.first`` from its first batch ([] for an empty answer); cancel the
    answer when that read fails. For ports whose answers are plain batch streams."""
    try:
        answer.first = await answer.next_batch()
    except StopAsyncIteration:
        answer.first = []
    except BaseException:
        answer.cancel()
        raise


class NodePort(Protocol):
    """How the dispatcher reaches a node. The adapter chooses the transport."""

    async def open(self, node_id: str, req: InferenceRequest, model: str, data_url: str) -> Answer:
        """Send ``req`` for ``model`` and wait for the first batch. ``data_url`` is the
        node's HTTP data plane as its last heartbeat gave it ("" for none)."""
        ...

    async def call(self, node_id: str, method: str, *args: Any) -> Any:
        """A management call on the node (``show``, ``delete``, ``push_heartbeat``)."""
        ...

    def pull(self, node_id: str, model: str, insecure: bool) -> AsyncIterator[Chunk]:
        """The progress lines of a pull on the node."""
        ...

    def forget(self, node_id: str) -> None:
        """The node failed: look its address up again next time."""
        ...

    def close(self) -> None:
        """Stop background work (no running loop needed)."""
        ...

    async def aclose(self) -> None:
        """Close connections, from inside the loop."""
        ...


class RouterPort(Protocol):
    """How the dispatcher reaches the router (the RouterActor, or a RouterCore)."""

    async def acquire(
        self,
        request_id: str,
        models: Sequence[str],
        exclude: frozenset[str],
        attempt: int,
        query: RouteQuery | None,
    ) -> Decision:
        """A decision from the router itself (holding queue, 404 vs 503 included)."""
        ...

    async def report(self, source: str, seq: int, events: Sequence[Event]) -> None:
        """A numbered batch of what this dispatcher routed by itself."""
        ...

    async def view(self, epoch: str | None, since: int, wait: float) -> MirrorData | None:
        """The fleet for the mirror; ``None`` when nothing changed within ``wait`` s."""
        ...

    async def call(self, method: str, *args: Any) -> Any:
        """Any other router method (``status``, ``catalog``, ``record_traces``, ...)."""
        ...

    def forget(self) -> None:
        """The router failed: look it up again next time."""
        ...
