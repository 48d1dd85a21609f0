"""Where the emulated devices of ``bench/fleet.py`` run, and how one of them dies.

* :class:`InProcessHost`: every emulator in the calling event loop (the unit test and
  ``--quick`` use it).
* :class:`ProcessHost` (default): the same, in one child process that lives for the whole
  benchmark (``python bench/_simfleet_hosts.py``, driven by JSON lines on its stdin), so
  the emulators' timing does not share an event loop, or a core, with the router under
  test. Each run starts a fresh fleet in it and stops it afterwards.

A death aborts every open connection of the device's emulator (in-flight streams break
at once) and stops it (new connections are refused), as when a machine's Ollama vanishes.
Both read each device's counters over HTTP (``GET /_sim/state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from herd.sim import RunningEmulator, SimProfile, start_emulator

_REPLY_TIMEOUT_S = 60.0
_SELF = str(Path(__file__).resolve())  # run as a script, this module is the child


class EmulatorHost(Protocol):
    urls: dict[str, str]

    async def start(self, profiles: list[SimProfile]) -> None: ...

    async def kill(self, name: str) -> None: ...

    async def close(self) -> None: ...


async def sim_state(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/_sim/state", timeout=aiohttp.ClientTimeout(total=10)) as r:
        r.raise_for_status()
        state: dict[str, Any] = await r.json()
        return state


class InProcessHost:
    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self._emulators: dict[str, RunningEmulator] = {}

    async def start(self, profiles: list[SimProfile]) -> None:
        for profile in profiles:
            emulator = await start_emulator(profile)
            self._emulators[profile.name] = emulator
            self.urls[profile.name] = emulator.url

    async def kill(self, name: str) -> None:
        emulator = self._emulators.pop(name)
        server = emulator.runner.server
        for handler in server.connections if server is not None else ():
            transport = handler.transport
            if transport is not None:
                transport.abort()
        await emulator.stop()

    async def close(self) -> None:
        for emulator in self._emulators.values():
            await emulator.stop()
        self._emulators.clear()
        self.urls = {}


class ProcessHost:
    """Talks to the child process; one command at a time, one JSON line each way."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.urls: dict[str, str] = {}
        self._proc = proc

    async def _call(self, **command: Any) -> dict[str, Any]:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(command).encode() + b"\n")
        await stdin.drain()
        async with asyncio.timeout(_REPLY_TIMEOUT_S):
            line = await stdout.readline()
        if not line:
            raise RuntimeError("the emulator host process exited")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"emulator host: {reply['error']}")
        return reply

    async def start(self, profiles: list[SimProfile]) -> None:
        reply = await self._call(
            cmd="start", profiles=[p.model_dump(mode="json") for p in profiles]
        )
        self.urls = dict(reply["urls"])

    async def kill(self, name: str) -> None:
        await self._call(cmd="kill", name=name)

    async def close(self) -> None:
        await self._call(cmd="close")
        self.urls = {}


@contextlib.asynccontextmanager
async def open_host(kind: str) -> AsyncIterator[EmulatorHost]:
    """An emulator host for a whole benchmark (``process`` or ``inproc``)."""
    if kind == "inproc":
        yield InProcessHost()
        return
    if kind != "process":
        raise ValueError(f"unknown emulator host {kind!r} (process or inproc)")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        _SELF,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield ProcessHost(proc)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _serve_commands() -> None:
    """The child: read commands from stdin until it closes, answer on stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    host = InProcessHost()
    try:
        while line := await reader.readline():
            command = json.loads(line)
            try:
                reply: dict[str, Any] = {"ok": True}
                if command["cmd"] == "start":
                    profiles = [SimProfile.model_validate(p) for p in command["profiles"]]
                    await host.start(profiles)
                    reply["urls"] = host.urls
                elif command["cmd"] == "kill":
                    await host.kill(command["name"])
                elif command["cmd"] == "close":
                    await host.close()
                else:
                    reply = {"error": f"unknown command {command['cmd']!r}"}
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        await host.close()


if __name__ == "__main__":
    asyncio.run(_serve_commands())
