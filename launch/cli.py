"""The ``herd`` command: deploy, status, demo, stop, drain, sim-node; start and join
(``launch/cluster_cmds.py``); the model commands
in Ollama's idiom (pull, ps, ls, rm: ``launch/cli_models.py``) and logs
(``launch/cli_logs.py``). Exit codes: ``launch/cli_http.py`` (0 ok, 1 error, 2 usage,
3 not found, 4 unreachable, 5 refused credentials).

The composition root: it imports ``actors`` / ``serve_app`` (and so ``ray``) lazily,
inside the commands that need them, so ``import herd`` never loads Ray.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from herd.errors import HerdError
from herd.settings import Settings, load_settings
from launch.cli_http import CliError, code_for_error


def _fail(message: str) -> int:
    print(f"herd: {message}", file=sys.stderr)
    return 1


def cmd_deploy(args: argparse.Namespace, settings: Settings) -> int:
    from actors.cluster import connect
    from launch.deploy import deploy

    connect(args.address or settings.ray_address, timeout=settings.ray_connect_timeout)
    head = True if args.head else (False if args.no_head else None)
    result = deploy(settings, node_name=args.node_name, ray_node_id=args.ray_node_id, head=head)
    parts = [f"node {result['node']} deployed on ray node {result['ray_node_id'][:12]}"]
    if result.get("router"):
        parts.append("router deployed")
    if result.get("endpoint"):
        parts.append(f"endpoint {result['endpoint']}")
    print("; ".join(parts), flush=True)
    if result.get("admin_token_created"):
        from launch.admin import announce

        print(announce(settings, result["admin_token_created"]), flush=True)
    if args.foreground:
        from launch.supervise import Supervisor

        supervisor = Supervisor(
            settings,
            result["node"],
            result["ray_node_id"],
            head=bool(result["head"]),
            say=lambda line: print(line, flush=True),
        )
        return _serve_until_signal(supervisor, args.drain_timeout)
    return 0


def _serve_until_signal(supervisor: Any, drain_timeout: float) -> int:
    """Stay up (a systemd / launchd service) until SIGTERM or SIGINT, bringing back this
    box's actors when they are gone (``launch/supervise.py``); then take this node out
    gracefully: no new requests, pending ones re-routed, in-flight ones finish."""
    import signal
    import threading

    from launch.teardown import leave_fleet

    node_id = supervisor.node_id
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"node {node_id} serving; SIGTERM or Ctrl-C drains it and leaves the fleet", flush=True)
    supervisor.run(stop, interval=max(1.0, supervisor.settings.heartbeat_interval))
    for line in leave_fleet(node_id, drain_timeout):
        print(line, flush=True)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from actors.client import connect_client
    from launch.status_table import render_status

    client = connect_client(args.address or settings.ray_address, settings=settings)
    status = client.fleet_status()
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    from actors.cluster import connect
    from launch.teardown import stop_herd

    connect(args.address or settings.ray_address, timeout=settings.ray_connect_timeout)
    for line in stop_herd(settings, drain_timeout=args.drain_timeout):
        print(line)
    return 0


def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    from actors.cluster import connect
    from launch.teardown import drain_node

    connect(args.address or settings.ray_address, timeout=settings.ray_connect_timeout)
    print(drain_node(args.node, timeout=args.timeout))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from launch.demo import run_demo
    from launch.extras import require

    require("head", "herd demo")
    if not args.no_llamacpp:
        require("embedded", "herd demo's llama.cpp nodes (or herd demo --no-llamacpp)")
    return run_demo(
        settings, port=args.port, keep_running=not args.once, llamacpp=not args.no_llamacpp
    )


def cmd_admin_token(args: argparse.Namespace, settings: Settings) -> int:
    from herd.guard.credentials import admin_token_path, read_admin_token

    token = read_admin_token(settings)
    if token is None:
        return _fail(
            f"no admin token yet: the first head deploy writes one to "
            f"{admin_token_path(settings.data_dir)} (or set FLEET_ADMIN_TOKEN)"
        )
    print(token)
    return 0


def cmd_sim_node(argv: Sequence[str]) -> int:
    from herd.sim.cli import main as sim_main

    return sim_main(list(argv))


def build_parser() -> argparse.ArgumentParser:
    from herd import __version__
    from launch.cli_logs import add_logs_parser
    from launch.cli_models import add_model_parsers
    from launch.cli_remote import add_remote_parsers
    from launch.cluster_cmds import add_cluster_parsers

    parser = argparse.ArgumentParser(prog="herd", description="One AI endpoint for a fleet.")
    parser.add_argument("--version", action="version", version=f"herd version {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_model_parsers(sub)
    add_logs_parser(sub)
    add_remote_parsers(sub)
    add_cluster_parsers(sub)

    p = sub.add_parser("deploy", help="deploy this box's NodeActor (and on the head the router)")
    p.add_argument("--address", help="Ray address (default: FLEET_RAY_ADDRESS or auto)")
    p.add_argument("--node-name", help="node id (default: FLEET_NODE_NAME or the hostname)")
    p.add_argument("--ray-node-id", help="pin to this Ray node (default: this machine's)")
    p.add_argument("--head", action="store_true", help="also deploy router + Serve here")
    p.add_argument("--no-head", action="store_true", help="only the NodeActor")
    p.add_argument(
        "--foreground",
        action="store_true",
        help="stay up; on SIGTERM / Ctrl-C drain this node and leave the fleet (services)",
    )
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("status", help="show the fleet")
    p.add_argument("--address")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("stop", help="drain every node, then remove herd from the cluster")
    p.add_argument("--address")
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("drain", help="stop routing to a node once its in-flight work is done")
    p.add_argument("node")
    p.add_argument("--address")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("demo", help="a local one-box fleet that really answers requests")
    p.add_argument("--port", type=int, default=None, help="endpoint port (default FLEET_PORT)")
    p.add_argument("--once", action="store_true", help="exit after the demo requests")
    p.add_argument("--no-llamacpp", action="store_true", help="emulated nodes only")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("admin-token", help="print the fleet's admin token (this box's data dir)")
    p.set_defaults(func=cmd_admin_token)
    sub.add_parser("sim-node", help="run the Ollama emulator (see herd sim-node --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim-node"]:
        return cmd_sim_node(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        func: Any = args.func
        code: int = func(args, settings)
        return code
    except CliError as exc:
        print(f"herd: {exc.message}", file=sys.stderr)
        return exc.code
    except HerdError as exc:
        _fail(exc.message)
        return code_for_error(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
