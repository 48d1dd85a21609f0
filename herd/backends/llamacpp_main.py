"""Run llama.cpp's own HTTP server (from ``xllamacpp``) in this process until told to stop.

``python -m herd.backends.llamacpp_main --model PATH --port P ...`` is what
:class:`herd.backends.llamacpp_server.LlamaCppSupervisor` starts as a subprocess, so a
crash inside llama.cpp never takes the node down. The process exits on SIGTERM/SIGINT,
and also when its parent goes away (no orphaned servers holding 400 MB each).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m herd.backends.llamacpp_main")
    parser.add_argument("--model", required=True, help="path of the GGUF file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx", type=int, default=4096, help="context per request slot")
    parser.add_argument("--parallel", type=int, default=1, help="request slots")
    parser.add_argument("--alias", required=True, help="model name the API reports")
    parser.add_argument("--threads", type=int, default=-1, help="-1: llama.cpp decides")
    parser.add_argument(
        "--chat-template",
        default="",
        help="a llama.cpp built-in template name, or Jinja template text (empty: the GGUF's)",
    )
    parser.add_argument("--embeddings", action="store_true", help="enable /v1/embeddings")
    # The server's default sampling (unset: llama.cpp's); a request's own values win.
    for flag, kind in _SAMPLING_FLAGS.items():
        parser.add_argument(f"--{flag}", type=kind, default=None)
    return parser.parse_args(argv)


# Ollama's option names -> llama.cpp's sampling parameters (and their types).
_SAMPLING = {
    "temperature": "temp",
    "top_p": "top_p",
    "top_k": "top_k",
    "repeat_penalty": "penalty_repeat",
    "repeat_last_n": "penalty_last_n",
}
_SAMPLING_FLAGS: dict[str, type] = {
    "temperature": float,
    "top-p": float,
    "top-k": int,
    "repeat-penalty": float,
    "repeat-last-n": int,
}


def build_params(args: argparse.Namespace) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    # llama.cpp splits n_ctx across the slots; Ollama's num_ctx is per request.
    params.n_ctx = args.ctx * args.parallel
    params.model_alias = {args.alias}
    params.cont_batching = True
    params.embedding = bool(args.embeddings)
    if args.threads > 0:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    for option, field in _SAMPLING.items():
        value = getattr(args, option, None)
        if value is not None:
            setattr(params.sampling, field, value)
    template = args.chat_template
    if template:
        params.chat_template = template
        # A bare name ("gemma", "chatml") selects llama.cpp's built-in formatter.
        params.use_jinja = "{" in template
    return params


def _watch_parent(stop: threading.Event, parent: int) -> None:
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.path.isfile(args.model):
        print(f"model file not found: {args.model}", file=sys.stderr, flush=True)
        return 2
    import xllamacpp

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=_watch_parent, args=(stop, os.getppid()), daemon=True).start()
    try:
        server = xllamacpp.Server(build_params(args))
    except RuntimeError as exc:  # llama.cpp has already logged the cause on stderr
        print(f"herd-llamacpp failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"herd-llamacpp listening on {server.listening_address}", flush=True)
    # Short waits: a signal delivered to one of llama.cpp's threads would not wake a
    # main thread blocked on the event, and the Python handler runs only on the main one.
    while not stop.wait(0.1):
        pass
    print("herd-llamacpp stopping", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # The server's C++ threads need no orderly teardown; skip slow destructors.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
