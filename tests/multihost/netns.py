"""Separate hosts on one machine: a Linux bridge and one network namespace per host.

Each host gets a namespace ``herd-<run>-<name>`` with loopback up and a veth pair: its
end (``eth0`` inside) carries ``10.213.<net>.<n>/24``, the other end hangs on the
run's bridge in the root namespace, which holds ``.1`` (so the test process reaches
every host). The default route inside points at the bridge only so that programs that
ask "which address would I use" (Ray's drivers do) get the host's own address: the
root namespace does not forward (``ip_forward`` 0 is checked), so nothing leaves the
machine. Names carry a random run id and the subnet is the first ``10.213.x.0/24``
no interface uses, so two runs never collide. ``Network.close`` kills every process
left in the namespaces (each was started by this run inside them), then deletes the
namespaces, the veths and the bridge; it runs after a failure too.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def ip(*args: str, check: bool = True) -> str:
    """One ``ip`` command; its stderr in the error when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _used_subnets() -> set[int]:
    text = ip("-o", "-4", "addr") + ip("-4", "route")
    return {int(m) for m in re.findall(r"\b10\.213\.(\d+)\.", text)}


def forwarding_off() -> bool:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"


@dataclass
class NetHost:
    name: str
    ns: str
    ip: str
    veth: str  # the root namespace's end, on the bridge: `ip link set <veth> down` cuts it
    init: subprocess.Popen[bytes] | None = None  # `unshare`, parent of the PID namespace's 1
    init_pid: int = 0  # that namespace's PID 1 (`sleep infinity`) as the root sees it

    def command(self, cmd: list[str], cwd: Path) -> list[str]:
        """``cmd`` run on this host: its network, PID and mount (``/proc``) namespaces."""
        base = ["nsenter", "-t", str(self.init_pid), "--net", "--pid", "--mount"]
        return [*base, f"--wd={cwd}", "--", *cmd]


@dataclass
class Network:
    """The run's bridge and namespaces (``create`` first, ``close`` always)."""

    run: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: int = -1
    hosts: dict[str, NetHost] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"hbr{self.run}"

    @property
    def gateway(self) -> str:
        return f"10.213.{self.subnet}.1"

    def create(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError(
                "the multi-host suite builds network namespaces and needs root (CI runs as "
                "root); deselect it with -m 'not multihost'"
            )
        if not forwarding_off():
            raise RuntimeError("net.ipv4.ip_forward is on: namespaces could reach beyond")
        free = [n for n in range(256) if n not in _used_subnets()]
        self.subnet = free[0]
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add_host(self, name: str, number: int) -> NetHost:
        """Namespace, veth pair and address ``10.213.<subnet>.<number>`` for ``name``."""
        ns = f"herd-{self.run}-{name}"
        veth, peer = f"hv{self.run}{number}", f"hp{self.run}{number}"
        host = NetHost(name, ns, f"10.213.{self.subnet}.{number}", veth)
        self.hosts[name] = host
        ip("netns", "add", ns)
        ip("link", "add", veth, "type", "veth", "peer", "name", peer, "netns", ns)
        ip("link", "set", veth, "master", self.bridge, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", peer, "name", "eth0")
        ip("-n", ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "route", "add", "default", "via", self.gateway)
        self._start_init(host)
        return host

    def _start_init(self, host: NetHost) -> None:
        """A PID namespace per host (with its own ``/proc``): Ray finds "its" raylet by
        listing the processes it sees, and a separate box sees only its own. Killing its
        PID 1 ends every process of the host."""
        unshare = ["unshare", "--pid", "--mount", "--fork", "--mount-proc", "sleep", "infinity"]
        host.init = subprocess.Popen(["ip", "netns", "exec", host.ns, *unshare])
        children = Path(f"/proc/{host.init.pid}/task/{host.init.pid}/children")
        deadline = time.monotonic() + 10
        while not (found := children.read_text().split()):
            if time.monotonic() > deadline or host.init.poll() is not None:
                raise RuntimeError(f"no PID namespace for {host.name}")
            time.sleep(0.02)  # the poll step while unshare forks
        host.init_pid = int(found[0])

    def link(self, name: str, up: bool) -> None:
        ip("link", "set", self.hosts[name].veth, "up" if up else "down")

    def pids(self, name: str) -> list[int]:
        out = ip("netns", "pids", self.hosts[name].ns, check=False)
        return [int(p) for p in out.split()]

    def kill_all(self, name: str, timeout: float = 10.0) -> None:
        """SIGKILL every process in the host's namespace (all started by this run)."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids(name)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)  # the poll step while the kernel reaps them

    def close(self) -> None:
        for name, host in self.hosts.items():
            if host.init_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(host.init_pid, signal.SIGKILL)
            self.kill_all(name)
            if host.init is not None:
                host.init.wait(10)
            ip("netns", "del", host.ns, check=False)
            ip("link", "del", host.veth, check=False)
        if self.subnet >= 0:
            ip("link", "del", self.bridge, check=False)


def process_name(pid: int) -> str:
    """argv[0]'s base name of ``pid`` ('' when it is gone)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return ""
    return os.path.basename(argv0.decode(errors="replace"))
