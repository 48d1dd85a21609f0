"""The data plane's settings and shared token (actors/data_plane.py) with a stand-in for
Ray's GCS KV: every deployer ends up with the same token. No Ray."""

from __future__ import annotations

from typing import Any

import pytest

from actors import data_plane
from herd.errors import ConfigError, FleetUnavailable
from herd.settings import load_settings


@pytest.fixture(autouse=True)
def _no_data_plane_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLEET_DATA_PLANE", "FLEET_DATA_TOKEN", "FLEET_NODE_DATA_PORT"):
        monkeypatch.delenv(name, raising=False)


class FakeKV:
    """Ray's internal KV semantics: ``put(overwrite=False)`` keeps the first value."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store: dict[tuple[str, str], bytes] = {}
        self.puts = 0
        kv = data_plane.internal_kv
        monkeypatch.setattr(kv, "_internal_kv_initialized", lambda: True)
        monkeypatch.setattr(kv, "_internal_kv_get", self.get)
        monkeypatch.setattr(kv, "_internal_kv_put", self.put)

    def get(self, key: str, *, namespace: str) -> bytes | None:
        return self.store.get((namespace, key))

    def put(self, key: str, value: Any, overwrite: bool = True, *, namespace: str) -> bool:
        self.puts += 1
        exists = (namespace, key) in self.store
        if overwrite or not exists:
            self.store[(namespace, key)] = value.encode() if isinstance(value, str) else value
        return exists


def test_the_first_deployer_creates_the_token_and_the_rest_read_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kv = FakeKV(monkeypatch)
    settings = load_settings()
    first = data_plane.data_token(settings)
    assert len(first) >= 40 and kv.puts == 1
    assert [data_plane.data_token(settings) for _ in range(3)] == [first] * 3
    assert kv.puts == 1  # later readers only read
    assert kv.store == {("herd", "data_token"): first.encode()}


def test_a_racing_deployer_reads_back_the_winner(monkeypatch: pytest.MonkeyPatch) -> None:
    kv = FakeKV(monkeypatch)
    real_get = kv.get
    calls = 0

    def get_after_a_rival(key: str, *, namespace: str) -> bytes | None:
        nonlocal calls
        calls += 1
        if calls == 1:  # we saw nothing, then a rival stored its token first
            kv.store[(namespace, key)] = b"the-rival-token-0123456789"
            return None
        return real_get(key, namespace=namespace)

    monkeypatch.setattr(data_plane.internal_kv, "_internal_kv_get", get_after_a_rival)
    assert data_plane.data_token(load_settings()) == "the-rival-token-0123456789"


def test_fleet_data_token_overrides_the_kv(monkeypatch: pytest.MonkeyPatch) -> None:
    kv = FakeKV(monkeypatch)
    monkeypatch.setenv("FLEET_DATA_TOKEN", "from-the-environment-0123")
    assert data_plane.data_token(load_settings()) == "from-the-environment-0123"
    assert kv.puts == 0 and kv.store == {}


def test_without_ray_the_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The whole suite runs in one process, where integration tests connected Ray earlier.
    monkeypatch.setattr(data_plane.internal_kv, "_internal_kv_initialized", lambda: False)
    with pytest.raises(FleetUnavailable, match="Ray cluster"):
        data_plane.data_token(load_settings())


def test_settings_defaults_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.data_plane == "http" and settings.data_token is None
    assert settings.node.data_port == 0
    monkeypatch.setenv("FLEET_DATA_PLANE", "ray")
    monkeypatch.setenv("FLEET_NODE_DATA_PORT", "18080")
    settings = load_settings()
    assert settings.data_plane == "ray" and settings.node.data_port == 18080
    monkeypatch.setenv("FLEET_NODE_DATA_PORT", "70000")
    with pytest.raises(ConfigError, match="FLEET_NODE_DATA_PORT"):
        load_settings()


def test_a_short_token_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_DATA_TOKEN", "tiny-secret")
    with pytest.raises(ConfigError, match=r"FLEET_DATA_TOKEN: .*at least 16") as info:
        load_settings()
    assert "tiny-secret" not in str(info.value)
    monkeypatch.setenv("FLEET_DATA_TOKEN", "long-enough-secret-123")
    token = load_settings().data_token
    assert token is not None and "long-enough" not in repr(token)
