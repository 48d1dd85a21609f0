"""The core (everything under herd/) must import without loading Ray.

Runs in a fresh interpreter, since this test process may already have imported ray.
Every module is imported: those pkgutil walks, plus every ``.py`` file under herd/
(which also covers folders without an ``__init__.py``, which pkgutil does not enter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import importlib, json, pathlib, pkgutil, sys

def fail(name):
    raise ImportError(f"could not import package {name}")

import herd

walked = ["herd"]
for info in pkgutil.walk_packages(herd.__path__, "herd.", onerror=fail):
    walked.append(info.name)
root = pathlib.Path(herd.__file__).parent
files = [
    ".".join(("herd", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
    for p in sorted(root.rglob("*.py"))
]
for name in dict.fromkeys(walked + files):
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
print(json.dumps({"walked": walked, "files": files, "ray": loaded}))
"""


def test_importing_every_core_module_loads_no_ray() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert "herd.settings" in report["walked"]
    assert "herd.settings" in report["files"]
    assert report["ray"] == [], f"importing herd loaded {report['ray'][:5]}"
