"""Replace a named detached actor cleanly (idempotent deploys)."""

from __future__ import annotations

import logging
import time
from typing import Any

import ray

log = logging.getLogger("herd.actors")


def get_named(name: str, namespace: str) -> Any | None:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def kill_named(
    name: str, namespace: str, graceful: str | None = None, timeout: float = 15.0
) -> None:
    """Kill the actor called ``name`` (after ``graceful()`` if given) and wait for the name."""
    old = get_named(name, namespace)
    if old is None:
        return
    if graceful is not None:
        try:
            ray.get(getattr(old, graceful).remote(), timeout=timeout)
        except Exception as exc:
            log.warning("%s did not stop cleanly: %s", name, exc)
    ray.kill(old, no_restart=True)
    deadline = time.monotonic() + timeout
    while get_named(name, namespace) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"actor {name} still registered after kill")
        time.sleep(0.05)
