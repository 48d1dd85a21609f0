"""``herd sim-node``: run one emulated Ollama node until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from pydantic import ValidationError

from herd.errors import ConfigError
from herd.sim.profile import SimProfile
from herd.sim.profiles import builtin_profile_names, load_profile
from herd.sim.server import start_emulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herd sim-node",
        description="Run an emulated Ollama node (a real HTTP server speaking the Ollama API).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11434, help="port (default 11434; 0 = any)")
    parser.add_argument(
        "--profile",
        default="mac-mini",
        metavar="NAME_OR_PATH",
        help=f"built-in ({', '.join(builtin_profile_names())}) or a .json/.yaml file",
    )
    parser.add_argument("--name", help="node name (default: the profile's)")
    parser.add_argument("--num-parallel", type=int, help="OLLAMA_NUM_PARALLEL slots per model")
    parser.add_argument("--max-queue", type=int, help="OLLAMA_MAX_QUEUE")
    parser.add_argument("--tokens-per-s", type=float, help="generation speed (0 = no delays)")
    parser.add_argument("--instant", action="store_true", help="never sleep")
    parser.add_argument("--list-profiles", action="store_true", help="list built-ins and exit")
    return parser


def resolve_profile(args: argparse.Namespace) -> SimProfile:
    """The profile named by ``--profile`` with the command-line overrides applied."""
    profile = load_profile(args.profile)
    changes: dict[str, Any] = {}
    if args.name:
        changes["name"] = args.name
    if args.num_parallel is not None:
        changes["num_parallel"] = args.num_parallel
    if args.max_queue is not None:
        changes["max_queue"] = args.max_queue
    if args.tokens_per_s is not None:
        changes["tokens_per_s"] = args.tokens_per_s
    if args.instant:
        changes["instant"] = True
    if not changes:
        return profile
    try:
        return SimProfile.model_validate({**profile.model_dump(), **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid option: {where}: {first['msg']}") from None


async def serve(profile: SimProfile, host: str, port: int) -> None:
    emulator = await start_emulator(profile, host=host, port=port)
    print(f"herd sim-node {profile.name} listening on {emulator.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_profiles:
        for name in builtin_profile_names():
            p = load_profile(name)
            print(f"{name:12} {p.description}: {', '.join(m.name for m in p.models)}")
        return 0
    try:
        profile = resolve_profile(args)
    except ConfigError as exc:
        print(f"herd sim-node: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(profile, args.host, args.port))
    except OSError as exc:
        print(f"herd sim-node: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
