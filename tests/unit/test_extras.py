"""launch/extras.py: the modules it checks per extra are those pyproject's extras install,
and a command that needs a missing extra says which one and how to install it."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from herd.errors import ConfigError
from launch import extras

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_normal(re.split(r"[\[<>=;! ]", r, maxsplit=1)[0]) for r in requirements}


def test_each_checked_module_comes_from_its_extra() -> None:
    optional = PYPROJECT["project"]["optional-dependencies"]
    owners = packages_distributions()
    for extra, modules in extras.EXTRAS.items():
        listed = _names(optional[extra])
        for module in modules:
            assert {_normal(d) for d in owners[module]} & listed, (extra, module)


def test_the_distribution_and_its_extras() -> None:
    project = PYPROJECT["project"]
    assert project["name"] == extras.DISTRIBUTION == "herd-fleet"
    assert project["scripts"] == {"herd": "launch.cli:main"}
    assert project["optional-dependencies"]["all"] == ["herd-fleet[head,embedded,media]"]


def test_make_setup_installs_every_extra() -> None:
    for extra in extras.EXTRAS:
        assert extras.missing(extra) == [], extra


def test_a_missing_extra_is_named_with_its_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(extras.EXTRAS, "head", ("fastapi", "no_such_module_of_herd"))
    assert extras.missing("head") == ["no_such_module_of_herd"]
    with pytest.raises(ConfigError) as caught:
        extras.require("head", "the head")
    assert caught.value.message == (
        "the head needs herd-fleet[head], which this box lacks (no no_such_module_of_herd): "
        "pip install 'herd-fleet[head]'"
    )
    extras.require("embedded", "llama.cpp")  # installed: no error
