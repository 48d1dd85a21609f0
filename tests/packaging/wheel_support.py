"""The wheel under test and a fresh venv holding its core alone (tests/packaging)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Venv:
    bin: Path
    install_seconds: float

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def run(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**clean_env(), **(env or {})},
            cwd="/",
        )


def uv() -> str:
    here = Path(sys.executable).with_name("uv")  # make setup puts it into the venv
    found = str(here) if here.exists() else shutil.which("uv")
    assert found, "uv is needed to build and install the wheel (make setup installs it)"
    return found


def clean_env() -> dict[str, str]:
    """This environment without the test venv's traces, herd settings or Ray's token."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    return {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith(("FLEET_", "RAY_AUTH"))
    }


def build(out: Path) -> Built:
    """``uv build``: the sdist, then the wheel from it."""
    done = subprocess.run(
        [uv(), "build", "--quiet", "--out-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return Built(wheels[0], sdists[0])


def core_venv(wheel: Path, where: Path) -> Venv:
    """A new venv of this Python with the wheel and its core dependencies, no extra."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    began = time.monotonic()
    done = subprocess.run(
        [uv(), "pip", "install", "--quiet", "--python", str(where / "bin" / "python"), wheel],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Venv(where / "bin", time.monotonic() - began)
