"""The env file (``<data dir>/env``, read before the environment, which wins) and the
start-up warning about ``FLEET_*`` names that are no setting (``herd.env_file``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

# No FLEET_* variable of the outer shell; HOME a temp dir (autouse, shared with test_settings).
from test_settings import _clean_env  # noqa: F401

from herd.errors import ConfigError
from herd.settings import known_variables, load_settings

LOGGER = "herd.settings"


def env_file(data_dir: Path, text: str, mode: int = 0o600) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "env"
    path.write_text(text)
    path.chmod(mode)
    return path


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_the_file_in_the_default_data_dir_is_read(tmp_path: Path) -> None:
    env_file(
        tmp_path / "home" / ".fleet-manager",
        "# the fleet of the lab\n"
        "FLEET_PORT=12000\n"
        "export FLEET_MAX_TAGS=7\n"
        "\n"
        'FLEET_NODE_NAME="studio"\n'
        "FLEET_LOG_LEVEL=info   # a trailing comment\n"
        'FLEET_MODEL_ALIASES=\'{"gpt-4o-mini": "smollm2:135m"}\'\n'
        "FLEET_KEEP_ALIVE=5m\n"
        "FLEET_REBALANCE=false\n",
    )
    s = load_settings()
    assert (s.port, s.max_tags, s.node.name, s.log_level) == (12000, 7, "studio", "INFO")
    assert json.loads(s.model_aliases) == {"gpt-4o-mini": "smollm2:135m"}  # quotes kept
    assert (s.keep_alive, s.rebalance) == ("5m", False)


def test_the_environment_wins_over_the_file_and_code_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    env_file(
        data, "FLEET_PORT=12000\nFLEET_MAX_TAGS=7\nFLEET_NODE_NUM_PARALLEL=3\nFLEET_HOST=::1\n"
    )
    monkeypatch.setenv("FLEET_DATA_DIR", str(data))
    monkeypatch.setenv("FLEET_MAX_TAGS", "9")
    monkeypatch.setenv("FLEET_NODE_NUM_PARALLEL", "4")
    s = load_settings()
    assert (s.port, s.max_tags, s.node.num_parallel, s.host) == (12000, 9, 4, "::1")
    s = load_settings(port=1, node={"num_parallel": 5})
    assert (s.port, s.max_tags, s.node.num_parallel) == (1, 9, 5)
    s = load_settings(data_dir=tmp_path / "elsewhere")  # no file there: the defaults
    assert (s.port, s.max_tags) == (11435, 9)


def test_the_data_dir_is_not_taken_from_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    env_file(data, f"FLEET_DATA_DIR={tmp_path / 'other'}\nFLEET_PORT=12001\n")
    with caplog.at_level(logging.WARNING, LOGGER):
        s = load_settings(data_dir=data)
    assert (s.data_dir, s.port) == (data, 12001)
    assert any("FLEET_DATA_DIR in" in m and "ignored" in m for m in warnings(caplog))


def test_a_bad_value_in_the_file_stops_with_its_name(tmp_path: Path) -> None:
    env_file(tmp_path, "FLEET_PORT=eighty\n")
    with pytest.raises(ConfigError, match="FLEET_PORT"):
        load_settings(data_dir=tmp_path)
    env_file(tmp_path, "FLEET_NODE_NUM_PARALLEL=0\n")
    with pytest.raises(ConfigError, match="FLEET_NODE_NUM_PARALLEL"):
        load_settings(data_dir=tmp_path)


def test_unknown_names_are_warned_about_with_the_closest_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = env_file(tmp_path, "FLEET_NODE_NUM_PARALEL=2\nFLEET_PORT=12000\nOLLAMA_HOST=x\n")
    monkeypatch.setenv("FLEET_HEARBEAT_INTERVAL", "2")
    monkeypatch.setenv("FLEET_ZZZ", "1")
    monkeypatch.setenv("FLEET_HEARTBEAT_TIMEOUT", "20")  # known: no word about it
    with caplog.at_level(logging.WARNING, LOGGER):
        s = load_settings(data_dir=tmp_path)
    assert s.port == 12000 and s.heartbeat_interval == 5.0  # the typo changed nothing
    assert warnings(caplog) == [
        "FLEET_HEARBEAT_INTERVAL is not a herd setting; did you mean FLEET_HEARTBEAT_INTERVAL?",
        f"FLEET_NODE_NUM_PARALEL (set in {path}) is not a herd setting; did you mean "
        "FLEET_NODE_NUM_PARALLEL?",
        "FLEET_ZZZ is not a herd setting (see the README's settings)",
    ]


def test_known_variables_are_every_field_of_both_classes() -> None:
    known = known_variables()
    assert {"FLEET_PORT", "FLEET_TRACE_RETENTION_DAYS", "FLEET_NODE_OLLAMA_HOST"} <= known
    assert "FLEET_NODE" not in known  # the nested object is read from FLEET_NODE_*


def test_a_file_with_secrets_that_others_can_read_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "t" * 32
    env_file(tmp_path, f"FLEET_ADMIN_TOKEN={token}\n", mode=0o600)
    with caplog.at_level(logging.WARNING, LOGGER):
        s = load_settings(data_dir=tmp_path)
    assert s.admin_token is not None and s.admin_token.get_secret_value() == token
    assert warnings(caplog) == []
    (tmp_path / "env").chmod(0o644)
    with caplog.at_level(logging.WARNING, LOGGER):
        load_settings(data_dir=tmp_path)
    [message] = warnings(caplog)
    assert "FLEET_ADMIN_TOKEN" in message and "chmod 600" in message and token not in message
