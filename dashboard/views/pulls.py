"""Model pulls started from the Recommendations page, followed in the background.

A pull can take minutes, longer than a callback should block, so ``PullJobs.start`` runs
``service.pull(model, node=...)`` (an async generator of Ollama progress events) on the
service's loop and keeps the last event of each (node, model); the page polls
``snapshot()``.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from dashboard.bridge import SyncBridge

Key = tuple[str, str]


class PullJobs:
    def __init__(self, bridge: SyncBridge) -> None:
        self.bridge = bridge
        self._lock = threading.Lock()
        self._state: dict[Key, dict[str, Any]] = {}
        self._futures: dict[Key, concurrent.futures.Future[Any]] = {}

    def start(self, node: str, model: str) -> bool:
        """Pull ``model`` onto ``node`` unless that pull is already running."""
        key = (node, model)
        with self._lock:
            running = self._futures.get(key)
            if running is not None and not running.done():
                return False
            self._state[key] = {"node": node, "model": model, "status": "starting", "done": False}
            self._futures[key] = self.bridge.spawn(self._follow(node, model))
        return True

    async def _follow(self, node: str, model: str) -> None:
        key = (node, model)
        last: dict[str, Any] = {}
        try:
            async for event in self.bridge.service.pull(model, node=node):
                last = dict(event)
                self._record(key, last, done=False)
        except Exception as exc:
            last = {"status": "error", "error": str(exc)}
        if last.get("status") not in ("success", "error"):
            last = {**last, "status": last.get("status") or "finished"}
        self._record(key, last, done=True)

    def _record(self, key: Key, event: dict[str, Any], *, done: bool) -> None:
        with self._lock:
            entry = self._state[key]
            entry.update(
                status=event.get("status", entry["status"]),
                error=event.get("error"),
                completed=event.get("completed"),
                total=event.get("total"),
                done=done,
            )

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for _, v in sorted(self._state.items())]

    def wait(self, timeout: float) -> None:
        """Block until every started pull finished (tests and shutdown)."""
        with self._lock:
            futures = list(self._futures.values())
        concurrent.futures.wait(futures, timeout=timeout)


def progress_text(entry: dict[str, Any]) -> str:
    if entry.get("error"):
        return f"error: {entry['error']}"
    done, total = entry.get("completed"), entry.get("total")
    if done is not None and total:
        return f"{entry['status']} {100 * done / total:.0f}%"
    return str(entry["status"])
