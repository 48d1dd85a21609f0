"""``herd pull``, ``herd ps``, ``herd ls``, ``herd rm``: Ollama's model commands for the
whole fleet, over the endpoint's HTTP API (``/api/pull``, ``/api/ps``, ``/api/tags``,
``/api/delete``, ``/fleet/status`` for the node list). Address and token:
:mod:`launch.cli_http`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

from herd.settings import Settings
from launch.cli_format import LS_HEADER, PS_HEADER, ls_rows, ps_rows, table
from launch.cli_http import (
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    Endpoint,
    check_node,
    code_for_status,
    endpoint_url,
    token_for,
)
from launch.cli_progress import NodePull, make_view, run_pulls

STALL_MARGIN_S = 30.0  # beyond FLEET_NODE_PULL_STALL_TIMEOUT: the endpoint ends a stalled pull


def _endpoint(args: argparse.Namespace, settings: Settings) -> Endpoint:
    return Endpoint(endpoint_url(args.host, settings), token_for(args.token, settings))


def can_pull(node: dict[str, Any]) -> bool:
    """The nodes ``--all`` pulls onto: online Ollama nodes that are not draining (the
    endpoint's own rule for where a pull may go)."""
    return (
        node.get("status") == "online"
        and bool(node.get("backend_ok"))
        and not node.get("draining")
        and node.get("backend") == "ollama"
    )


def pull_targets(
    nodes: list[dict[str, Any]], named: str | None, everywhere: bool
) -> tuple[list[str | None], list[str]]:
    """(the nodes to pull on, None meaning the endpoint's choice; the nodes skipped, each
    with why) for ``--node`` / ``--all`` / neither."""
    if named:
        check_node(nodes, named)
        return [named], []
    if not everywhere:
        return [None], []
    chosen: list[str | None] = [str(n["node_id"]) for n in nodes if can_pull(n)]
    skipped = [f"{n['node_id']} ({_why_not(n)})" for n in nodes if not can_pull(n)]
    if not chosen:
        raise CliError("no online Ollama node can pull models right now")
    return chosen, skipped


def _why_not(node: dict[str, Any]) -> str:
    if node.get("status") != "online" or not node.get("backend_ok"):
        return str(node.get("status") or "unknown") + ("" if node.get("backend_ok") else ", down")
    if node.get("draining"):
        return "draining"
    return f"{node.get('backend')}: cannot pull"


def cmd_pull(args: argparse.Namespace, settings: Settings) -> int:
    with _endpoint(args, settings) as ep:
        nodes = ep.nodes() if (args.node or args.all) else []
        targets, skipped = pull_targets(nodes, args.node, args.all)
        url, token = ep.url, ep.token
    if skipped:
        print(f"skipping {', '.join(skipped)}", flush=True)
    stall = settings.node.pull_stall_timeout + STALL_MARGIN_S
    pulls = asyncio.run(run_pulls(url, token, args.model, targets, make_view(), stall))
    return _pull_summary(args.model, pulls)


def _pull_summary(model: str, pulls: list[NodePull]) -> int:
    ok = [p.node for p in pulls if p.done and p.error is None]
    failed = [p for p in pulls if not (p.done and p.error is None)]
    if ok:
        print(f"pulled '{model}' on {', '.join(ok)}", flush=True)
    for p in failed:
        print(f"herd: pulling '{model}' on {p.node} failed: {p.error}", file=sys.stderr)
    if not failed:
        return EXIT_OK
    codes = {code_for_status(p.http_status) if p.http_status else EXIT_ERROR for p in failed}
    return codes.pop() if len(codes) == 1 and not ok else EXIT_ERROR


def cmd_ps(args: argparse.Namespace, settings: Settings) -> int:
    with _endpoint(args, settings) as ep:
        body = ep.get_json("/api/ps")
    print(table(PS_HEADER, ps_rows(body, datetime.now(UTC))))
    return EXIT_OK


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    with _endpoint(args, settings) as ep:
        body = ep.get_json("/api/tags")
    print(table(LS_HEADER, ls_rows(body, datetime.now(UTC))))
    return EXIT_OK


def cmd_rm(args: argparse.Namespace, settings: Settings) -> int:
    with _endpoint(args, settings) as ep:
        if args.node:
            check_node(ep.nodes(), args.node)
        code = EXIT_OK
        for model in args.models:
            body: dict[str, Any] = {"model": model}
            if args.node:
                body["node"] = args.node
            try:
                response = ep.request("DELETE", "/api/delete", body)
            except CliError as exc:
                print(f"herd: {exc.message}", file=sys.stderr)
                code = code or exc.code
                continue
            where = response.headers.get("x-herd-node") or args.node or "?"
            print(f"deleted '{model}' from {where.replace(',', ', ')}", flush=True)
    return code


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="the endpoint (default: HERD_HOST or 127.0.0.1:FLEET_PORT)")
    p.add_argument("--token", help="bearer token (default: HERD_TOKEN or this box's admin token)")


def add_model_parsers(sub: Any) -> None:
    p = sub.add_parser("pull", help="pull a model onto a node, or onto every node (--all)")
    p.add_argument("model")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--node", help="the node to pull onto (default: the endpoint picks)")
    where.add_argument("--all", action="store_true", help="every online Ollama node")
    _connection(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("ps", help="list the models loaded on the nodes")
    _connection(p)
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("ls", aliases=["list"], help="list the models the nodes hold")
    _connection(p)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("rm", help="delete models from every node holding them (or --node)")
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--node", help="delete from this node only")
    _connection(p)
    p.set_defaults(func=cmd_rm)
