"""One build and one node-only venv for every test of tests/packaging."""

from __future__ import annotations

import pytest
from wheel_support import Built, Venv, build, core_venv


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def node_venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return core_venv(built.wheel, tmp_path_factory.mktemp("node") / "venv")
