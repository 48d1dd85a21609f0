"""``launch/rejoin.RayKeeper``: a worker's Ray node that ends by itself is started again
once the head answers; failed starts back off; stopping ends the keeper. Real child
processes and a real listening socket stand in for ``ray start --block`` and the
head's GCS port (no Ray here: unit tests never start it)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.errors import HerdError
from launch.cluster_node import RayNodeProcess
from launch.localray import wait_until
from launch.rejoin import RayKeeper


class FakeNode(RayNodeProcess):
    """A ``RayNodeProcess`` whose node is a sleeping child; ``fail`` starts that fail."""

    def __init__(self, data_dir: Path, fail: int = 0) -> None:
        super().__init__(data_dir)
        self.fail = fail
        self.starts: list[list[str]] = []

    def start(self, args: list[str], env: dict[str, str], timeout: float = 120.0) -> int:
        self.starts.append(args)
        if self.fail:
            self.fail -= 1
            raise HerdError("Ray did not start (port taken)")
        self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        return self.proc.pid

    def crash(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def head() -> Iterator[tuple[str, int]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield "127.0.0.1", server.getsockname()[1]
    server.close()


def _keeper(
    node: FakeNode, head: tuple[str, int], said: list[str]
) -> tuple[RayKeeper, threading.Event, threading.Thread]:
    stop = threading.Event()
    keeper = RayKeeper(node, ["--address=h:6379"], {}, head, stop, said.append, (0.05, 0.2))
    return keeper, stop, keeper.thread()


def test_a_node_that_ended_is_started_again_with_the_same_flags(
    tmp_path: Path, head: tuple[str, int]
) -> None:
    node, said = FakeNode(tmp_path), []
    node.start(["--address=h:6379"], {})
    keeper, stop, thread = _keeper(node, head, said)
    try:
        for n in (1, 2):  # twice: it keeps watching the node it started
            node.crash()
            wait_until(lambda n=n: len(keeper.restarts) == n, 10, f"restart {n}")
            assert node.proc is not None and node.proc.poll() is None
        assert node.starts == [["--address=h:6379"]] * 3
        assert any("Ray on this box ended" in line and "exited" in line for line in said)
        assert any("Ray node started again" in line for line in said)
    finally:
        stop.set()
        thread.join(5)
        node.crash()
    assert not thread.is_alive()


def test_it_waits_for_the_head_and_backs_off_failed_starts(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]  # bound, not listening: the head is unreachable
    node, said = FakeNode(tmp_path, fail=2), []
    node.proc = subprocess.Popen([sys.executable, "-c", "pass"])
    node.proc.wait()  # the node has ended already
    keeper, stop, thread = _keeper(node, ("127.0.0.1", port), said)
    try:
        wait_until(lambda: any("joining" in line for line in said), 10, "the keeper noticed")
        assert not stop.wait(1.5) and node.starts == []  # nothing tried while the head is away
        server.listen()
        wait_until(lambda: keeper.restarts, 10, "started once the head answers")
        assert len(node.starts) == 3  # two failed starts, then one that worked
        assert sum("did not start again" in line for line in said) == 2
    finally:
        stop.set()
        thread.join(5)
        server.close()
        if node.proc is not None:
            node.proc.kill()
    assert not thread.is_alive()


def test_stopping_ends_the_keeper_without_a_restart(tmp_path: Path, head: tuple[str, int]) -> None:
    node, said = FakeNode(tmp_path), []
    node.start([], {})
    keeper, stop, thread = _keeper(node, head, said)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    node.crash()
    assert keeper.restarts == [] and node.starts == [[]] and said == []


def test_a_node_an_earlier_run_left_is_watched_through_its_pid(tmp_path: Path) -> None:
    """``herd join --foreground`` on a box whose Ray node a background ``herd join``
    left running: the node is watched (not taken as ended at once), then seen ending."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "ray-node.pid").write_text(str(child.pid))
        node = RayNodeProcess(tmp_path)  # no process object: found by its pid file
        assert node.proc is None and node.running_pid() == child.pid
        stop = threading.Event()
        ended: list[bool] = []
        watch = threading.Thread(target=lambda: ended.append(node.wait_ended(stop, 0.05)))
        watch.start()
        assert not stop.wait(0.5) and not ended  # still running: still watched
        child.kill()
        child.wait()
        watch.join(5)
        assert ended == [True]
    finally:
        child.kill()
