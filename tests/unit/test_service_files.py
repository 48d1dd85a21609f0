"""The service files in deploy/: systemd verifies the units; the launchd plists parse
and run what the README says."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
VENV_BIN = Path(sys.executable).parent


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by .ci/run (Debian package systemd)"
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/herd/venv/bin", str(VENV_BIN))
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))
    assert [Path(u).name for u in units] == ["herd-ray@.service", "herd@.service"]
    done = subprocess.run(
        [analyze, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_node_unit_runs_the_supervised_foreground_deploy() -> None:
    text = (DEPLOY / "systemd" / "herd@.service").read_text()
    assert "ExecStart=/opt/herd/venv/bin/herd deploy --foreground" in text
    assert "KillSignal=SIGTERM" in text and "Restart=always" in text
    ray_unit = (DEPLOY / "systemd" / "herd-ray@.service").read_text()
    assert "RAY_AUTH_MODE=token" in ray_unit and "ExecStopPost=" in ray_unit


@pytest.mark.parametrize(
    ("name", "program"),
    [("dev.herd.ray.plist", ["ray", "start"]), ("dev.herd.node.plist", ["herd", "deploy"])],
)
def test_launchd_plists_parse(name: str, program: list[str]) -> None:
    with (DEPLOY / "launchd" / name).open("rb") as f:
        plist = plistlib.load(f)
    args = plist["ProgramArguments"]
    assert Path(args[0]).name == program[0] and args[1] == program[1]
    assert plist["Label"] == name.removesuffix(".plist")
    assert plist["KeepAlive"] is True and plist["RunAtLoad"] is True
    assert plist["EnvironmentVariables"]["RAY_AUTH_MODE"] == "token"
    if program[0] == "herd":
        assert "--foreground" in args and plist["ExitTimeOut"] >= 60
    else:
        assert plist["EnvironmentVariables"]["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"


def test_haproxy_cleanup_command_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "launch.haproxy", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "", done.stderr
