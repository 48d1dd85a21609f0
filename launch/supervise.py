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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import ray

from actors import NAMESPACE, ROUTER_NAME, node_actor_name
from actors.naming import get_named
from herd.settings import Settings

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
        self.redeployed: list[str] = []

    def check_once(self) -> list[str]:
        """Deploy again what is gone; returns the names deployed."""
        done: list[str] = []
        if self.head and self._needs_deploy(ROUTER_NAME):
            from actors.router import deploy_router_actor

            deploy_router_actor(self.settings, ray_node_id=self.ray_node_id)
            done.append(ROUTER_NAME)
        name = node_actor_name(self.node_id)
        if self._needs_deploy(name):
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
        return done

    def _needs_deploy(self, name: str) -> bool:
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
                log.warning("supervision check failed: %s", exc)
                self.say(f"supervision check failed ({type(exc).__name__}): {exc}")
