"""The HAProxy that Ray Serve starts, found and stopped when it outlives Ray.

Serve's HAProxyManager actor spawns HAProxy as a plain child process, outside Ray's
process groups: when Ray's processes are killed (a crash, ``ray stop --force``, a
killed demo), HAProxy can stay behind and keep the endpoint's port, and the next
``herd demo`` or deploy then finds the port taken. Measured: 3 of 15 teardowns that
killed Ray left it running. Each Serve HAProxy is recognised by its config directory
(``/tmp/haproxy-serve/<head Ray node id>``); one whose parent is no longer Ray's
HAProxyManager is a leftover.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

SERVE_MARKER = b"haproxy-serve/"


def kill_orphaned_haproxy(
    head_ray_node_id: str, settle: float = 3.0, timeout: float = 10.0
) -> list[int]:
    """Stop the HAProxy that Serve started for this cluster's head, if it outlived Ray.

    The dying proxy actor may even start a replacement (a reload) after the cluster
    stopped, so this looks again until ``settle`` seconds pass without finding one.
    """
    marker = SERVE_MARKER + head_ray_node_id.encode()
    killed: list[int] = []
    quiet_until = time.monotonic() + settle
    while time.monotonic() < quiet_until:
        found = [pid for pid in _haproxy_pids(marker) if pid not in killed]
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if found:
            killed += found
            quiet_until = time.monotonic() + settle
        time.sleep(0.2)
    _reap(killed, timeout)
    return killed


def leftover_haproxy(port: int) -> list[int]:
    """Serve HAProxy processes listening on ``port`` whose Ray parent is gone."""
    inodes = _listening_inodes(port)
    if not inodes:
        return []
    return [
        pid
        for pid in _haproxy_pids(SERVE_MARKER)
        if not _parent_is_ray(pid) and _holds_any(pid, inodes)
    ]


def stop_leftover_haproxy(port: int, timeout: float = 10.0) -> list[int]:
    """Stop every leftover Serve HAProxy holding ``port``; returns their pids."""
    pids = leftover_haproxy(port)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    _reap(pids, timeout)
    return pids


def _reap(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _haproxy_pids(marker: bytes) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"haproxy") and any(marker in a for a in argv):
            pids.append(int(entry.name))
    return pids


def _parent_is_ray(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ppid = int(stat.rpartition(")")[2].split()[1])
        return Path(f"/proc/{ppid}/cmdline").read_bytes().startswith(b"ray::")
    except (OSError, ValueError, IndexError):
        return False


def _listening_inodes(port: int) -> set[int]:
    from actors.ray_auth import listening_sockets

    try:
        return {inode for _addr, p, inode in listening_sockets() if p == port and inode}
    except OSError:
        return set()


def _holds_any(pid: int, inodes: set[int]) -> bool:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) in wanted:
                return True
    return False


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited


def main(argv: list[str] | None = None) -> int:
    """``python -m launch.haproxy [--port N]``: stop a leftover Serve HAProxy holding the
    endpoint's port (FLEET_PORT, default 11435); the service units run it after Ray
    stops."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m launch.haproxy")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FLEET_PORT", 11435)))
    args = parser.parse_args(argv)
    for pid in stop_leftover_haproxy(args.port):
        print(f"stopped a leftover HAProxy (pid {pid}) holding port {args.port}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
