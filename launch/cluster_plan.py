"""The pure parts of ``herd start`` / ``herd join``: the address a box shows the others,
the Ray environment and ``ray start`` arguments, the join command line, the token file,
and the version check of a box against the head.

Versions: Ray refuses a node or driver whose Ray version, or Python version, differs
from the head's (by default to the patch level). herd refuses before it starts Ray,
with what to install: a different Ray version or Python minor version is a refusal; a
Python patch difference is accepted (every Ray process herd starts runs with
``RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor``), and a different herd version is a
warning (the wire between herd's actors may differ).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from herd.errors import ConfigError
from launch.localray import LEAN_RAY_FLAGS, auth_env, ray_env, resource_name

GCS_PORT = 6379
TOKEN_FILE = "ray-token"
PID_FILE = "ray-node.pid"
RAY_LOG = "ray-node.log"
# Where the head writes its versions for joining boxes (read with the Ray token).
KV_NAMESPACE = b"herd"
KV_VERSIONS = b"versions"
MAC_WINDOWS_FLAG = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
MAC_WINDOWS_WARNING = (
    "warning: Ray supports clusters of several machines on Linux only; on macOS and "
    "Windows herd sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1, which Ray allows 'at your "
    "own risk' (nodes may be less stable there; a Linux head is the safest choice)"
)
# A route lookup only (a UDP socket sends nothing on connect): the interface that
# carries traffic out of this machine when no head is known yet.
_OUTSIDE = "192.0.2.1"  # TEST-NET-1, never answered


@dataclass(frozen=True)
class Versions:
    python: str
    ray: str
    herd: str | None = None

    @staticmethod
    def here() -> Versions:
        import ray

        from herd import __version__

        python = ".".join(str(p) for p in sys.version_info[:3])
        return Versions(python=python, ray=str(ray.__version__), herd=__version__)


@dataclass
class VersionCheck:
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def compare_versions(head: Versions, here: Versions) -> VersionCheck:
    """What differs between the head and this box, each said with what to do."""
    check = VersionCheck()
    if head.ray != here.ray:
        check.refusals.append(
            f"Ray differs: the head runs Ray {head.ray}, this box {here.ray} (every machine "
            f"needs the same Ray version: pip install 'ray[serve]=={head.ray}' here)"
        )
    if _minor(head.python) != _minor(here.python):
        check.refusals.append(
            f"Python differs: the head runs Python {head.python}, this box {here.python} "
            f"(Ray needs the same Python minor version on every machine: install herd "
            f"here under Python {_minor(head.python)})"
        )
    elif head.python != here.python:
        check.warnings.append(
            f"Python patch versions differ (head {head.python}, this box {here.python}): "
            "accepted (the Ray processes herd starts use "
            "RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor; set it too for other Ray "
            "drivers on this box)"
        )
    if head.herd is None:
        check.warnings.append(
            "the head does not say its herd version (it was not started with `herd start`)"
        )
    elif head.herd != here.herd:
        check.warnings.append(
            f"herd differs: the head runs herd {head.herd}, this box {here.herd} "
            "(install the same herd on every machine; mixed versions may not understand "
            "each other)"
        )
    return check


def parse_head(text: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` of the head's GCS (port 6379 if absent)."""
    value = text.strip().removeprefix("ray://")
    host, port = value, str(GCS_PORT)
    if value.startswith("["):
        host, _, tail = value[1:].partition("]")
        port = tail[1:] if tail.startswith(":") and tail[1:] else port
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"cannot read the head's address '{text}': use HOST or HOST:PORT")
    return host, int(port)


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def pick_address(routed: str | None, candidates: list[str]) -> str:
    """The address other machines reach this one at: the one the route out uses, else a
    private IPv4 address of this machine, else any non-loopback one, else 127.0.0.1."""
    usable: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in ([routed] if routed else []) + candidates:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if not (addr.is_loopback or addr.is_link_local or addr.is_unspecified):
            usable.append(addr)
    if routed and usable and str(usable[0]) == routed:
        return routed
    for addr in usable:
        if addr.version == 4 and addr.is_private:
            return str(addr)
    return str(usable[0]) if usable else "127.0.0.1"


