"""Settings: the seed's defaults, FLEET_* / FLEET_NODE_* overrides, one-line errors."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.errors import ConfigError
from herd.node_settings import NodeSettings
from herd.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No FLEET_* variable from the outer shell leaks in; HOME is a temp dir."""
    for name in list(os.environ):
        if name.upper().startswith("FLEET_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message, "config errors are shown as one line"
    assert info.value.message == message
    return message


# --- defaults (the seed's configuration table) -----------------------------------------


def test_router_defaults_match_the_seed() -> None:
    s = load_settings()
    assert s.port == 11435
    assert s.host == "0.0.0.0"
    assert s.heartbeat_interval == 5.0
    assert s.heartbeat_timeout == 15.0
    assert s.heartbeat_offline == 30.0
    assert s.max_retries == 2
    assert s.log_level == "DEBUG"


def test_node_defaults_match_the_seed() -> None:
    node = load_settings().node
    assert node.ollama_host == "http://localhost:11434"


def test_data_and_log_dirs_default_under_home(tmp_path: Path) -> None:
    s = load_settings()
    assert s.data_dir == tmp_path / "home" / ".fleet-manager"
    assert s.log_dir == s.data_dir / "logs"


def test_nothing_is_read_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_PORT", "12000")
    assert load_settings().port == 12000
    monkeypatch.setenv("FLEET_PORT", "12001")
    assert load_settings().port == 12001


# --- environment overrides --------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value", "attr", "expected"),
    [
        ("FLEET_PORT", "8080", "port", 8080),
        ("FLEET_HOST", "127.0.0.1", "host", "127.0.0.1"),
        ("FLEET_HEARTBEAT_INTERVAL", "2.5", "heartbeat_interval", 2.5),
        ("FLEET_HEARTBEAT_TIMEOUT", "20", "heartbeat_timeout", 20.0),
        ("FLEET_HEARTBEAT_OFFLINE", "90", "heartbeat_offline", 90.0),
        ("FLEET_MAX_RETRIES", "0", "max_retries", 0),
        ("FLEET_LOG_LEVEL", "info", "log_level", "INFO"),
        ("FLEET_LOG_LEVEL", "Warning", "log_level", "WARNING"),
        ("FLEET_DATA_DIR", "/srv/herd", "data_dir", Path("/srv/herd")),
        ("FLEET_DATABASE_URL", "postgresql://db/herd", "database_url", "postgresql://db/herd"),
        ("fleet_port", "9000", "port", 9000),
    ],
)
def test_router_env_overrides(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, attr: str, expected: object
) -> None:
    monkeypatch.setenv(var, value)
    assert getattr(load_settings(), attr) == expected


@pytest.mark.parametrize(
    ("var", "value", "attr", "expected"),
    [
        (
            "FLEET_NODE_OLLAMA_HOST",
            "http://10.0.0.5:11434/",
            "ollama_host",
            "http://10.0.0.5:11434",
        ),
        ("FLEET_NODE_OLLAMA_HOST", "https://gpu.lan", "ollama_host", "https://gpu.lan"),
        ("FLEET_NODE_NAME", "mac-studio", "name", "mac-studio"),
        ("FLEET_NODE_NUM_PARALLEL", "4", "num_parallel", 4),
    ],
)
def test_node_env_overrides(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, attr: str, expected: object
) -> None:
    monkeypatch.setenv(var, value)
    assert getattr(load_settings().node, attr) == expected


def test_node_vars_do_not_leak_into_router_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_NODE_NAME", "laptop")
    monkeypatch.setenv("FLEET_NODE_NUM_PARALLEL", "3")
    s = load_settings()
    assert s.node.name == "laptop"
    assert s.node.num_parallel == 3


