"""An Ollama emulator: a real aiohttp server that behaves like one Ollama device.

Use :func:`start_emulator` in-process (tests, demos) or ``herd sim-node`` /
``python -m herd.sim`` from a shell. The device model (memory, LRU eviction,
slots, pending queue, keep-alive) lives in :mod:`herd.sim.device`, profiles in
:mod:`herd.sim.profile` / :mod:`herd.sim.profiles`, faults in :mod:`herd.sim.faults`.
"""

from herd.sim.device import Device
from herd.sim.profile import FaultSpec, SimModel, SimProfile
from herd.sim.profiles import (
    BUILTIN_PROFILES,
    CATALOGUE,
    builtin_profile,
    builtin_profile_names,
    load_profile,
    profile_from_dict,
)
from herd.sim.server import RunningEmulator, build_app, start_emulator

__all__ = [
    "BUILTIN_PROFILES",
    "CATALOGUE",
    "Device",
    "FaultSpec",
    "RunningEmulator",
    "SimModel",
    "SimProfile",
    "build_app",
    "builtin_profile",
    "builtin_profile_names",
    "load_profile",
    "profile_from_dict",
    "start_emulator",
]
