"""What a Linux device tells about its owner, read from the files and commands below.
Each reader returns ``None`` when the device does not offer the signal (absent, never
guessed); every path is a parameter so tests read recorded fixtures.

* camera: a ``/dev/video*`` device held open by a process (the ``/proc/<pid>/fd`` links;
  only processes herd's user may inspect, the owner's own when herd runs as the owner);
* microphone: an ALSA capture substream running (``/proc/asound/card*/pcm*c/sub*/status``
  says ``state: RUNNING``), or a PulseAudio / PipeWire capture stream that is not corked
  and does not record a monitor (``pactl list source-outputs`` + ``pactl list short
  sources``);
* power: ``/sys/class/power_supply/*`` (``type`` Mains: ``online``; Battery: ``status``,
  ``capacity``);
* thermal throttling: a thermal zone at or past a ``passive`` trip point
  (``/sys/class/thermal/thermal_zone*``), a ``Processor`` cooling device engaged
  (``cooling_device*/cur_state`` > 0: it lowers cpufreq), or a CPU's
  ``thermal_throttle/*_throttle_count`` going up between two reads;
* GPU load: ``/sys/class/drm/card*/device/gpu_busy_percent`` (amdgpu), else
  ``nvidia-smi --query-gpu=utilization.gpu`` (read by the caller, parsed here);
* user idle time: the graphical login sessions' ``IdleHint`` / ``IdleSinceHint`` that
  systemd-logind keeps (``loginctl show-session``); servers usually have none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def video_device_open(proc: Path = Path("/proc"), dev: Path = Path("/dev")) -> bool | None:
    """Is a camera (``/dev/video*``) held open by some process? ``False`` without any
    video device (no camera can be in use); ``None`` when ``/proc`` cannot be read."""
    if not any(dev.glob("video*")):
        return False
    try:
        pids = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            fds = list((pid / "fd").iterdir())
        except OSError:  # another user's process, or gone
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("/dev/video"):  # the kernel names the device node
                return True
    return False


def alsa_capture_running(asound: Path = Path("/proc/asound")) -> bool | None:
    """Is an ALSA capture substream running? ``None`` when the device has none."""
    statuses = list(asound.glob("card*/pcm*c/sub*/status"))
    if not statuses:
        return None
    return any(
        (text := _read(status)) is not None and "state: RUNNING" in text for status in statuses
    )


def monitor_sources(short_sources: str) -> set[str]:
    """Indices of the sources that record an output (``pactl list short sources``)."""
    out = set()
    for line in short_sources.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1].endswith(".monitor"):
            out.add(fields[0].strip())
    return out


def pulse_capture_active(source_outputs: str, short_sources: str) -> bool:
    """Is a capture stream recording a real input (not corked, not a monitor)?
    ``source_outputs`` is ``pactl list source-outputs``' text."""
    monitors = monitor_sources(short_sources)
    blocks = source_outputs.split("Source Output #")[1:]
    for block in blocks:
        source = corked = None
        for line in block.splitlines():
            key, _, value = line.strip().partition(":")
            if key == "Source" and source is None:
                source = value.strip()
            elif key == "Corked":
                corked = value.strip() == "yes"
        if corked is False and source not in monitors:
            return True
    return False


def power(supplies: Path = Path("/sys/class/power_supply")) -> tuple[bool | None, float | None]:
    """``(on_battery, battery_percent)``; ``(None, None)`` without any power supply entry.
    On battery: a mains supply is present and offline, or a battery is discharging."""
    try:
        entries = sorted(supplies.iterdir())
    except OSError:
        return None, None
    mains: list[bool] = []
    discharging = False
    levels: list[float] = []
    for entry in entries:
        kind = _read(entry / "type")
        if kind == "Mains":
            mains.append(_read(entry / "online") == "1")
        elif kind == "Battery":
            if (_read(entry / "status") or "").lower() == "discharging":
                discharging = True
            level = _read(entry / "capacity")
            if level is not None and level.isdigit():
                levels.append(float(level))
    if not mains and not levels and not discharging:
        return None, None
    on_battery = discharging or (bool(mains) and not any(mains))
    return on_battery, (min(levels) if levels else None)


def _ints(paths: Iterable[Path]) -> list[int]:
    out = []
    for path in paths:
        text = _read(path)
        if text is not None and text.lstrip("-").isdigit():
            out.append(int(text))
    return out


def throttle_counts(cpus: Path = Path("/sys/devices/system/cpu")) -> int | None:
    """The sum of every CPU's thermal throttle counters (Intel), ``None`` without them."""
    counts = _ints(cpus.glob("cpu[0-9]*/thermal_throttle/*_throttle_count"))
    return sum(counts) if counts else None


def thermal_throttled(
    thermal: Path = Path("/sys/class/thermal"),
    counts_before: int | None = None,
    counts_now: int | None = None,
) -> bool | None:
    """Is the CPU being throttled for heat? ``None`` when nothing here tells."""
    told = False
    for zone in thermal.glob("thermal_zone*"):
        temps = _ints([zone / "temp"])
        if not temps:
            continue
        for trip in zone.glob("trip_point_*_type"):
            if _read(trip) != "passive":
                continue
            told = True
            limit = _ints([trip.with_name(trip.name.replace("_type", "_temp"))])
            if limit and limit[0] > 0 and temps[0] >= limit[0]:
                return True
    for device in thermal.glob("cooling_device*"):
        if _read(device / "type") == "Processor":
            told = True
            state = _ints([device / "cur_state"])
            if state and state[0] > 0:
                return True
    if counts_before is not None and counts_now is not None:
        told = True
        if counts_now > counts_before:
            return True
    return False if told else None


def amd_gpu_busy(drm: Path = Path("/sys/class/drm")) -> float | None:
    """The busiest GPU's load 0..1 (amdgpu's ``gpu_busy_percent``), ``None`` without one."""
    values = _ints(drm.glob("card*/device/gpu_busy_percent"))
    return max(values) / 100.0 if values else None


def nvidia_gpu_busy(smi_csv: str) -> float | None:
    """The busiest GPU's load 0..1 from ``nvidia-smi --query-gpu=utilization.gpu
    --format=csv,noheader,nounits`` (one line per GPU)."""
    values = [float(x) for x in (v.strip() for v in smi_csv.splitlines()) if _is_number(x)]
    return max(values) / 100.0 if values else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def session_ids(list_sessions: str) -> list[str]:
    """Session ids from ``loginctl list-sessions --no-legend`` (the first column)."""
    return [line.split()[0] for line in list_sessions.splitlines() if line.strip()]


def logind_idle_s(show_sessions: str, now_us: int) -> float | None:
    """Seconds since the user of an active graphical session last touched an input,
    from ``loginctl show-session <ids> -p Type -p Active -p IdleHint -p IdleSinceHint``
    (blocks separated by blank lines; ``IdleSinceHint`` is realtime microseconds).
    ``None`` without an active x11 / wayland / mir session."""
    best: float | None = None
    for block in show_sessions.split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Type") not in ("x11", "wayland", "mir") or props.get("Active") != "yes":
            continue
        if props.get("IdleHint") != "yes":
            idle = 0.0
        else:
            since = props.get("IdleSinceHint", "0")
            if not since.isdigit() or int(since) <= 0:
                continue
            idle = max(0.0, (now_us - int(since)) / 1e6)
        best = idle if best is None else min(best, idle)
    return best
