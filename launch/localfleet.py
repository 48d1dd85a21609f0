"""A real herd fleet on this one machine: several Ray nodes on 127.0.0.1, Ollama
emulators and/or the packaged llama.cpp model, the router and the Serve endpoint.

Used by ``herd demo``, the integration tests and the benchmarks, so all three run the
same deployment code as a real fleet (``herd deploy``) does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import ray

from actors.cluster import connect, ray_node_with_resource
from actors.node import deploy_node_actor
from actors.router import deploy_router_actor
from herd.backends.llamacpp_models import ensure_model
from herd.settings import Settings
from herd.sim.profiles import load_profile
from launch.admin import with_admin_token
from launch.haproxy import kill_orphaned_haproxy
from launch.localray import (
    LocalRay,
    free_port,
    port_open,
    resource_name,
    wait_until,
)
from launch.teardown import stop_herd


@dataclass(frozen=True)
class NodeSpec:
    """One device: ``backend`` "sim" (an emulator with ``profile``) or "llamacpp".

    ``engines`` is the node's ``FLEET_NODE_ENGINES``: "off" (default: a simulated device
    has no real media engines), "auto", or a comma list such as
    "sentence-transformers,faster-whisper,diffusers". Engines load on first use, so they
    cost the fleet's start-up nothing."""

    name: str
    backend: str = "sim"
    profile: str = "mac-mini"
    ray_node: str | None = None  # host on another spec's Ray node instead of its own
    engines: str = "off"
    model: str = ""  # llamacpp: a packaged model (herd/backends/llamacpp_models.py); "": default
    capacity_learning: bool = False  # FLEET_NODE_ENABLE_CAPACITY_LEARNING (herd/capacity/)


@dataclass
class LocalFleet:
    settings: Settings
    specs: tuple[NodeSpec, ...]
    serve_proxy: str = "haproxy"
    cluster: LocalRay = field(init=False)
    emulators: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    emulator_urls: dict[str, str] = field(default_factory=dict)
    endpoint: str = ""
    head_ray_node_id: str | None = None
    admin_token_created: str | None = None

    def __post_init__(self) -> None:
        self.cluster = LocalRay(gcs_port=free_port(), serve_proxy=self.serve_proxy)

    # --- lifecycle -----------------------------------------------------------------
    def start(self, online_timeout: float = 90.0) -> str:
        ray_nodes = [s.name for s in self.specs if s.ray_node is None]
        self.cluster.start_head(ray_nodes[0])
        self.cluster.add_workers(ray_nodes[1:])
        for spec in self.specs:
            if spec.backend == "sim":
                self.start_emulator(spec.name, spec.profile)
        connect(self.cluster.address, timeout=30)
        self.settings, self.admin_token_created = with_admin_token(self.settings)
        head_id = self.head_ray_node_id = self.ray_node_id(ray_nodes[0])
        deploy_router_actor(self.settings, ray_node_id=head_id)
        for spec in self.specs:
            self.deploy_node(spec)
        from serve_app.app import deploy_serve

        self.endpoint = deploy_serve(self.settings)
        self.wait_online(len(self.specs), online_timeout)
        return self.endpoint

    def ray_node_id(self, ray_node_name: str) -> str:
        found = ray_node_with_resource(resource_name(ray_node_name))
        if found is None:
            raise RuntimeError(f"no Ray node carries {resource_name(ray_node_name)}")
        return found

    def node_settings(self, spec: NodeSpec) -> Settings:
        node: dict[str, Any] = {"name": spec.name, "engines": spec.engines}
        node.update(enable_capacity_learning=spec.capacity_learning)
        if spec.backend == "sim":
            node.update(ollama_host=self.emulator_urls[spec.name], llamacpp="off")
            # An emulated device reports its profile's memory, disk and parallel slots.
            profile = load_profile(spec.profile)
            node.update(memory_bytes=profile.memory_bytes, num_parallel=profile.num_parallel)
            node.update(disk_bytes=profile.disk_bytes)
        else:
            node.update(llamacpp="on")
            if spec.model:  # its GGUF, found or fetched here; the node names it after the file
                path = ensure_model(spec.model, self.settings.data_dir / "models")
                node.update(llamacpp_model_path=path)
        return self.settings.model_copy(update={"node": self.settings.node.model_copy(update=node)})

    def deploy_node(self, spec: NodeSpec) -> Any:
        ray_id = self.ray_node_id(spec.ray_node or spec.name)
        return deploy_node_actor(self.node_settings(spec), spec.name, ray_id)

    def start_emulator(self, name: str, profile: str | Path, port: int | None = None) -> str:
        port = port or free_port()
        cmd = [sys.executable, "-m", "herd.sim", "--port", str(port), "--profile", str(profile)]
        self.emulators[name] = subprocess.Popen(
            [*cmd, "--name", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.emulator_urls[name] = f"http://127.0.0.1:{port}"
        wait_until(lambda: port_open(port), 30, f"the {name} emulator", step=0.05)
        return self.emulator_urls[name]

    def stop_emulator(self, name: str) -> None:
        proc = self.emulators.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop(self, graceful: bool = False) -> None:
        try:
            if ray.is_initialized():
                if graceful:
                    for _line in stop_herd(self.settings, drain_timeout=10):
                        pass
                else:
                    self._stop_node_backends()
                ray.shutdown()
        finally:
            for name in list(self.emulators):
                self.stop_emulator(name)
            self.cluster.stop()
            if self.serve_proxy == "haproxy" and self.head_ray_node_id:
                # Serve's proxy starts HAProxy as its own child, outside Ray's process
                # groups: stop it too, or it keeps the endpoint's port.
                kill_orphaned_haproxy(self.head_ray_node_id)
                shutil.rmtree(Path("/tmp/haproxy-serve") / self.head_ray_node_id, True)

    def _stop_node_backends(self) -> None:
        """Stop the llama.cpp servers the node actors own (the rest dies with Ray)."""
        from actors import NAMESPACE, node_actor_name
        from actors.naming import get_named

        refs = []
        for spec in self.specs:
            handle = get_named(node_actor_name(spec.name), NAMESPACE)
            if handle is not None:
                refs.append(handle.shutdown.remote())
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=15)

    # --- reads ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.endpoint}/fleet/status", timeout=5).json()
        return result

    def node_status(self, name: str) -> dict[str, Any] | None:
        """This node's entry in /fleet/status; None while it is unknown or unreachable."""
        try:
            nodes = self.status()["nodes"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return next((n for n in nodes if n["node_id"] == name), None)

    def online(self) -> set[str]:
        try:
            nodes = self.status()["nodes"]
        except (httpx.HTTPError, ValueError, KeyError):
            return set()
        return {n["node_id"] for n in nodes if n["status"] == "online" and n["backend_ok"]}

    def wait_online(self, count: int, timeout: float = 60.0) -> None:
        wait_until(lambda: len(self.online()) >= count, timeout, f"{count} nodes online", 0.2)
