"""``herd start`` (the router box) and ``herd join HEAD`` (every other box): a fleet in
one command per machine.

``herd start`` generates the cluster's Ray token (``<data dir>/ray-token``, 0600) if
there is none, starts the Ray head with everything herd needs (token auth, Serve's
HAProxy ingress, dashboard and usage stats off, the LAN address, GCS port 6379),
deploys the router, the endpoint and this box's node, and prints the line to run on
every other box. ``herd join`` checks this box's Python / Ray / herd versions against
the head's (``launch/cluster_node.py``), starts a Ray worker with the head's token and
deploys this box's NodeActor. ``--foreground`` keeps either up as a service: the
actors are brought back when they are gone (``launch/supervise.py``), a worker's Ray
node that ended (declared dead after a network loss) is started again
(``launch/rejoin.py``); SIGTERM / Ctrl-C drains this node (on the head: stops herd)
and ends the Ray node. ``herd deploy`` stays for those who run Ray themselves. Pure
parts: ``launch/cluster_plan.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from herd.errors import ConfigError, FleetUnavailable, HerdError
from herd.settings import Settings
from launch.cli_http import EXIT_DENIED, EXIT_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from launch.cluster_node import RayNodeProcess, head_versions, names_in_cluster
from launch.cluster_plan import (
    GCS_PORT,
    MAC_WINDOWS_WARNING,
    TOKEN_FILE,
    Versions,
    check_token,
    compare_versions,
    driver_env,
    head_args,
    host_port,
    join_command,
    lan_address,
    needs_cluster_flag,
    node_env,
    parse_head,
    read_token,
    resolve,
    save_token,
    worker_args,
)
from launch.localray import port_open

DISCOVERY_S = 3.0  # herd join without HEAD browses mDNS this long


def _say(line: str, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


def _node_name(args: argparse.Namespace, settings: Settings) -> str:
    return str(args.node_name or settings.node.name or socket.gethostname())


def _use_token_here(token_path: Path) -> None:
    from actors.ray_auth import reload_auth

    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(driver_env(token_path))
    reload_auth()


def _head_token(token_path: Path) -> str:
    from launch.localray import write_token

    if not token_path.exists():
        write_token(token_path)
    token_path.chmod(0o600)
    return read_token(token_path)


def _start_ray(
    node: RayNodeProcess, args: list[str], env: dict[str, str], what: str
) -> tuple[int, bool]:
    """(pid, started now): a node a previous run left up is kept."""
    pid = node.running_pid()
    if pid is not None:
        _say(f"{what} already runs on this box (pid {pid}, started by herd): kept")
        return pid, False
    return node.start(args, env), True


def _ray_node_id(name: str, timeout: float) -> str:
    from actors.cluster import ray_node_with_resource
    from launch.localray import resource_name, wait_until

    found: list[str] = []

    def there() -> bool:
        node_id = ray_node_with_resource(resource_name(name))
        if node_id:
            found.append(node_id)
        return bool(node_id)

    wait_until(there, timeout, f"this box's Ray node ({name}) in the cluster", step=0.3)
    return found[0]


def _readable(command: Callable[[argparse.Namespace, Settings], int]) -> Any:
    """The command with Ray's and the system's failures told in one line (herd's own
    errors and ``CliError`` are told by ``launch.cli.main``)."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return command(args, settings)
        except (CliError, HerdError, KeyboardInterrupt):
            raise
        except Exception as exc:  # Ray's and the OS's: one line, not a stack trace
            text = str(exc).strip().splitlines()
            detail = text[0][:400] if text else type(exc).__name__
            raise CliError(f"herd {args.command} failed: {detail}", EXIT_ERROR) from None

    return run


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    from actors.cluster import connect
    from launch.cluster_node import publish_versions
    from launch.deploy import deploy

    token_path = settings.data_dir / TOKEN_FILE
    token = _head_token(token_path)
    ip = resolve(args.address_ip) if args.address_ip else lan_address()
    gcs = host_port(ip, args.ray_port)
    name = _node_name(args, settings)
    if needs_cluster_flag(sys.platform):
        _say(MAC_WINDOWS_WARNING, err=True)
    node = RayNodeProcess(settings.data_dir)
    if node.running_pid() is None and port_open(args.ray_port, ip, timeout=3.0):
        raise CliError(
            f"port {args.ray_port} on {ip} is taken (another Ray head?): stop it or pass --ray-port"
        )
    ray_args = head_args(ip, args.ray_port, name, args.temp_dir, args.ray_arg)
    pid, fresh = _start_ray(node, ray_args, node_env(token_path), "the Ray head")
    if fresh:
        _say(f"Ray head started at {gcs} (pid {pid}; token auth on; log {node.log_path})")
    _use_token_here(token_path)
    connect(gcs, timeout=settings.ray_connect_timeout)
    publish_versions(gcs, settings.port)
    result = deploy(settings, node_name=name, ray_node_id=_ray_node_id(name, 30.0), head=True)
    _say(f"node {name} deployed; router deployed; endpoint {result.get('endpoint')}")
    _say(f"clients on the LAN: http://{host_port(ip, settings.port)}/v1 (OpenAI), /api (Ollama)")
    if result.get("admin_token_created"):
        from launch.admin import announce

        _say(announce(settings, result["admin_token_created"]))
    _say("on every other box, run:")
    _say(f"  {join_command(gcs, token)}")
    if args.foreground:
        return _stay_up(settings, name, result["ray_node_id"], node, True, args.drain_timeout)
    _say(_background_note(node))
    return 0


