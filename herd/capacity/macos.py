"""What a Mac tells about its owner: parsers of the system tools' output (the commands
are run by :mod:`herd.capacity.sensors`, bounded in time; tests feed recorded text).

* camera and microphone in use: the Control Center's privacy indicators (the green and
  orange dots) log each change as ``Active activity attributions changed to [...]``
  with ``cam:<app>`` / ``mic:<app>`` entries (``log show --last 2h --style ndjson
  --predicate 'subsystem == "com.apple.controlcenter" AND category ==
  "sensor-indicators"'``); the latest such line is the state now, none in the window
  means "cannot tell";
* power: ``pmset -g batt`` (``Now drawing from 'Battery Power'``, ``NN%; discharging``);
* thermal throttling: ``pmset -g therm`` (``CPU_Speed_Limit`` below 100, or a
  recorded thermal warning level);
* user idle time: ``ioreg -c IOHIDSystem -d 4 -r -k HIDIdleTime`` (nanoseconds).

Only these parsers are tested here (recorded fixtures); they were not run on a Mac in
this project's CI.
"""

from __future__ import annotations

import json
import re

_ATTRIBUTIONS = re.compile(r"Active activity attributions changed to \[(.*)\]")
_BATTERY = re.compile(r"(\d+)%;\s*([a-zA-Z ]+?);")
_SPEED = re.compile(r"CPU_Speed_Limit\s*=\s*(\d+)")
_IDLE = re.compile(r'"HIDIdleTime"\s*=\s*(\d+)')


def sensor_indicators(log_ndjson: str) -> tuple[bool, bool] | None:
    """``(camera, microphone)`` in use after the latest indicator change in ``log show
    --style ndjson`` output; ``None`` when it holds no change."""
    latest: str | None = None
    for line in log_ndjson.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            message = str(json.loads(line).get("eventMessage", ""))
        except (ValueError, AttributeError):
            continue
        found = _ATTRIBUTIONS.search(message)
        if found:
            latest = found.group(1)
    if latest is None:
        return None
    entries = [e.strip().strip('"') for e in latest.split(",") if e.strip()]
    return any(e.startswith("cam:") for e in entries), any(e.startswith("mic:") for e in entries)


def pmset_battery(text: str) -> tuple[bool | None, float | None]:
    """``(on_battery, percent)`` from ``pmset -g batt``; ``(None, None)`` when it says
    neither (a Mac without a battery reports AC Power and no battery line)."""
    on_battery: bool | None = None
    if "'Battery Power'" in text:
        on_battery = True
    elif "'AC Power'" in text or "'UPS Power'" in text:
        on_battery = False
    level = _BATTERY.search(text)
    percent = float(level.group(1)) if level else None
    if level and level.group(2).strip().lower() == "discharging":
        on_battery = True
    return on_battery, percent


def pmset_throttled(text: str) -> bool | None:
    """From ``pmset -g therm``: ``True`` when the CPU speed is limited or a thermal
    warning level is recorded, ``False`` when it says neither, ``None`` if unreadable."""
    speed = _SPEED.search(text)
    warned = "thermal warning level" in text.lower() and "no thermal warning" not in text.lower()
    if speed is not None:
        return int(speed.group(1)) < 100 or warned
    if "thermal warning" in text.lower():
        return warned
    return None


def hid_idle_s(text: str) -> float | None:
    """Seconds since the last input event, from ``ioreg``'s ``HIDIdleTime``."""
    found = _IDLE.search(text)
    return int(found.group(1)) / 1e9 if found else None