def test_data_dir_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLEET_DATA_DIR", "~/herd-data")
    monkeypatch.setenv("FLEET_NODE_LLAMACPP_MODEL_PATH", "~/models/g.gguf")
    s = load_settings()
    assert s.data_dir == tmp_path / "home" / "herd-data"
    assert s.node.llamacpp_model_path == tmp_path / "home" / "models" / "g.gguf"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", -1.0),
        ("300", 300.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("5m", "5m"),
        ("-1m", "-1m"),
        (" 1h ", "1h"),
    ],
)
def test_keep_alive_numbers_become_seconds(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: object
) -> None:
    # Ollama parses a JSON *string* keep_alive as a Go duration, which rejects "300".
    monkeypatch.setenv("FLEET_KEEP_ALIVE", value)
    keep_alive = load_settings().keep_alive
    assert keep_alive == expected
    assert type(keep_alive) is type(expected)


def test_keep_alive_default_keeps_models_loaded() -> None:
    keep_alive = load_settings().keep_alive
    assert isinstance(keep_alive, float)
    assert keep_alive < 0


def test_keyword_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_PORT", "8080")
    monkeypatch.setenv("FLEET_NODE_NUM_PARALLEL", "2")
    s = load_settings(port=9090, node={"num_parallel": 6})
    assert s.port == 9090
    assert s.node.num_parallel == 6


def test_node_settings_object_is_used_as_given() -> None:
    node = NodeSettings(name="pc", num_parallel=4)
    assert load_settings(node=node).node is node


def test_settings_objects_pickle() -> None:
    s = load_settings(port=1234, node={"name": "pc"})
    clone = pickle.loads(pickle.dumps(s))
    assert isinstance(clone, Settings)
    assert clone == s


# --- invalid values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"FLEET_PORT": "abc"}, "FLEET_PORT"),
        ({"FLEET_PORT": "0"}, "FLEET_PORT"),
        ({"FLEET_PORT": "70000"}, "FLEET_PORT"),
        ({"FLEET_HEARTBEAT_INTERVAL": "-1"}, "FLEET_HEARTBEAT_INTERVAL"),
        ({"FLEET_HEARTBEAT_TIMEOUT": "soon"}, "FLEET_HEARTBEAT_TIMEOUT"),
        ({"FLEET_MAX_RETRIES": "-1"}, "FLEET_MAX_RETRIES"),
        ({"FLEET_MAX_RETRIES": "2.5"}, "FLEET_MAX_RETRIES"),
        ({"FLEET_LOG_LEVEL": "verbose"}, "FLEET_LOG_LEVEL"),
        ({"FLEET_SERVE_PROXY": "nginx"}, "FLEET_SERVE_PROXY"),
        ({"FLEET_KEEP_ALIVE": "nan"}, "FLEET_KEEP_ALIVE"),
        ({"FLEET_NODE_NUM_PARALLEL": "x"}, "FLEET_NODE_NUM_PARALLEL"),
        ({"FLEET_NODE_NUM_PARALLEL": "0"}, "FLEET_NODE_NUM_PARALLEL"),
        ({"FLEET_NODE_OLLAMA_HOST": "localhost:11434"}, "FLEET_NODE_OLLAMA_HOST"),
        ({"FLEET_NODE_LLAMACPP": "sometimes"}, "FLEET_NODE_LLAMACPP"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: str
) -> None:
    message = _error(monkeypatch, **env)
    assert names in message
    value = next(iter(env.values()))
    assert repr(value) in message or repr(value.upper()) in message


def test_offline_below_timeout_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _error(monkeypatch, FLEET_HEARTBEAT_OFFLINE="10")
    assert "FLEET_HEARTBEAT_OFFLINE" in message
    assert "FLEET_HEARTBEAT_TIMEOUT" in message


def test_timeout_raised_above_offline_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _error(monkeypatch, FLEET_HEARTBEAT_TIMEOUT="45")
    assert "FLEET_HEARTBEAT_OFFLINE" in message


def test_offline_equal_to_timeout_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_HEARTBEAT_OFFLINE", "15")
    assert load_settings().heartbeat_offline == 15.0


def test_several_bad_values_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _error(monkeypatch, FLEET_PORT="abc", FLEET_MAX_RETRIES="many")
    assert "FLEET_PORT" in message
    assert "FLEET_MAX_RETRIES" in message


def test_unknown_keyword_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="FLEET_PROT"):
        load_settings(prot=1)


def test_config_error_does_not_chain_the_pydantic_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_PORT", "abc")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