def _background_note(node: RayNodeProcess) -> str:
    return (
        f"Ray keeps running in the background (pid {node.running_pid()}); `herd stop` "
        "removes herd from the fleet, `ray stop` ends Ray on this box"
    )


def _join_token(args: argparse.Namespace, token_path: Path) -> None:
    if args.token:
        save_token(token_path, check_token(args.token))
    elif args.token_file:
        save_token(token_path, read_token(Path(args.token_file).expanduser()))
    elif token_path.exists():
        read_token(token_path)
    else:
        raise CliError(
            "herd join needs the fleet's token: pass --token TOKEN (as `herd start` printed "
            f"it on the head) or --token-file FILE (the head's {TOKEN_FILE})",
            EXIT_USAGE,
        )


def check_against_head(gcs: str, here: Versions, say: Callable[[str], None]) -> dict[str, Any]:
    """Refuse (``CliError``) when this box cannot run beside the head; warn otherwise."""
    head, record = head_versions(gcs)
    check = compare_versions(head, here)
    for warning in check.warnings:
        say(f"warning: {warning}")
    if check.refusals:
        raise CliError(f"cannot join the fleet at {gcs}: " + "; ".join(check.refusals))
    return record


def _discovered_head(timeout: float = DISCOVERY_S) -> str:
    """``herd join`` without HEAD: the one head that answers over mDNS."""
    from herd.discovery import discover

    _say(f"looking for the fleet's head on this LAN (mDNS, {timeout:g} s) ...", err=True)
    heads = discover(timeout=timeout)
    if not heads:
        raise CliError(
            f"no herd head answered over mDNS within {timeout:g} s: is `herd start` running "
            "on the router box, on this LAN (mDNS does not cross routers, and some Wi-Fi "
            "networks block multicast)? Pass its address: herd join HEAD",
            EXIT_UNREACHABLE,
        )
    if len(heads) > 1:
        names = ", ".join(f"{h.name} at {h.gcs_address}" for h in heads)
        raise CliError(
            f"several herd heads answer on this LAN ({names}): name one, e.g. "
            f"herd join {heads[0].gcs_address}",
            EXIT_USAGE,
        )
    (head,) = heads
    _say(f"found the head {head.name} at {head.gcs_address} (herd {head.herd_version})")
    return head.gcs_address


def cmd_join(args: argparse.Namespace, settings: Settings) -> int:
    from actors.cluster import connect
    from actors.ray_auth import cluster_node_addresses
    from launch.deploy import deploy

    try:
        host, port = parse_head(args.head or _discovered_head())
    except ConfigError as exc:
        raise CliError(exc.message, EXIT_USAGE) from None
    gcs = host_port(host, port)
    token_path = settings.data_dir / TOKEN_FILE
    _join_token(args, token_path)
    head_ip = resolve(host)
    if not port_open(port, head_ip, timeout=3.0):
        raise CliError(
            f"no Ray head answers at {gcs}: is `herd start` running there, and is TCP port "
            f"{port} open in its firewall?",
            EXIT_UNREACHABLE,
        )
    _use_token_here(token_path)
    try:
        cluster_node_addresses(gcs, timeout=min(settings.ray_connect_timeout, 10.0))
    except FleetUnavailable as exc:
        denied = "token" in exc.message
        raise CliError(exc.message, EXIT_DENIED if denied else EXIT_UNREACHABLE) from None
    record = check_against_head(gcs, Versions.here(), lambda line: _say(line, err=True))
    name = _node_name(args, settings)
    node = RayNodeProcess(settings.data_dir)
    if node.running_pid() is None and name in names_in_cluster(gcs):
        raise CliError(
            f"a node named '{name}' is already in the fleet: give this box another name "
            "(--node-name or FLEET_NODE_NAME)"
        )
    ip = resolve(args.address_ip) if args.address_ip else lan_address(towards=head_ip)
    if needs_cluster_flag(sys.platform):
        _say(MAC_WINDOWS_WARNING, err=True)
    ray_args = worker_args(gcs, ip, name, args.temp_dir, args.ray_arg)
    pid, fresh = _start_ray(node, ray_args, node_env(token_path), "a Ray node")
    if fresh:
        _say(f"Ray node started at {ip}, joined {gcs} (pid {pid}; log {node.log_path})")
    connect(gcs, timeout=settings.ray_connect_timeout)
    ray_node_id = _ray_node_id(name, 30.0)
    deploy(settings, node_name=name, ray_node_id=ray_node_id, head=False)
    endpoint_port = record.get("endpoint_port") or settings.port
    _say(
        f"node {name} joined the fleet at {gcs}; the fleet answers at "
        f"http://{host_port(head_ip, int(endpoint_port))}"
    )
    if args.foreground:
        env = node_env(token_path)
        rejoin = (ray_args, env, (head_ip, port))
        return _stay_up(settings, name, ray_node_id, node, False, args.drain_timeout, rejoin)
    _say(_background_note(node))
    return 0


