"""One reading of the owner's use of the device, outside herd's own work.

:class:`SystemSensors` reads this machine (Linux: :mod:`herd.capacity.linux`, macOS:
:mod:`herd.capacity.macos`; elsewhere only CPU and memory). It blocks (files, small
commands bounded by ``COMMAND_TIMEOUT_S``): run it in a thread. Commands and the
``/proc`` scan for an open camera run at most every ``PROBE_EVERY_S``; files each call.

Herd's own work is taken out: the CPU and memory of this process and its children (the
packaged llama.cpp server), and of the backend process listening on the backend URL's
port when it is local (Ollama and its runners, an emulator), found once and again when
it is gone. GPU and disk I/O cannot be told apart per process here, so they are read
only while herd has no request in flight (else ``None``: not measured, not guessed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import psutil

from herd.capacity import linux, macos

COMMAND_TIMEOUT_S = 2.0
PROBE_EVERY_S = 10.0
_LOCAL = ("localhost", "127.0.0.1", "::1", "")


@dataclass(frozen=True, slots=True)
class HostLoad:
    """What the heartbeat measured already (psutil's CPU counter must be read once)."""

    cpu: float  # system-wide CPU 0..1
    memory_total: int
    memory_available: int
    in_flight: int = 0  # herd's requests running on the device
    backend_url: str = ""

    @classmethod
    def of(cls, metrics: Any, in_flight: int, backend_url: str) -> HostLoad:
        """From a heartbeat's ``herd.node.sysmetrics.SystemMetrics`` (CPU in percent)."""
        cpu = float(metrics.cpu_percent) / 100.0
        return cls(
            cpu, int(metrics.memory_total), int(metrics.memory_available), in_flight, backend_url
        )


@dataclass(frozen=True, slots=True)
class Reading:
    """The owner's use of the device now (shares 0..1; ``None``: the device does not say)."""

    owner_cpu: float
    owner_memory: float
    owner_gpu: float | None = None
    io_bytes_s: float | None = None
    camera: bool | None = None
    microphone: bool | None = None
    meeting_flag: bool = False  # the owner's own switch (a file), also the tests' hook
    on_battery: bool | None = None
    battery_percent: float | None = None
    throttled: bool | None = None
    user_idle_s: float | None = None

    @property
    def meeting(self) -> bool:
        return bool(self.camera or self.microphone or self.meeting_flag)


class Sensors(Protocol):
    def read(self, now: float, host: HostLoad) -> Reading: ...


def _run(*cmd: str) -> str | None:
    """A command's output, or ``None`` if it is missing, fails or takes too long."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


class HerdProcesses:
    """CPU share and memory of herd's own processes (this one, its children, the backend)."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._backend: psutil.Process | None = None
        self._backend_url = ""

    def _find_backend(self, url: str) -> psutil.Process | None:
        parts = urlsplit(url)
        if parts.hostname not in _LOCAL or parts.port is None:
            return None
        try:
            for conn in psutil.net_connections(kind="tcp"):
                port = getattr(conn.laddr, "port", None)
                if conn.status == psutil.CONN_LISTEN and conn.pid and port == parts.port:
                    return psutil.Process(conn.pid)
        except (psutil.Error, OSError):
            return None
        return None

    def usage(self, backend_url: str) -> tuple[float, int]:
        """``(cpu share of the machine 0..1, resident bytes)`` since the previous call."""
        if backend_url != self._backend_url or (
            self._backend is not None and not self._backend.is_running()
        ):
            self._backend_url, self._backend = backend_url, self._find_backend(backend_url)
        roots = [psutil.Process()]
        if self._backend is not None:
            roots.append(self._backend)
        pids: set[int] = set()
        for root in roots:
            pids.add(root.pid)
            try:
                pids.update(c.pid for c in root.children(recursive=True))
            except psutil.Error:
                continue
        cpu, rss = 0.0, 0
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                cpu += proc.cpu_percent(interval=None)  # 0 on the first call
                rss += proc.memory_info().rss
            except psutil.Error:
                self._procs.pop(pid, None)
        for gone in set(self._procs) - pids:
            del self._procs[gone]
        return cpu / 100.0 / (psutil.cpu_count() or 1), rss


class SystemSensors:
    """The owner's signals on this machine; ``meeting_flag``: the file whose presence
    means "in a meeting" (the owner's switch, and what the integration test touches)."""

    def __init__(self, meeting_flag: Path | None = None, platform: str = sys.platform) -> None:
        self.meeting_flag = meeting_flag
        self.platform = platform
        self.herd = HerdProcesses()
        self._cache: dict[str, tuple[float, Any]] = {}
        self._io: tuple[float, int] | None = None
        self._throttle: int | None = None

    def _every(self, name: str, now: float, read: Callable[[], Any]) -> Any:
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < PROBE_EVERY_S:
            return cached[1]
        value = read()
        self._cache[name] = (now, value)
        return value

    def read(self, now: float, host: HostLoad) -> Reading:
        herd_cpu, herd_rss = self.herd.usage(host.backend_url)
        total = max(1, host.memory_total)
        used = max(0, host.memory_total - host.memory_available - herd_rss)
        idle_herd = host.in_flight == 0
        signals = self._linux(now, idle_herd) if self.platform.startswith("linux") else {}
        if self.platform == "darwin":
            signals = self._macos(now)
        return Reading(
            owner_cpu=min(1.0, max(0.0, host.cpu - herd_cpu)),
            owner_memory=min(1.0, used / total),
            io_bytes_s=self._io_rate(now) if idle_herd else None,
            meeting_flag=self.meeting_flag is not None and self.meeting_flag.exists(),
            **signals,
        )

    def _io_rate(self, now: float) -> float | None:
        try:
            counters = psutil.disk_io_counters()
        except (OSError, RuntimeError):
            return None
        if counters is None:
            return None
        moved = int(counters.read_bytes + counters.write_bytes)
        before, self._io = self._io, (now, moved)
        if before is None or now <= before[0]:
            return None
        return max(0, moved - before[1]) / (now - before[0])

    def _linux(self, now: float, idle_herd: bool) -> dict[str, Any]:
        on_battery, percent = linux.power()
        counts = linux.throttle_counts()
        throttled = linux.thermal_throttled(counts_before=self._throttle, counts_now=counts)
        self._throttle = counts
        gpu = linux.amd_gpu_busy()
        if gpu is None:
            smi = self._every("nvidia", now, lambda: _run("nvidia-smi", *NVIDIA_QUERY))
            gpu = linux.nvidia_gpu_busy(smi) if smi else None
        alsa = linux.alsa_capture_running()
        pulse = self._every("pulse", now, _pulse_capture)
        mics = [m for m in (alsa, pulse) if m is not None]
        return {
            "owner_gpu": gpu if idle_herd else None,
            "camera": self._every("camera", now, linux.video_device_open),
            "microphone": any(mics) if mics else None,
            "on_battery": on_battery,
            "battery_percent": percent,
            "throttled": throttled,
            "user_idle_s": self._every("idle", now, _logind_idle),
        }

    def _macos(self, now: float) -> dict[str, Any]:
        indicators = self._every("indicators", now, lambda: _run(*MAC_INDICATORS))
        seen = macos.sensor_indicators(indicators) if indicators else None
        batt = self._every("batt", now, lambda: _run("pmset", "-g", "batt"))
        therm = self._every("therm", now, lambda: _run("pmset", "-g", "therm"))
        hid = _run("ioreg", "-c", "IOHIDSystem", "-d", "4", "-r", "-k", "HIDIdleTime")
        on_battery, percent = macos.pmset_battery(batt) if batt else (None, None)
        return {
            "camera": seen[0] if seen else None,
            "microphone": seen[1] if seen else None,
            "on_battery": on_battery,
            "battery_percent": percent,
            "throttled": macos.pmset_throttled(therm) if therm else None,
            "user_idle_s": macos.hid_idle_s(hid) if hid else None,
        }


NVIDIA_QUERY = ("--query-gpu=utilization.gpu", "--format=csv,noheader,nounits")
MAC_INDICATORS = (
    "log",
    "show",
    "--last",
    "2h",
    "--style",
    "ndjson",
    "--predicate",
    'subsystem == "com.apple.controlcenter" AND category == "sensor-indicators"',
)


def _pulse_capture() -> bool | None:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if not os.environ.get("PULSE_SERVER") and not (
        runtime and Path(runtime, "pulse", "native").exists()
    ):
        return None
    outputs = _run("pactl", "list", "source-outputs")
    sources = _run("pactl", "list", "short", "sources")
    if outputs is None or sources is None:
        return None
    return linux.pulse_capture_active(outputs, sources)


def _logind_idle() -> float | None:
    listed = _run("loginctl", "list-sessions", "--no-legend")
    ids = linux.session_ids(listed) if listed else []
    if not ids:
        return None
    props = ("-p", "Type", "-p", "Active", "-p", "IdleHint", "-p", "IdleSinceHint")
    shown = _run("loginctl", "show-session", *ids, *props)
    return linux.logind_idle_s(shown, int(time.time() * 1e6)) if shown else None
