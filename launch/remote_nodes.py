"""Remote nodes: devices that join without Ray (``herd add-node``).

A box that cannot or should not run Ray (Windows, an old Mac, a machine its owner
keeps Ray off) still serves the fleet: its NodeActor runs on a Ray node of the fleet
(the head by default) and talks to that box's Ollama over the LAN. Models and load
state come from Ollama's own API; memory is what ``--memory`` says (Ollama does not
report the machine's), CPU and the owner's signals are unknown and reported as such.

The list of remote nodes is kept in ``<data dir>/remote-nodes.json`` on the machine
that added them, so ``herd deploy --foreground`` there deploys them again when their
actors are gone (``launch/supervise.py``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from herd.errors import ConfigError
from herd.settings import Settings

REGISTRY_FILE = "remote-nodes.json"
MAX_REMOTE_NODES = 256
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_GIB = 1024**3


@dataclass(frozen=True)
class RemoteNode:
    name: str
    ollama: str  # http(s)://HOST:PORT of its Ollama
    memory_bytes: int | None = None
    num_parallel: int = 1
    ray_node_id: str | None = None  # where its actor runs; None: the head


def check_remote(name: str, ollama: str, memory_gb: float | None, parallel: int) -> RemoteNode:
    """The ``herd add-node`` arguments, validated (``ConfigError`` says what is wrong)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"node name {name!r}: 1-63 characters of letters, digits, '.', '_' and '-'"
        )
    parts = urlsplit(ollama)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--ollama {ollama!r}: give its URL, e.g. http://192.168.1.20:11434")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"--ollama {ollama!r}: only scheme, host and port, no path")
    if memory_gb is not None and not 0 < memory_gb <= 4096:
        raise ConfigError(f"--memory {memory_gb}: GB of memory for models, 0 < GB <= 4096")
    if not 1 <= parallel <= 64:
        raise ConfigError(f"--parallel {parallel}: its OLLAMA_NUM_PARALLEL, 1-64")
    memory = int(memory_gb * _GIB) if memory_gb is not None else None
    url = f"{parts.scheme}://{parts.netloc}"
    return RemoteNode(name=name, ollama=url, memory_bytes=memory, num_parallel=parallel)


def remote_settings(settings: Settings, node: RemoteNode) -> Settings:
    """The settings its NodeActor runs with: that Ollama, no local engines, no local
    llama.cpp, no capacity learning (its owner's signals are on another machine)."""
    update: dict[str, Any] = {
        "name": node.name,
        "ollama_host": node.ollama,
        "remote": True,
        "llamacpp": "off",
        "engines": "off",
        "num_parallel": node.num_parallel,
        "memory_bytes": node.memory_bytes,
        "enable_capacity_learning": False,
    }
    known = type(settings.node).model_fields
    node_settings = settings.node.model_copy(update={k: v for k, v in update.items() if k in known})
    return settings.model_copy(update={"node": node_settings})


class Registry:
    """``<data dir>/remote-nodes.json``: the remote nodes this machine added."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / REGISTRY_FILE

    def load(self) -> dict[str, RemoteNode]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: not a remote-node list ({exc})") from exc
        nodes = {}
        for entry in raw.get("nodes", []) if isinstance(raw, dict) else []:
            try:
                node = RemoteNode(**entry)
            except TypeError as exc:
                raise ConfigError(f"{self.path}: bad entry {entry!r}") from exc
            nodes[node.name] = node
        return nodes

    def put(self, node: RemoteNode) -> None:
        nodes = self.load()
        if node.name not in nodes and len(nodes) >= MAX_REMOTE_NODES:
            raise ConfigError(f"at most {MAX_REMOTE_NODES} remote nodes")
        nodes[node.name] = node
        self._save(nodes)

    def remove(self, name: str) -> bool:
        nodes = self.load()
        if nodes.pop(name, None) is None:
            return False
        self._save(nodes)
        return True

    def _save(self, nodes: dict[str, RemoteNode]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = {"nodes": [asdict(n) for n in sorted(nodes.values(), key=lambda n: n.name)]}
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        os.replace(tmp, self.path)


def probe_ollama(url: str, timeout: float = 5.0) -> str:
    """The version of the Ollama at ``url``, or ``ConfigError`` saying it did not answer."""
    import httpx

    try:
        r = httpx.get(f"{url}/api/version", timeout=timeout)
        r.raise_for_status()
        return str(r.json().get("version", "?"))
    except (httpx.HTTPError, ValueError) as exc:
        raise ConfigError(
            f"no Ollama answers at {url} ({type(exc).__name__}): is it running, and does it "
            "listen on the network (OLLAMA_HOST=0.0.0.0 on that machine)?"
        ) from exc


def deploy_remote(settings: Settings, node: RemoteNode) -> Any:
    """Its NodeActor, on ``node.ray_node_id`` or the head (Ray must be connected)."""
    from actors.cluster import head_ray_node_id
    from actors.node import deploy_node_actor

    ray_node_id = node.ray_node_id or head_ray_node_id()
    if ray_node_id is None:
        raise ConfigError("no Ray head is alive in this cluster to host the node")
    return deploy_node_actor(remote_settings(settings, node), node.name, ray_node_id)


def add_remote(settings: Settings, node: RemoteNode) -> str:
    """``herd add-node``: check its Ollama answers, deploy its actor, remember it."""
    version = probe_ollama(node.ollama)
    deploy_remote(settings, node)
    Registry(settings.data_dir).put(node)
    return version


def remove_remote(settings: Settings, name: str, drain_timeout: float = 60.0) -> list[str]:
    """``herd remove-node``: drain it, remove its actor, forget it."""
    from launch.teardown import leave_fleet

    lines = []
    # Forgotten first, so a supervisor does not deploy it again while it drains.
    if Registry(settings.data_dir).remove(name):
        lines.append(f"node {name}: removed from {REGISTRY_FILE}")
    lines += leave_fleet(name, drain_timeout)
    return lines
