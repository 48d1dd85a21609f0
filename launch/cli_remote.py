"""``herd add-node`` / ``herd remove-node``: devices that join without Ray
(``launch/remote_nodes.py``). Both change the fleet, so they run where the cluster's
Ray token is (a driver of the cluster), like ``herd deploy``."""

from __future__ import annotations

import argparse
from typing import Any

from herd.settings import Settings


def cmd_add_node(args: argparse.Namespace, settings: Settings) -> int:
    from actors.cluster import connect
    from launch.remote_nodes import add_remote, check_remote

    node = check_remote(args.name, args.ollama, args.memory, args.parallel)
    connect(args.address or settings.ray_address, timeout=settings.ray_connect_timeout)
    version = add_remote(settings, node)
    memory = f"{args.memory:g} GB" if args.memory else "unknown memory (give --memory GB)"
    print(
        f"node {node.name} added: Ollama {version} at {node.ollama}, {memory}, "
        f"{node.num_parallel} parallel; remembered in {settings.data_dir}/remote-nodes.json"
    )
    return 0


def cmd_remove_node(args: argparse.Namespace, settings: Settings) -> int:
    from actors.cluster import connect
    from launch.remote_nodes import remove_remote

    connect(args.address or settings.ray_address, timeout=settings.ray_connect_timeout)
    for line in remove_remote(settings, args.name, args.drain_timeout):
        print(line)
    return 0


def add_remote_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "add-node", help="add a device that runs Ollama but not Ray (its actor runs here)"
    )
    p.add_argument("name", help="node id, e.g. gaming-pc")
    p.add_argument("--ollama", required=True, help="its Ollama, e.g. http://192.168.1.20:11434")
    p.add_argument("--memory", type=float, default=None, help="GB herd may fill with models")
    p.add_argument("--parallel", type=int, default=1, help="its OLLAMA_NUM_PARALLEL")
    p.add_argument("--address", help="Ray address (default: FLEET_RAY_ADDRESS or auto)")
    p.set_defaults(func=cmd_add_node)

    p = sub.add_parser("remove-node", help="drain a remote node and remove it from the fleet")
    p.add_argument("name")
    p.add_argument("--address")
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_remove_node)
