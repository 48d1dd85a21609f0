"""``herd pull``'s progress: one bar per node on a terminal (rich), plain log lines
otherwise (a pipe, a file, CI).

Each node's ``/api/pull`` stream is Ollama's NDJSON: status lines (``pulling manifest``,
``verifying sha256 digest``, ``writing manifest``, ``success``), and per layer
``{"status": "pulling <digest>", "digest", "total", "completed"}``. A node's bar sums
its layers; the plain form says each new status once and each layer's progress in
quarters, so a log stays short whatever the model's size.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import httpx

from launch.cli_format import human_bytes
from launch.cli_http import START_HINT, TOKEN_HINT, error_text

STEPS = 4  # the plain form's progress marks per layer: 25%, 50%, 75%, 100%


@dataclass
class NodePull:
    """What one node's pull has said so far (pure: fed the stream's lines)."""

    node: str
    status: str = "starting"
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    done: bool = False
    http_status: int | None = None  # the endpoint refused the pull before any progress

    @property
    def total(self) -> int:
        return sum(t for t, _ in self.layers.values())

    @property
    def completed(self) -> int:
        return sum(c for _, c in self.layers.values())

    def feed(self, line: dict[str, Any]) -> list[str]:
        """Take one progress line; the plain-form messages it is worth."""
        if "error" in line:
            self.error = str(line["error"])
            return [f"error: {self.error}"]
        status = str(line.get("status") or "")
        out: list[str] = []
        digest = line.get("digest")
        if digest and line.get("total"):
            total = int(line["total"])
            completed = min(int(line.get("completed") or 0), total)
            self.layers[str(digest)] = (total, completed)
            step = completed * STEPS // total if total else STEPS
            if status != self.status:
                out.append(f"{status} ({human_bytes(total)})")
            if step > self.marks.get(str(digest), 0):
                self.marks[str(digest)] = step
                out.append(f"{status}: {step * 100 // STEPS}% of {human_bytes(total)}")
        elif status and status != self.status:
            out.append(status)
        if status:
            self.status = status
        if status == "success":
            self.done = True
        return out


class View(Protocol):
    def start(self, pulls: list[NodePull]) -> None: ...
    def changed(self, pull: NodePull, messages: list[str]) -> None: ...
    def stop(self) -> None: ...


class PlainView:
    """One line per message: ``node: message``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def start(self, pulls: list[NodePull]) -> None:
        return None

    def changed(self, pull: NodePull, messages: list[str]) -> None:
        for message in messages:
            print(f"{pull.node}: {message}", file=self.out, flush=True)

    def stop(self) -> None:
        return None


class RichView:
    """A live bar per node."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
        )

        self.console = Console(file=out, force_terminal=True)
        self.progress = Progress(
            TextColumn("{task.fields[node]}", style="bold", markup=False),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(binary_units=False),
            console=self.console,
            refresh_per_second=8,
        )
        self.tasks: dict[int, Any] = {}
        self.width = 0

    def start(self, pulls: list[NodePull]) -> None:
        width = max(len(p.node) for p in pulls)
        for p in pulls:
            self.tasks[id(p)] = self.progress.add_task(
                p.status, total=None, node=p.node.ljust(width)
            )
        self.width = width
        self.progress.start()

    def changed(self, pull: NodePull, messages: list[str]) -> None:
        from rich.markup import escape

        task = self.tasks[id(pull)]
        node = pull.node.ljust(self.width)
        if pull.error is not None:
            self.progress.update(task, description=f"[red]error: {escape(pull.error)}", node=node)
            return
        status = pull.status
        if status.startswith("pulling ") and len(status) > 20:
            status = status[:20]
        total = pull.total or None
        completed = pull.completed
        if pull.done and total is not None:
            completed = total
        self.progress.update(
            task, description=escape(status), total=total, completed=completed, node=node
        )

    def stop(self) -> None:
        self.progress.refresh()
        self.progress.stop()


def make_view(out: TextIO | None = None) -> View:
    out = out or sys.stdout
    return RichView(out) if out.isatty() else PlainView(out)


async def _one(
    client: httpx.AsyncClient, pull: NodePull, model: str, node: str | None, view: View
) -> None:
    """Stream one node's pull into ``pull`` (``node`` None: the endpoint picks one)."""
    body: dict[str, Any] = {"model": model, "stream": True}
    if node is not None:
        body["node"] = node
    try:
        async with client.stream("POST", "/api/pull", json=body) as response:
            if response.status_code >= 400:
                await response.aread()
                pull.http_status = response.status_code
                message = error_text(response)
                if response.status_code == 401:
                    message += f" ({TOKEN_HINT})"
                view.changed(pull, pull.feed({"error": message}))
                return
            chosen = response.headers.get("x-herd-node")
            if node is None and chosen:
                pull.node = chosen
            async for raw in response.aiter_lines():
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    line = {"error": f"unreadable progress line: {raw[:120]}"}
                view.changed(pull, pull.feed(line))
                if pull.error is not None:
                    return
    except httpx.ConnectError:
        url = str(client.base_url).rstrip("/")
        view.changed(pull, pull.feed({"error": f"no herd endpoint at {url}: {START_HINT}"}))
        return
    except httpx.HTTPError as exc:
        view.changed(pull, pull.feed({"error": f"the pull's stream broke: {exc}"}))
        return
    if not pull.done and pull.error is None:
        view.changed(pull, pull.feed({"error": "the pull ended without success"}))


async def run_pulls(
    url: str,
    token: str | None,
    model: str,
    nodes: list[str | None],
    view: View,
    stall: float,
) -> list[NodePull]:
    """Pull ``model`` on each of ``nodes`` at once (None: the node the endpoint picks);
    each pull's state when all have ended. ``stall``: the longest silence waited for."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx.Timeout(stall, connect=5.0)
    pulls = [NodePull(node or "herd") for node in nodes]
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as client:
        view.start(pulls)
        try:
            await asyncio.gather(
                *(_one(client, p, model, n, view) for p, n in zip(pulls, nodes, strict=True))
            )
        finally:
            view.stop()
    return pulls
