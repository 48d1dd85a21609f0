"""Fences: attempts on a node the fleet view says is offline end at once.

A node that dies or is cut off is offline in the router's view within the heartbeat
limits (and at once when Ray reports its node dead), but an answer already being read
from it would otherwise wait for the first-chunk or chunk timeout. Each open attempt
holds a :class:`Fence` on its node; after every view it loads or confirms, the router
link calls :meth:`Fences.check`, and every fence on a node that is offline (or gone
from the view of the same router) is set: the attempt's task, when it is waiting on the
node right then, is cancelled, and the attempt loop turns that cancel into its error
(before the first chunk ``NodeUnavailable``, retried elsewhere; after it the dialect's
error event). The token path pays two attribute writes per batch, never a look at the
view. A degraded node (late heartbeats, not yet offline) is not fenced.
"""

from __future__ import annotations

import asyncio

from herd.domain import FleetSnapshot

OFFLINE = "node went offline"


class Fence:
    """One open attempt on ``node_id``: set once when the node is seen offline."""

    __slots__ = ("_cancelled", "_fences", "epoch", "node_id", "reason", "waiting")

    def __init__(self, fences: Fences, node_id: str, epoch: str | None) -> None:
        self._fences = fences
        self.node_id = node_id
        self.epoch = epoch  # the router's epoch when it opened: "gone" counts in that one only
        self.reason: str | None = None  # set: the attempt must end with it
        self.waiting: asyncio.Task[object] | None = None  # the task awaiting the node now
        self._cancelled = False

    def message(self) -> str:
        return f"{self.reason or OFFLINE} ({self.node_id})"

    def wait(self) -> None:
        """The current task is about to await the node (cancelled if the fence is set)."""
        self.waiting = asyncio.current_task()

    def set(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        task, self.waiting = self.waiting, None
        if task is not None and not task.done():
            self._cancelled = True
            task.cancel()

    def stop_waiting(self) -> None:
        """The await on the node is over. A cancel of this fence that did not come out of
        it as ``CancelledError`` (the transport turned it into its own error) is taken back."""
        self.waiting = None
        if self._cancelled:
            self._cancelled = False
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()

    def caught(self) -> bool:
        """Inside ``except CancelledError``: was it this fence's own cancel (and no one
        else's)? Then the cancel is taken back and the attempt ends with the fence's error."""
        if not self._cancelled:
            return False
        self._cancelled = False
        task = asyncio.current_task()
        return task is not None and task.uncancel() == 0

    def close(self) -> None:
        """The attempt is over: stop watching its node."""
        self.waiting = None
        self._fences.remove(self)


class Fences:
    """Every open attempt's fence, by node."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[str, set[Fence]] = {}

    def open(self, node_id: str, epoch: str | None) -> Fence:
        fence = Fence(self, node_id, epoch)
        self._open.setdefault(node_id, set()).add(fence)
        return fence

    def remove(self, fence: Fence) -> None:
        held = self._open.get(fence.node_id)
        if held is not None:
            held.discard(fence)
            if not held:
                del self._open[fence.node_id]

    def open_on(self, node_id: str) -> int:
        return len(self._open.get(node_id, ()))

    def __bool__(self) -> bool:
        return bool(self._open)

    def check(self, snapshot: FleetSnapshot, epoch: str | None) -> list[str]:
        """Set the fences of every node that ``snapshot`` (a fresh view of the router of
        ``epoch``) shows offline, or no longer lists; the nodes fenced."""
        if not self._open:
            return []
        status = {view.heartbeat.node_id: view.status for view in snapshot.nodes}
        fenced = []
        for node_id, held in list(self._open.items()):
            now = status.get(node_id)
            if now == "offline":
                targets = list(held)
            elif now is None:  # gone: only for the router that listed it (not a restart)
                targets = [f for f in held if f.epoch == epoch]
            else:
                continue
            for fence in targets:
                fence.set(OFFLINE)
                self.remove(fence)
            if targets:
                fenced.append(node_id)
        return fenced
