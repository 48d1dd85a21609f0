"""``ray start`` for a Ray node of a one-machine fleet, kept on 127.0.0.1.

``ray start --node-ip-address=127.0.0.1`` does not keep a node on loopback: Ray swaps a
loopback address for the machine's LAN address (``resolve_ip_for_localhost``), and its
agents, metrics exporters, the Ray Client server and herd's node data planes then
listen there. ``python -m launch.ray_node start ...`` is ``ray start ...`` with that one
swap turned off, so every Ray process that binds the node's address binds 127.0.0.1
(Ray's gRPC servers listen on every interface whatever the address; token auth guards
those). For nodes that all run on this machine (``launch.localray``); a real fleet
runs plain ``ray start``.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """Run the ``ray`` command line with ``argv`` (click exits with its status)."""
    from ray.scripts.scripts import cli

    from actors.ray_auth import keep_loopback_for_good

    keep_loopback_for_good()
    cli(args=argv, prog_name="ray")


if __name__ == "__main__":
    main(sys.argv[1:])
