"""A driver of the test's own Ray cluster, run with the full install's Python (the head's
side) by ``tests/packaging/test_node_only_ray.py``; prints one JSON object.

``check NAME``: the NodeActor ``NAME`` answers a chat, and which install's Ray
(``_raylet.so``) its process runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import ray

from actors import NAMESPACE, node_actor_name
from actors.cluster import connect
from herd.domain import InferenceRequest


def check(name: str) -> dict[str, Any]:
    handle = ray.get_actor(node_actor_name(name), namespace=NAMESPACE)
    answered: Any = ray.get(handle.pid.remote(), timeout=30)
    pid = int(answered)
    # Ray renames the worker's process title; its mapped files say which install runs.
    mapped = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()}
    raylet = sorted(path for path in mapped if path.endswith("/ray/_raylet.so"))
    body = {"messages": [{"role": "user", "content": "Tell me about herds."}], "stream": False}
    answer = ray.get(
        handle.complete.remote(InferenceRequest("r1", "chat", "tiny:1b", body), "tiny:1b"),
        timeout=60,
    )
    return {
        "raylet": raylet,
        "engines": ray.get(handle.media_engines.remote(), timeout=30),
        "content": answer.get("message", {}).get("content", ""),
        "done": answer.get("done"),
    }


def main() -> None:
    command, address, name = sys.argv[1:4]
    assert command == "check", command
    connect(address, timeout=60)
    print(json.dumps(check(name)))
    ray.shutdown()


if __name__ == "__main__":
    main()
