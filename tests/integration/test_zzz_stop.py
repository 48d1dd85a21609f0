"""`herd stop` drains every node and removes herd from the cluster (runs last of all)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.destructive]


def test_herd_stop_removes_router_nodes_and_endpoint(fleet: Any) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.cli",
            "stop",
            "--drain-timeout",
            "5",
            "--address",
            fleet.cluster.address,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **fleet.cluster.auth_env()},
    )
    assert done.returncode == 0, done.stderr
    assert "node alpha: drained" in done.stdout
    assert "router removed" in done.stdout

    from actors import NAMESPACE, ROUTER_NAME, node_actor_name
    from actors.naming import get_named

    assert get_named(ROUTER_NAME, NAMESPACE) is None
    assert get_named(node_actor_name("alpha"), NAMESPACE) is None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{fleet.endpoint}/fleet/status", timeout=5).raise_for_status()
