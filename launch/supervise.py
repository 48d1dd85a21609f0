"""The service form's watch: ``herd deploy --foreground`` brings back an actor that is
gone for good.

Ray restarts a crashed RouterActor or NodeActor by itself (``max_restarts``); what it
cannot bring back is an actor that was removed (``ray.kill`` from a stray script, its
restarts exhausted, its Ray node replaced after the box rejoined under a new node id).
The foreground process of each box checks its own NodeActor (on the head also the
RouterActor, and the remote nodes this machine added with ``herd add-node``) every
interval and deploys a missing one again. An actor that does not
answer is given ``grace`` seconds (Ray may be restarting it: 2-4 s measured) before it
is replaced.

A box whose Ray node ended and came back (the head declared it dead after a network
loss or sleep, and its service manager or ``herd join --foreground`` started Ray again)
has a new Ray node id: the watch follows it (found by the node's resource, or as the
raylet this process reaches once it joined again), and deploys this box's actors there
at once, without the grace: the old ones were on a node that is gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import ray

from actors import NAMESPACE, ROUTER_NAME, node_actor_name
from actors.cluster import connect, ray_node_with_resource
from actors.naming import get_named
from herd.settings import Settings
from launch.localray import resource_name

log = logging.getLogger("herd.supervise")


def answers(name: str, timeout: float) -> bool | None:
    """True when the named actor answers a ping, False when it does not (restarting,
    hung), None when no actor has that name."""
    handle = get_named(name, NAMESPACE)
    if handle is None:
        return None
    try:
        ray.get(handle.ping.remote(), timeout=timeout)
    except Exception:
        return False
    return True


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        node_id: str,
        ray_node_id: str,
        head: bool,
        say: Callable[[str], None] = print,
        grace: float = 30.0,
    ) -> None:
        self.settings = settings
        self.node_id = node_id
        self.ray_node_id = ray_node_id
        self.head = head
        self.say = say
        self.grace = grace
        self._silent_since: dict[str, float] = {}
        self._moved = False  # this box's Ray node changed: deploy here without the grace
        self._last_failure = ""
        self.redeployed: list[str] = []
        self.gcs = str(ray.get_runtime_context().gcs_address)

    def check_once(self) -> list[str]:
        """Deploy again what is gone; returns the names deployed."""
        done: list[str] = []
        if not self._follow_ray_node():
            return done  # this box has no live Ray node yet: nothing can be deployed here
        moved = self._moved  # the actors of this box were on its old Ray node: replace them
        if self.head and self._needs_deploy(ROUTER_NAME, moved):
            from actors.router import deploy_router_actor

            deploy_router_actor(self.settings, ray_node_id=self.ray_node_id)
            done.append(ROUTER_NAME)
        name = node_actor_name(self.node_id)
        if self._needs_deploy(name, moved):
            from actors.node import deploy_node_actor

            deploy_node_actor(self.settings, self.node_id, self.ray_node_id)
            done.append(name)
        # The remote nodes this machine added (herd add-node; launch/remote_nodes.py).
        from launch.remote_nodes import Registry, deploy_remote

        for remote in Registry(self.settings.data_dir).load().values():
            name = node_actor_name(remote.name)
            if self._needs_deploy(name):
                deploy_remote(self.settings, remote)
                done.append(name)
        for deployed in done:
            self.say(f"{deployed}: was gone, deployed again")
        self.redeployed += done
        self._moved = False
        return done

    def _follow_ray_node(self) -> bool:
        """True when this box's Ray node is alive; after it rejoined under a new id, that
        id (this process joins again first when the raylet it was connected to is gone)."""
        if not ray.is_initialized():  # an earlier check could not join again yet
            connect(self.gcs, timeout=self.settings.ray_connect_timeout)
        alive = _alive_ray_nodes()
        if self.ray_node_id in alive:
            return True
        if str(ray.get_runtime_context().get_node_id()) not in alive:
            ray.shutdown()  # connected to a raylet that is gone: join through the new one
            connect(self.gcs, timeout=self.settings.ray_connect_timeout)
            alive = _alive_ray_nodes()
        found = ray_node_with_resource(resource_name(self.node_id))
        new = found or str(ray.get_runtime_context().get_node_id())
        if new not in alive:
            return False
        self.say(f"this box's Ray node is back (was {self.ray_node_id[:12]}, now {new[:12]})")
        self.ray_node_id, self._moved = new, True
        return True

    def _needs_deploy(self, name: str, moved: bool = False) -> bool:
        if moved:
            return True
        state = answers(name, self.settings.actor_call_timeout)
        if state is not False:  # answers, or gone
            self._silent_since.pop(name, None)
            return state is None
        since = self._silent_since.setdefault(name, time.monotonic())
        if time.monotonic() - since < self.grace:
            return False
        self._silent_since.pop(name, None)
        return True

    def run(self, stop: threading.Event, interval: float) -> None:
        """Check every ``interval`` seconds until ``stop`` is set."""
        while not stop.wait(interval):
            try:
                self.check_once()
            except Exception as exc:  # the cluster is unreachable for now: next check
                failure = f"supervision check failed ({type(exc).__name__}): {exc}"
                log.warning("%s", failure)
                if failure != self._last_failure:  # said once, not every interval
                    self.say(failure)
                self._last_failure = failure
            else:
                self._last_failure = ""


def _alive_ray_nodes() -> set[str]:
    """The ids of the cluster's live Ray nodes."""
    return {str(info["NodeID"]) for info in ray.nodes() if info.get("Alive")}
