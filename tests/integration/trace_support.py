"""Reading a request's trace back through the dashboard's JSON API on the fleet's
endpoint (open there: the test fleet listens on loopback only)."""

from __future__ import annotations

from typing import Any

import httpx

from launch.localray import wait_until


def wait_trace(endpoint: str, request_id: str, timeout: float = 30) -> dict[str, Any]:
    """The trace of ``request_id`` once the router has written it."""
    found: dict[str, Any] = {}

    def ready() -> bool:
        r = httpx.get(f"{endpoint}/dashboard/api/traces/{request_id}", timeout=10)
        if r.status_code == 200:
            found.update(r.json())
        return bool(found)

    wait_until(ready, timeout, f"the trace of {request_id}", step=0.2)
    return found
