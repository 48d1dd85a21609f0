"""The terminal against the shared fleet: the real ``herd`` command (a subprocess) pulls
onto every emulator node with a live bar per node in a pseudo-terminal and plain lines
through a pipe; ``herd ps`` / ``ls`` / ``rm`` say what ``/api/ps`` and ``/api/tags`` say;
``herd logs`` reads a node's JSONL log through Ray. And the official ``ollama`` client
pointed at the endpoint (``OLLAMA_HOST``) pulls with progress, lists, shows what runs and
deletes.

The model pulled is ``cli-pull:1b`` (in every emulator's registry, held by no node at
the start); each test deletes it again.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from fleet_auth import ADMIN, ADMIN_TOKEN

from launch.cli_format import human_bytes, processor, short_id
from launch.cli_http import EXIT_DENIED, EXIT_ERROR, EXIT_NOT_FOUND
from launch.localray import wait_until

pytestmark = pytest.mark.integration

MODEL = "cli-pull:1b"
EMULATED = {"alpha", "beta", "gamma"}  # the Ollama (emulator) nodes; gemma, smol: llama.cpp
HERD = Path(sys.executable).with_name("herd")  # the installed console script
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SAFETY_S = 180.0  # a hung command fails the test instead of hanging it


def _env(fleet: Any, tmp: Path, token: str | None = ADMIN_TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "HERD_", "RAY_"))}
    env |= {"HERD_HOST": fleet.endpoint, "FLEET_DATA_DIR": str(tmp), "TERM": "xterm-256color"}
    env |= fleet.cluster.auth_env()
    if token:
        env["FLEET_ADMIN_TOKEN"] = token
    return env


def herd(fleet: Any, tmp: Path, *args: str, token: str | None = ADMIN_TOKEN) -> Any:
    assert HERD.exists(), f"{HERD} missing: install the project (make setup)"
    return subprocess.run(
        [str(HERD), *args],
        env=_env(fleet, tmp, token),
        capture_output=True,
        text=True,
        timeout=SAFETY_S,
        check=False,
    )


def herd_in_pty(fleet: Any, tmp: Path, *args: str) -> tuple[int, str]:
    """Run ``herd`` with a pseudo-terminal (120 columns) as its stdin, stdout and stderr;
    its exit code and everything it wrote."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [str(HERD), *args], stdin=slave, stdout=slave, stderr=slave, env=_env(fleet, tmp)
    )
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + SAFETY_S
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                pytest.fail(f"herd {' '.join(args)} hung; it wrote {bytes(out)!r}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
        code = proc.wait(timeout=SAFETY_S)
    finally:
        os.close(master)
    return code, out.decode("utf-8", "replace")


def tags(endpoint: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{endpoint}/api/tags", timeout=10).json()
    return result


def holders(endpoint: str, model: str = MODEL) -> set[str]:
    for entry in tags(endpoint)["models"]:
        if entry["name"] == model:
            return set(entry.get("nodes") or [])
    return set()


def forget(endpoint: str) -> None:
    """Delete the model everywhere (the next test starts without it)."""
    if holders(endpoint):
        httpx.request("DELETE", f"{endpoint}/api/delete", json={"model": MODEL}, headers=ADMIN)
    wait_until(lambda: not holders(endpoint), 15, f"{MODEL} deleted everywhere", 0.1)


@pytest.fixture
def clean(fleet: Any) -> Iterator[str]:
    forget(fleet.endpoint)
    yield fleet.endpoint
    forget(fleet.endpoint)


def columns(text: str) -> list[dict[str, str]]:
    """A table printed by herd ps / ls, read by its header's column starts."""
    lines = text.rstrip("\n").splitlines()
    header = lines[0]
    names = header.split()
    starts = [header.index(n) for n in names]
    rows = []
    for line in lines[1:]:
        cells = {}
        for i, name in enumerate(names):
            end = starts[i + 1] if i + 1 < len(names) else None
            cells[name] = line[starts[i] : end].strip()
        rows.append(cells)
    return rows


def test_pull_all_draws_a_bar_per_node_in_a_terminal(
    fleet: Any, clean: str, tmp_path: Path
) -> None:
    code, out = herd_in_pty(fleet, tmp_path, "pull", MODEL, "--all")
    plain = ANSI.sub("", out)
    assert code == 0, out
    assert "\x1b[" in out  # rich drew (cursor moves, colours): a terminal, not a log
    assert "━" in plain  # the bars
    assert "skipping gemma (llamacpp: cannot pull), smol (llamacpp: cannot pull)" in plain
    for node in EMULATED:
        assert re.search(rf"{node}\s+success\s+━+\s+100%", plain), plain
    done = re.search(r"pulled 'cli-pull:1b' on ([a-z, ]+)", plain)
    assert done is not None and set(done.group(1).strip().split(", ")) == EMULATED
    wait_until(lambda: holders(clean) == EMULATED, 15, f"{MODEL} on {EMULATED}", 0.1)


def test_pull_all_logs_plain_lines_through_a_pipe(fleet: Any, clean: str, tmp_path: Path) -> None:
    result = herd(fleet, tmp_path, "pull", MODEL, "--all")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    for node in EMULATED:
        mine = [line.removeprefix(f"{node}: ") for line in lines if line.startswith(f"{node}: ")]
        assert mine[0] == "pulling manifest", lines
        assert mine[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
        layers = [m for m in mine if m.startswith("pulling ") and "100% of" in m]
        assert len(layers) == 3 and any(m.endswith("100% of 62 MB") for m in layers), mine
    assert lines[-1].startswith("pulled 'cli-pull:1b' on ")
    wait_until(lambda: holders(clean) == EMULATED, 15, f"{MODEL} on {EMULATED}", 0.1)


def test_ls_ps_and_rm_say_what_the_api_says(fleet: Any, clean: str, tmp_path: Path) -> None:
    one = herd(fleet, tmp_path, "pull", MODEL, "--node", "beta")
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines()[-1] == "pulled 'cli-pull:1b' on beta"
    wait_until(lambda: holders(clean) == {"beta"}, 15, f"{MODEL} on beta", 0.1)

    listed = herd(fleet, tmp_path, "ls")
    assert listed.returncode == 0, listed.stderr
    rows = {r["NAME"]: r for r in columns(listed.stdout)}
    api = tags(clean)["models"]
    assert set(rows) == {m["name"] for m in api}
    for m in api:
        row = rows[m["name"]]
        assert row["ID"] == short_id(m["digest"]) and row["SIZE"] == human_bytes(m["size"])
        assert row["NODES"] == ",".join(m["nodes"])
        assert row["MODIFIED"].endswith(("ago", "from now")) or row["MODIFIED"] == "Never"
    assert rows[MODEL]["NODES"] == "beta" and rows[MODEL]["SIZE"] == "62 MB"

    running = herd(fleet, tmp_path, "ps")
    assert running.returncode == 0, running.stderr
    ps_api = httpx.get(f"{clean}/api/ps", timeout=10).json()["models"]
    got = {(r["NAME"], r["NODE"]): r for r in columns(running.stdout)}
    assert set(got) == {(m["name"], m["node"]) for m in ps_api}
    assert ("tiny:1b", "alpha") in got  # the fleet's hot model
    for m in ps_api:
        row = got[(m["name"], m["node"])]
        assert row["ID"] == short_id(m["digest"]) and row["SIZE"] == human_bytes(m["size"])
        assert row["PROCESSOR"] == processor(m["size"], m["size_vram"])
        assert row["CONTEXT"] == str(m["context_length"] or "")
        assert row["UNTIL"].endswith("from now") or row["UNTIL"] in ("Forever", "Stopping...")

    removed = herd(fleet, tmp_path, "rm", MODEL, "--node", "beta")
    assert removed.returncode == 0 and removed.stdout.strip() == f"deleted '{MODEL}' from beta"
    wait_until(lambda: not holders(clean), 15, f"{MODEL} gone", 0.1)
    again = herd(fleet, tmp_path, "rm", MODEL)
    assert again.returncode == EXIT_NOT_FOUND
    assert again.stderr.strip() == f"herd: model '{MODEL}' not found"


def test_rm_from_every_holder(fleet: Any, clean: str, tmp_path: Path) -> None:
    for node in ("alpha", "gamma"):
        assert herd(fleet, tmp_path, "pull", MODEL, "--node", node).returncode == 0
    wait_until(lambda: holders(clean) == {"alpha", "gamma"}, 15, f"{MODEL} on two nodes", 0.1)
    removed = herd(fleet, tmp_path, "rm", MODEL)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() in (
        f"deleted '{MODEL}' from alpha, gamma",
        f"deleted '{MODEL}' from gamma, alpha",
    )


def test_errors_are_one_line_with_exit_codes(fleet: Any, tmp_path: Path) -> None:
    unknown = herd(fleet, tmp_path, "pull", MODEL, "--node", "omega")
    assert unknown.returncode == EXIT_NOT_FOUND
    assert unknown.stderr.startswith("herd: unknown node 'omega' (nodes: alpha, beta, gamma")
    missing = herd(fleet, tmp_path, "pull", "nowhere:1b", "--node", "alpha")
    assert missing.returncode == EXIT_ERROR
    assert "pull model manifest: file does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr + missing.stdout
    refused = herd(fleet, tmp_path, "pull", MODEL, "--node", "alpha", token=None)
    assert refused.returncode == EXIT_DENIED, refused.stderr
    assert "--token" in refused.stderr and "Traceback" not in refused.stderr
    assert MODEL not in {m["name"] for m in tags(fleet.endpoint)["models"]}
    rm_refused = herd(fleet, tmp_path, "rm", "tiny:1b", token=None)
    assert rm_refused.returncode == EXIT_DENIED
    assert "alpha" in holders(fleet.endpoint, "tiny:1b")
    assert herd(fleet, tmp_path, "ls", token=None).returncode == 0  # reads are open here


def test_the_ollama_client_pulls_lists_and_deletes(fleet: Any, clean: str) -> None:
    """What tools pointed at OLLAMA_HOST=http://ROUTER:11435 see."""
    client = ollama.Client(host=clean, headers=ADMIN)
    progress = list(client.pull(MODEL, stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    layers = [p for p in progress if p.digest]
    # Each layer's first line has its total and no "completed" yet, as Ollama's own.
    assert layers and all(p.total and (p.completed or 0) <= p.total for p in layers)
    assert any(p.completed == p.total == 60 * 1024 * 1024 for p in layers)
    wait_until(lambda: len(holders(clean)) == 1, 15, f"{MODEL} on one node", 0.1)

    listed = {m.model: m for m in client.list().models}
    assert MODEL in listed and listed[MODEL].size == 60 * 1024 * 1024
    assert set(listed) == {m["name"] for m in tags(clean)["models"]}
    running = client.ps().models
    api = httpx.get(f"{clean}/api/ps", timeout=10).json()["models"]
    assert sorted(m.model or "" for m in running) == sorted(m["model"] for m in api)
    assert all(m.expires_at is not None and m.size for m in running)

    assert client.delete(MODEL).status == "success"
    wait_until(lambda: not holders(clean), 15, f"{MODEL} deleted", 0.1)
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=clean).pull(MODEL)  # no token: pulls are an admin's
    assert err.value.status_code == 401


def _log_marker(fleet: Any, text: str) -> str:
    """Append a line to the devices' log as another process there would; the line."""
    line = json.dumps(
        {"ts": datetime.now(UTC).isoformat(), "level": "INFO", "logger": "test", "msg": text}
    )
    path = fleet.settings.log_dir / "herd.jsonl"
    with path.open("a") as fh:
        fh.write(line + "\n")
    return line


def test_logs_tail_and_follow_through_ray(fleet: Any, tmp_path: Path) -> None:
    marker = _log_marker(fleet, "cli-logs-tail-marker")
    address = ["--address", fleet.cluster.address]
    tail = herd(fleet, tmp_path, "logs", "alpha", "-n", "200", "--json", *address)
    assert tail.returncode == 0, tail.stderr
    assert marker in tail.stdout.splitlines()
    # Every node of this fleet writes the one file of this machine's data dir: read once.
    every = herd(fleet, tmp_path, "logs", "-n", "200", *address)
    assert every.returncode == 0, every.stderr
    assert [line for line in every.stdout.splitlines() if "cli-logs-tail-marker" in line] == [
        f"{json.loads(marker)['ts'].replace('T', ' ')[:23]} INFO    test: cli-logs-tail-marker"
    ]
    unknown = herd(fleet, tmp_path, "logs", "omega", *address)
    assert unknown.returncode == EXIT_NOT_FOUND and "unknown node 'omega'" in unknown.stderr

    follow = subprocess.Popen(
        [str(HERD), "logs", "beta", "-f", "-n", "1", "--json", *address],
        env=_env(fleet, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(follow, lines), daemon=True).start()
    try:
        assert _next(lines).strip()  # the tail: it is following now
        later = _log_marker(fleet, "cli-logs-follow-marker")
        while _next(lines).rstrip("\n") != later:
            pass
    finally:
        follow.send_signal(signal.SIGINT)
        code = follow.wait(timeout=30)
    assert code == 130, follow.stderr.read() if follow.stderr else ""


def _pump(proc: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        into.put(line)
    into.put("")  # the end


def _next(lines: queue.Queue[str]) -> str:
    try:
        line = lines.get(timeout=SAFETY_S)
    except queue.Empty:
        pytest.fail("herd logs -f printed nothing")
    if not line:
        pytest.fail("herd logs -f ended")
    return line
