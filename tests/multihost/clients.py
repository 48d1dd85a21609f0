"""What a client of the multi-host fleet sees: streams in threads (status, lines, how
it ended, how long it took) and every request's trace read back by its id."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from launch.localray import wait_until

from .hosts import ADMIN, HostFleet

MODEL = "llama3.2:3b"  # preloaded on every mac-mini emulator (35 tokens/s)
MEASURED: dict[str, float] = {}


def measure(what: str, seconds: float) -> None:
    """A recovery time, printed (``-s``) as a ``MEASURED ...`` line."""
    MEASURED[what] = seconds
    print(f"MEASURED {what}: {seconds:.2f} s", flush=True)


def chat_body(tokens: int, stream: bool = True) -> dict[str, Any]:
    messages = [{"role": "user", "content": "tell me about herds"}]
    options = {"num_predict": tokens}
    return {"model": MODEL, "messages": messages, "stream": stream, "options": options}


@dataclass
class Call:
    """One ``/api/chat`` request in its own thread."""

    endpoint: str
    tokens: int
    rid: str = field(default_factory=lambda: f"mh-{uuid.uuid4().hex[:16]}")
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    lines: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    first: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    t0: float = 0.0  # when it was sent (monotonic)

    def start(self) -> Call:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def run(self) -> None:
        """The request, in the calling thread."""
        t0 = self.t0 = time.monotonic()
        url = f"{self.endpoint}/api/chat"
        headers = {"X-Request-Id": self.rid}
        try:
            with httpx.stream(
                "POST", url, json=chat_body(self.tokens), headers=headers, timeout=60
            ) as r:
                self.status = r.status_code
                self.headers = dict(r.headers)
                for line in r.iter_lines():
                    if line:
                        self.lines.append(json.loads(line))
                        self.first.set()
        except httpx.HTTPError as exc:  # reported by the test, not lost in the thread
            self.error = repr(exc)
        finally:
            self.seconds = time.monotonic() - t0
            self.first.set()

    def join(self, bound: float) -> Call:
        """Wait at most ``bound`` seconds for the client to be done: no hang past it."""
        assert self.thread is not None
        self.thread.join(bound)
        assert not self.thread.is_alive(), f"client {self.rid} still waiting after {bound}s"
        return self

    @property
    def node(self) -> str | None:
        return self.headers.get("x-herd-node")

    @property
    def completed(self) -> bool:
        """The whole answer, ending ``done`` without an error."""
        last = self.lines[-1] if self.lines else {}
        return self.status == 200 and last.get("done") is True and "error" not in last

    @property
    def error_event(self) -> bool:
        """Ended by Ollama's error line after chunks (the dialect's error event)."""
        return bool(self.lines) and "error" in self.lines[-1] and self.lines[-1] != self.lines[0]


@dataclass
class Load:
    """``clients`` threads, each sending one stream after another until ``stop``."""

    endpoint: str
    tokens: int
    clients: int = 4
    calls: list[Call] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        self.threads = [
            threading.Thread(target=self._loop, daemon=True) for _ in range(self.clients)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def _loop(self) -> None:
        while not self.done.is_set():
            call = Call(self.endpoint, self.tokens)
            self.calls.append(call)
            call.run()

    def wait_for(self, more: int, timeout: float = 60) -> None:
        """Until ``more`` further requests have ended."""
        goal = self.ended() + more
        wait_until(lambda: self.ended() >= goal, timeout, f"{more} more requests", step=0.05)

    def ended(self) -> int:
        return sum(1 for c in list(self.calls) if c.seconds)

    def stop(self, bound: float) -> list[Call]:
        """Stop and join every client within ``bound`` (no hang past it); every call."""
        self.done.set()
        deadline = time.monotonic() + bound
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), f"a client waits past {bound}s"
        return list(self.calls)


def stream_on(fleet: HostFleet, node: str, tokens: int, most: int = 8) -> tuple[Call, list[Call]]:
    """Open streams one by one until one is served by ``node`` (the others stay open:
    they fill the other hosts' slots, so the router spreads new ones). The stream on
    ``node`` and every stream opened."""
    opened: list[Call] = []
    for _ in range(most):
        call = Call(fleet.endpoint, tokens).start()
        opened.append(call)
        assert call.first.wait(30), f"no first chunk for {call.rid}: {call.error}"
        if call.node == node:
            return call, opened
    served = [c.node for c in opened]
    raise AssertionError(f"none of {most} streams went to {node}: {served}")


def trace(fleet: HostFleet, rid: str, timeout: float = 30) -> dict[str, Any]:
    """The trace of ``rid`` from the dashboard's API once the router stored it."""
    found: dict[str, Any] = {}

    def stored() -> bool:
        url = f"{fleet.endpoint}/dashboard/api/traces/{rid}"
        r = httpx.get(url, headers=ADMIN, timeout=10)
        if r.status_code == 200:
            found.update(r.json())
        return bool(found)

    wait_until(stored, timeout, f"the trace of {rid}", step=0.2)
    return found


def traced(fleet: HostFleet, calls: list[Call]) -> list[dict[str, Any]]:
    """Every call's trace (the id each response echoed is the one the client sent)."""
    for call in calls:
        if call.headers:
            assert call.headers.get("x-herd-request-id") == call.rid, call.headers
    return [trace(fleet, c.rid) for c in calls]