def _stay_up(
    settings: Settings,
    name: str,
    ray_node_id: str,
    node: RayNodeProcess,
    head: bool,
    drain_timeout: float,
    rejoin: tuple[list[str], dict[str, str], tuple[str, int]] | None = None,
) -> int:
    """The service form: supervise this box's actors until SIGTERM / Ctrl-C; then take
    this node out of the fleet (the head: herd out of every box) and end the Ray node.
    A worker's Ray node that ends by itself is started again (``rejoin``: its flags,
    environment and the head's GCS; ``launch/rejoin.py``); the head's ends the service
    (exit 1, for the service manager to restart it: the whole cluster went with it)."""
    import ray

    from launch.rejoin import RayKeeper
    from launch.supervise import Supervisor
    from launch.teardown import leave_fleet, stop_herd

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ray_ended = threading.Event()

    def watch_ray() -> None:
        if node.wait_ended(stop):
            ray_ended.set()
            stop.set()

    if rejoin is None:
        threading.Thread(target=watch_ray, daemon=True).start()
    else:
        RayKeeper(node, *rejoin, stop=stop, say=_say).thread()
    what = "the fleet (herd on every box)" if head else f"node {name}"
    _say(f"{what} serving; SIGTERM or Ctrl-C takes it out and ends this box's Ray node")
    supervisor = Supervisor(settings, name, ray_node_id, head=head, say=_say)
    supervisor.run(stop, interval=max(1.0, settings.heartbeat_interval))
    if ray_ended.is_set():
        _say(f"Ray on this box stopped; see {node.log_path}", err=True)
        return EXIT_ERROR
    lines: Iterable[str] = (
        stop_herd(settings, drain_timeout) if head else leave_fleet(name, drain_timeout)
    )
    try:
        for line in lines:
            _say(line)
    except Exception as exc:  # the cluster went away meanwhile: still end our Ray node
        _say(f"leaving the fleet failed ({type(exc).__name__}): {exc}", err=True)
    ray.shutdown()
    _say(node.stop())
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-name", help="this box's node id (default: FLEET_NODE_NAME or hostname)")
    p.add_argument(
        "--address-ip",
        help="the address other machines reach this one at (default: the LAN address)",
    )
    p.add_argument("--temp-dir", type=Path, help="Ray's session directory (default /tmp/ray)")
    p.add_argument(
        "--ray-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="one more `ray start` flag, e.g. --ray-arg=--num-cpus=4 (repeatable)",
    )
    p.add_argument(
        "--foreground",
        action="store_true",
        help="stay up as a service; on SIGTERM / Ctrl-C leave the fleet and end Ray here",
    )
    p.add_argument("--drain-timeout", type=float, default=60.0)


def add_cluster_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "start",
        help="on the router box: start the Ray head, deploy herd, print the join command",
    )
    p.add_argument("--ray-port", type=int, default=GCS_PORT, help="the GCS port (6379)")
    _common(p)
    p.set_defaults(func=_readable(cmd_start))

    p = sub.add_parser("join", help="on every other box: join the fleet whose head is HEAD")
    p.add_argument(
        "head",
        metavar="HEAD",
        nargs="?",
        help="the head's HOST[:PORT] (as `herd start` printed); absent: found over mDNS",
    )
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", help="the fleet's Ray token (as `herd start` printed it)")
    token.add_argument("--token-file", help="a file holding the token")
    _common(p)
    p.set_defaults(func=_readable(cmd_join))
