"""``herd logs [NODE] [-f]``: a node's JSONL log (``<data dir>/logs/herd.jsonl`` on its
device, :mod:`herd.logs`), read through Ray by its NodeActor (``log_tail``, then
``log_follow``, a bounded generator asked again from its last position), so it works
from any machine of the cluster.

Without NODE: every node's. Nodes whose actors write the same file (one device, one data
dir) are read once, labelled with all their names. Lines print as
``time level logger: message key=value ...`` (``--json``: as stored); from more than one
file each line starts with ``[node]``, the tails merged by time.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from herd.settings import Settings
from launch.cli_http import EXIT_NOT_FOUND, EXIT_OK, CliError

FOLLOW_SPAN_S = 30.0  # each log_follow call's length; the next one picks up where it ended
_SKIP = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})


def render(raw: str, as_json: bool = False) -> str:
    """One log line for the terminal."""
    if as_json:
        return raw
    try:
        entry = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(entry, dict):
        return raw
    ts = str(entry.get("ts", ""))
    head = f"{ts.replace('T', ' ')[:23]} {entry.get('level', '')!s:<7} "
    text = f"{head}{entry.get('logger', '')}: {entry.get('msg', '')}"
    extra = " ".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) or ' ' in v else v}"
        for k, v in entry.items()
        if k not in _SKIP
    )
    if extra:
        text += f" {extra}"
    for key in ("exc", "stack"):
        if entry.get(key):
            text += "\n" + str(entry[key])
    return text


def _ts(raw: str) -> str:
    try:
        entry = json.loads(raw)
    except ValueError:
        return ""
    return str(entry.get("ts", "")) if isinstance(entry, dict) else ""


@dataclass
class Source:
    """One log file and the nodes whose actors write it."""

    label: str
    handle: Any
    tail: dict[str, Any]


def group_sources(tails: list[tuple[str, Any, dict[str, Any]]]) -> list[Source]:
    """One Source per distinct file (by its ``source`` identity), in the order seen."""
    found: dict[str, tuple[list[str], Any, dict[str, Any]]] = {}
    for node, handle, tail in tails:
        key = str(tail.get("source") or node)
        if key in found:
            found[key][0].append(node)
        else:
            found[key] = ([node], handle, tail)
    return [Source(",".join(names), h, t) for names, h, t in found.values()]


def merged(sources: list[Source], as_json: bool) -> Iterator[str]:
    """The sources' tail lines, oldest first, prefixed when there is more than one."""
    prefix = len(sources) > 1
    rows = [(_ts(line), i, line) for i, s in enumerate(sources) for line in s.tail["lines"]]
    rows.sort(key=lambda row: (row[0], row[1]))
    for _, i, line in rows:
        text = render(line, as_json)
        yield f"[{sources[i].label}] {text}" if prefix else text


def node_ids() -> list[str]:
    import ray

    from actors import NAMESPACE

    found = ray.util.list_named_actors(all_namespaces=True)
    names = [
        a["name"].removeprefix("herd-node:")
        for a in found
        if a.get("namespace") == NAMESPACE and str(a.get("name", "")).startswith("herd-node:")
    ]
    return sorted(names)


def _follow(source: Source, out: queue.Queue[tuple[str, str]], stop: threading.Event) -> None:
    import ray

    position = source.tail["position"]
    while not stop.is_set():
        try:
            for ref in source.handle.log_follow.remote(position, FOLLOW_SPAN_S):
                batch = ray.get(ref)
                position = batch["position"]
                for line in batch["lines"]:
                    out.put((source.label, line))
                if stop.is_set():
                    return
        except Exception as exc:  # the node went away: say so once, then stop following it
            out.put((source.label, f"herd logs: stopped following {source.label}: {exc}"))
            return


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    import ray

    from actors import NAMESPACE, node_actor_name
    from actors.cluster import connect
    from actors.naming import get_named

    connect(args.address or settings.ray_address, timeout=settings.ray_connect_timeout)
    known = node_ids()
    if args.node and args.node not in known:
        shown = ", ".join(known) or "none"
        raise CliError(f"unknown node '{args.node}' (nodes: {shown})", EXIT_NOT_FOUND)
    chosen = [args.node] if args.node else known
    if not chosen:
        raise CliError("no herd nodes in this cluster: deploy one with `herd deploy`")
    handles = [(n, get_named(node_actor_name(n), NAMESPACE)) for n in chosen]
    live = [(n, h) for n, h in handles if h is not None]
    timeout = settings.actor_call_timeout
    answers = ray.get([h.log_tail.remote(args.lines) for _, h in live], timeout=timeout)
    sources = group_sources([(n, h, t) for (n, h), t in zip(live, answers, strict=True)])
    for text in merged(sources, args.json):
        print(text, flush=True)
    if args.follow:
        _follow_all(sources, args.json)
    return EXIT_OK


def _follow_all(sources: list[Source], as_json: bool) -> None:
    lines: queue.Queue[tuple[str, str]] = queue.Queue()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_follow, args=(source, lines, stop), daemon=True)
        for source in sources
    ]
    for thread in threads:
        thread.start()
    prefix = len(sources) > 1
    try:
        while any(t.is_alive() for t in threads) or not lines.empty():
            try:
                label, raw = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            text = render(raw, as_json)
            print(f"[{label}] {text}" if prefix else text, flush=True)
    finally:
        stop.set()


def add_logs_parser(sub: Any) -> None:
    p = sub.add_parser("logs", help="show a node's JSONL log (every node's without NODE)")
    p.add_argument("node", nargs="?", help="node id (default: every node)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, default=100, help="lines of the tail (max 2000)")
    p.add_argument("--json", action="store_true", help="print the JSON lines as stored")
    p.add_argument("--address", help="Ray address (default: FLEET_RAY_ADDRESS or auto)")
    p.set_defaults(func=cmd_logs)