def routed_address(towards: str) -> str | None:
    """This machine's address on the route to ``towards`` (nothing is sent)."""
    family = socket.AF_INET6 if ":" in towards else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((towards, 9))
            return str(s.getsockname()[0])
    except OSError:
        return None


def lan_address(towards: str | None = None) -> str:
    """This box's address towards the head (``towards``), or its LAN address."""
    if towards is not None:
        resolved = resolve(towards)
        if ipaddress.ip_address(resolved).is_loopback:
            return resolved
        found = routed_address(resolved)
        if found:
            return found
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
        candidates = [str(info[4][0]) for info in infos]
    except OSError:
        candidates = []
    return pick_address(routed_address(_OUTSIDE), candidates)


def resolve(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])
    except OSError as exc:
        raise ConfigError(f"cannot resolve the head's name '{host}': {exc}") from None


def join_command(address: str, token: str) -> str:
    """The one line to run on every other box."""
    return f"herd join {shlex.quote(address)} --token {shlex.quote(token)}"


# How fast Ray gives up on a box that stopped answering, on a LAN: a health check each
# second, each allowed a second, five misses in a row: a dead or unplugged machine is
# marked dead within about 5-10 s (Ray's defaults: 30-65 s), so its requests move at
# once; a Wi-Fi hiccup shorter than that is ridden out. The one-box test fleets use
# tighter values (launch/localray.py). A value set in the environment wins.
LAN_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}


def node_env(token_path: Path, platform: str = sys.platform) -> dict[str, str]:
    """The environment of a Ray node herd starts (head or worker) and of its drivers:
    token auth, Serve's HAProxy ingress (read when the head starts), usage stats off,
    Python patch versions accepted, and on macOS / Windows Ray's multi-machine flag."""
    env = ray_env("haproxy", token_path)
    for key, value in LAN_HEALTH_CHECKS.items():
        env[key] = os.environ.get(key, value)
    env.setdefault("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", "minor")
    if needs_cluster_flag(platform):
        env[MAC_WINDOWS_FLAG] = "1"
    return env


def driver_env(token_path: Path, platform: str = sys.platform) -> dict[str, str]:
    """What this process sets in its own environment before it joins as a driver."""
    env = {**auth_env(token_path), "RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL": "minor"}
    if needs_cluster_flag(platform):
        env[MAC_WINDOWS_FLAG] = "1"
    return env


def needs_cluster_flag(platform: str) -> bool:
    return platform == "darwin" or platform.startswith("win")


def head_args(
    ip: str, port: int, node_name: str, temp_dir: Path | None, extra: list[str]
) -> list[str]:
    """``ray start`` arguments of the head (dashboard off, usage stats off, the node's
    herd resource for pinning its actors)."""
    args = [
        "--head",
        f"--node-ip-address={ip}",
        f"--port={port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--resources={json.dumps({resource_name(node_name): 1})}",
        *LEAN_RAY_FLAGS,
    ]
    if temp_dir is not None:
        args.append(f"--temp-dir={temp_dir}")
    return args + extra


def worker_args(
    head: str, ip: str, node_name: str, temp_dir: Path | None, extra: list[str]
) -> list[str]:
    args = [
        f"--address={head}",
        f"--node-ip-address={ip}",
        f"--resources={json.dumps({resource_name(node_name): 1})}",
        *LEAN_RAY_FLAGS,
    ]
    if temp_dir is not None:
        args.append(f"--temp-dir={temp_dir}")
    return args + extra


def check_token(text: str) -> str:
    token = text.strip()
    if not token or len(token) > 512 or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError("the Ray token must be one word of printable characters")
    return token


def save_token(path: Path, token: str) -> None:
    """``token`` in ``path`` (dir 0700, file 0600, never through a link)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    path.chmod(0o600)


def read_token(path: Path) -> str:
    try:
        return check_token(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the Ray token in {path}: {exc.strerror}") from None
