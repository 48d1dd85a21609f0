"""herd.guard: which route needs which credential, the browser allow-lists, the
credentials and the admin token file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from herd.guard.access import INFERENCE_POSTS, dash_callback_access, route_access
from herd.guard.browser import BrowserPolicy, host_name
from herd.guard.credentials import (
    Credentials,
    bearer,
    ensure_admin_token,
    read_admin_token,
    session_value,
)
from herd.settings import load_settings

ADMIN = "admin-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("method", "path", "access"),
    [
        ("GET", "/", "public"),
        ("HEAD", "/api/version", "public"),
        ("GET", "/dashboard/login", "public"),
        ("POST", "/dashboard/login", "public"),
        ("POST", "/api/chat", "inference"),
        ("POST", "/v1/chat/completions", "inference"),
        ("POST", "/api/show", "inference"),
        ("GET", "/api/tags", "inference"),
        ("GET", "/v1/models", "inference"),
        ("GET", "/fleet/status", "inference"),
        ("POST", "/api/pull", "admin"),
        ("DELETE", "/api/delete", "admin"),
        ("POST", "/api/create", "admin"),  # not served, still never open
        ("POST", "/api/copy", "admin"),
        ("PUT", "/api/chat", "admin"),
        ("POST", "/fleet/anything", "admin"),
        ("POST", "/dashboard/api/settings", "admin"),
        ("POST", "/dashboard/api/pull", "admin"),
        ("POST", "/dashboard/api/delete", "admin"),
        ("POST", "/dashboard/api/benchmarks", "admin"),
        ("GET", "/dashboard/api/traces", "traces"),
        ("GET", "/dashboard/", "traces"),
        ("GET", "/dashboard/events", "traces"),
        ("POST", "/dashboard/_dash-update-component", "traces"),
    ],
)
def test_route_access(method: str, path: str, access: str) -> None:
    assert route_access(method, path) == access


def test_every_inference_post_is_an_api_path() -> None:
    assert all(p.startswith(("/api/", "/v1/")) for p in INFERENCE_POSTS)
    assert "/api/pull" not in INFERENCE_POSTS and "/api/delete" not in INFERENCE_POSTS


def test_dash_callbacks_that_mutate_need_the_admin() -> None:
    mutating = frozenset({"settings-saved.children", "rec-pull-message.children"})

    def body(output: str) -> bytes:
        return json.dumps({"output": output, "inputs": [], "changedPropIds": []}).encode()

    assert dash_callback_access(body("settings-saved.children"), mutating) == "admin"
    assert dash_callback_access(body("..a.children...rec-pull-message.children.."), mutating) == (
        "admin"
    )
    assert dash_callback_access(body("..settings-toggles.value...x.children.."), mutating) == (
        "traces"
    )
    assert dash_callback_access(b"not json", mutating) == "traces"
    assert dash_callback_access(b"[1, 2]", mutating) == "traces"


def test_hosts_allow_ips_local_names_and_the_list() -> None:
    policy = BrowserPolicy.build("", "router.example.org,*.lan", names=["studio"])
    for ok in (
        None,
        "127.0.0.1:11435",
        "[::1]:11435",
        "192.168.1.20:11435",
        "localhost:11435",
        "app.localhost",
        "studio:11435",
        "studio.local",
        "box.internal",
        "router.example.org",
        "mini.lan:11435",
    ):
        assert policy.host_allowed(ok), ok
    for bad in ("evil.example.com:11435", "studio.evil.com", "localhost.evil.com", "a,b"):
        assert not policy.host_allowed(bad), bad
    assert BrowserPolicy.build("", "*", names=[]).host_allowed("anything.example.com")


def test_host_name_parsing() -> None:
    assert host_name("Example.COM:80") == "example.com"
    assert host_name("[fe80::1]:11435") == "fe80::1"
    assert host_name("::1") == "::1"


def test_origins_follow_ollama_and_same_origin() -> None:
    policy = BrowserPolicy.build("https://*.example.com,http://tool.lan:3000", "", names=[])
    host = "192.168.1.20:11435"
    for ok in (
        None,
        "http://localhost",
        "http://localhost:3000",
        "https://127.0.0.1:8443",
        "http://0.0.0.0:1234",
        "app://obsidian.md",
        "file://",
        "tauri://localhost",
        "vscode-webview://abc",
        "https://chat.example.com",
        "http://tool.lan:3000",
        "http://192.168.1.20:11435",  # the dashboard, same origin
    ):
        assert policy.origin_allowed(ok, host), ok
    for bad in ("https://evil.com", "null", "http://localhost.evil.com", "http://tool.lan:3001"):
        assert not policy.origin_allowed(bad, host), bad
    # The same scheme and name on another port is another origin.
    assert not policy.origin_allowed("http://192.168.1.20:8080", host)


def test_credentials_roles_and_constant_time_compare() -> None:
    creds = Credentials(ADMIN, {"k" * 20: "alice", "j" * 20: "bob"})
    assert creds.keys_required
    assert creds.caller([ADMIN]).admin
    assert creds.caller(["k" * 20]).key_name == "alice"
    assert creds.caller(["wrong", "j" * 20]).key_name == "bob"
    assert creds.caller(["wrong"]).role == "anonymous"
    assert creds.caller([], session=session_value(ADMIN)).admin
    assert creds.caller([], session=session_value("another-token-0123456789")).role == ("anonymous")
    assert session_value(ADMIN) != ADMIN
    open_fleet = Credentials(None, {})
    assert not open_fleet.keys_required
    assert open_fleet.caller([ADMIN], session="x").role == "anonymous"


def test_bearer_header() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer   abc  ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer") is None
    assert bearer(None) is None


def test_admin_token_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    assert read_admin_token(settings) is None
    token, created = ensure_admin_token(settings)
    assert created and len(token) >= 32
    path = tmp_path / "data" / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin_token(settings) == (token, False)
    assert read_admin_token(settings) == token


def test_a_configured_admin_token_wins(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, admin_token=ADMIN)
    assert ensure_admin_token(settings) == (ADMIN, False)
    assert not (tmp_path / "admin-token").exists()


def test_api_keys_setting_forms() -> None:
    s = load_settings(api_keys='{"alice": "aaaaaaaaaaaaaaaa1", "bob": "bbbbbbbbbbbbbbbb2"}')
    assert s.api_key_table() == {"aaaaaaaaaaaaaaaa1": "alice", "bbbbbbbbbbbbbbbb2": "bob"}
    s = load_settings(api_keys="alice:aaaaaaaaaaaaaaaa1, bob:bbbbbbbbbbbbbbbb2")
    assert set(s.api_key_table().values()) == {"alice", "bob"}
    assert load_settings().api_key_table() == {}
    for bad in (
        "alice",
        "alice:short",
        "bad name:aaaaaaaaaaaaaaaa1",
        "a:aaaaaaaaaaaaaaaa1,b:aaaaaaaaaaaaaaaa1",
    ):
        with pytest.raises(Exception, match="FLEET_API_KEYS") as info:
            load_settings(api_keys=bad)
        assert "aaaaaaaaaaaaaaaa1" not in str(info.value)  # never echo a key
