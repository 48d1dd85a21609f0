"""``herd join --foreground`` keeps this box in the fleet when its Ray node ends by
itself: the head declared it dead (the box lost its network, slept, its link was cut)
or the raylet crashed. A dead Ray node never rejoins (Ray's rule), so the node is
started again as soon as the head's GCS port answers, with the same flags; the
supervisor (``launch/supervise.py``) then follows the new Ray node id and deploys this
box's NodeActor there. No service manager and no manual step are needed. Failed starts
back off (1 s doubling to 30 s) so a box that cannot start Ray does not spin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from herd.errors import HerdError
from launch.cluster_node import RayNodeProcess
from launch.localray import port_open

HEAD_POLL_S = 1.0  # how often an unreachable head is tried (one TCP connect)


class RayKeeper:
    """Starts this box's Ray worker again whenever it ends, until ``stop`` is set."""

    def __init__(
        self,
        node: RayNodeProcess,
        args: list[str],
        env: dict[str, str],
        head: tuple[str, int],
        stop: threading.Event,
        say: Callable[[str], None],
        backoff: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.node, self.args, self.env, self.head = node, args, env, head
        self.stop, self.say, self.backoff = stop, say, backoff
        self.restarts: list[float] = []  # seconds from each end to the node up again

    def run(self) -> None:
        while self.node.wait_ended(self.stop):
            ended = time.monotonic()
            host, port = self.head
            self.say(
                f"Ray on this box ended ({self.node.ended_how()}; the head may have declared "
                f"it dead after a network loss): joining {host}:{port} again once it answers"
            )
            if not self._start_again():
                return
            took = time.monotonic() - ended
            self.restarts.append(took)
            self.say(f"Ray node started again, {took:.1f} s after it ended")

    def _start_again(self) -> bool:
        """Start the node once the head answers; False when stopped first."""
        delay = self.backoff[0]
        while not self.stop.is_set():
            host, port = self.head
            if not port_open(port, host, timeout=2.0):
                self.stop.wait(HEAD_POLL_S)
                continue
            try:
                self.node.start(self.args, self.env)
                return True
            except HerdError as exc:
                self.say(f"Ray did not start again ({exc.message}); next try in {delay:.0f} s")
            if self.stop.wait(delay):
                break
            delay = min(delay * 2, self.backoff[1])
        return False

    def thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="ray-keeper", daemon=True)
        thread.start()
        return thread
