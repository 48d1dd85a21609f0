"""The pure parts of `herd start` / `herd join`: the join line, the version check, the
Ray environment and arguments, the address a box shows, the token file; and the
command line's readable refusals (no Ray is started)."""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from herd.errors import ConfigError
from launch.cli import main
from launch.cluster_plan import (
    MAC_WINDOWS_FLAG,
    Versions,
    compare_versions,
    driver_env,
    head_args,
    join_command,
    lan_address,
    node_env,
    parse_head,
    pick_address,
    read_token,
    save_token,
    worker_args,
)

HEAD = Versions(python="3.11.7", ray="2.60.0", herd="0.1.0")


def test_the_join_line_is_one_command_with_address_and_token() -> None:
    line = join_command("192.168.1.10:6379", "ab12" * 16)
    assert line == f"herd join 192.168.1.10:6379 --token {'ab12' * 16}"
    assert shlex.split(line) == ["herd", "join", "192.168.1.10:6379", "--token", "ab12" * 16]


def test_the_same_versions_pass_silently() -> None:
    check = compare_versions(HEAD, HEAD)
    assert check.refusals == [] and check.warnings == []


def test_a_different_ray_is_refused_with_what_to_install() -> None:
    check = compare_versions(HEAD, Versions("3.11.7", "2.59.1", "0.1.0"))
    assert check.refusals == [
        "Ray differs: the head runs Ray 2.60.0, this box 2.59.1 (every machine needs the "
        "same Ray version: pip install 'ray[serve]==2.60.0' here)"
    ]


def test_a_different_python_minor_is_refused() -> None:
    check = compare_versions(HEAD, Versions("3.12.3", "2.60.0", "0.1.0"))
    assert len(check.refusals) == 1
    assert "the head runs Python 3.11.7, this box 3.12.3" in check.refusals[0]
    assert "under Python 3.11" in check.refusals[0]


def test_a_python_patch_difference_and_another_herd_are_warnings() -> None:
    check = compare_versions(HEAD, Versions("3.11.9", "2.60.0", "0.2.0"))
    assert check.refusals == []
    assert "Python patch versions differ (head 3.11.7, this box 3.11.9)" in check.warnings[0]
    assert "the head runs herd 0.1.0, this box 0.2.0" in check.warnings[1]


def test_a_head_without_herd_version_is_a_warning() -> None:
    check = compare_versions(Versions("3.11.7", "2.60.0"), HEAD)
    assert check.refusals == [] and "not started with `herd start`" in check.warnings[0]


def test_both_refusals_are_told_at_once() -> None:
    check = compare_versions(HEAD, Versions("3.10.1", "2.50.0", "0.1.0"))
    assert [r.split(":")[0] for r in check.refusals] == ["Ray differs", "Python differs"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.168.1.10", ("192.168.1.10", 6379)),
        ("192.168.1.10:7000", ("192.168.1.10", 7000)),
        ("ray://head.lan:6380", ("head.lan", 6380)),
        ("[fd00::1]:6379", ("fd00::1", 6379)),
        ("[fd00::1]", ("fd00::1", 6379)),
    ],
)
def test_head_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_head(text) == expected


@pytest.mark.parametrize("text", ["", ":6379", "head:0", "head:99999", "head:port"])
def test_bad_head_addresses_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_head(text)


def test_the_address_of_the_route_out_wins() -> None:
    assert pick_address("192.168.1.20", ["10.0.0.5"]) == "192.168.1.20"


def test_without_a_route_a_private_address_of_the_machine() -> None:
    found = pick_address(None, ["127.0.1.1", "fe80::1", "93.184.216.34", "192.168.1.20"])
    assert found == "192.168.1.20"


def test_without_a_private_one_any_non_loopback_and_else_loopback() -> None:
    assert pick_address(None, ["127.0.0.1", "93.184.216.34"]) == "93.184.216.34"
    assert pick_address("127.0.0.1", ["::1", "not an ip"]) == "127.0.0.1"


def test_the_address_towards_a_loopback_head_is_loopback() -> None:
    assert lan_address(towards="127.0.0.1") == "127.0.0.1"


def test_node_env_has_what_herd_needs_and_no_stray_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "someone-elses")
    monkeypatch.setenv(MAC_WINDOWS_FLAG, "1")
    env = node_env(tmp_path / "ray-token", platform="linux")
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "ray-token")
    assert "RAY_AUTH_TOKEN" not in env  # Ray would read it before the file
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL"] == "minor"
    assert MAC_WINDOWS_FLAG not in env  # Linux needs no flag
    # LAN health checks (a dead box is dead within ~5-10 s) and lean Ray.
    assert env["RAY_health_check_period_ms"] == "1000"
    assert env["RAY_health_check_failure_threshold"] == "5"
    assert env["REPORTER_UPDATE_INTERVAL_MS"] == "60000"


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_macos_and_windows_get_rays_cluster_flag(tmp_path: Path, platform: str) -> None:
    assert node_env(tmp_path / "t", platform=platform)[MAC_WINDOWS_FLAG] == "1"
    assert driver_env(tmp_path / "t", platform=platform)[MAC_WINDOWS_FLAG] == "1"
    assert MAC_WINDOWS_FLAG not in driver_env(tmp_path / "t", platform="linux")


def test_head_and_worker_arguments(tmp_path: Path) -> None:
    head = head_args("192.168.1.10", 6379, "mac-1", None, ["--num-cpus=4"])
    assert head[:5] == [
        "--head",
        "--node-ip-address=192.168.1.10",
        "--port=6379",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    assert json.loads(head[5].removeprefix("--resources=")) == {"herd_node_mac-1": 1}
    assert head[-1] == "--num-cpus=4" and "--include-log-monitor=False" in head
    worker = worker_args("192.168.1.10:6379", "192.168.1.11", "pc", tmp_path, [])
    assert worker[:2] == ["--address=192.168.1.10:6379", "--node-ip-address=192.168.1.11"]
    assert worker[-1] == f"--temp-dir={tmp_path}" and "--include-log-monitor=False" in worker


def test_the_token_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "ray-token"
    save_token(path, "cafe" * 16)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_token(path) == "cafe" * 16


def test_a_token_with_spaces_or_none_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ray-token"
    path.write_text("two words")
    with pytest.raises(ConfigError, match="one word"):
        read_token(path)
    with pytest.raises(ConfigError, match="cannot read the Ray token"):
        read_token(tmp_path / "absent")


def test_join_without_a_token_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    assert main(["join", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "herd join needs the fleet's token: pass --token TOKEN" in err
    assert "Traceback" not in err


def test_join_with_a_bad_address_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    assert main(["join", "head:notaport", "--token", "x"]) == 2
    assert "cannot read the head's address 'head:notaport'" in capsys.readouterr().err


def test_join_to_no_head_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from launch.localray import free_port

    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    port = free_port()  # nothing listens there
    assert main(["join", f"127.0.0.1:{port}", "--token", "ab" * 32]) == 4
    err = capsys.readouterr().err
    assert f"no Ray head answers at 127.0.0.1:{port}: is `herd start` running there" in err
    assert read_token(tmp_path / "ray-token") == "ab" * 32  # kept for the next try


def test_token_and_token_file_exclude_each_other(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "launch.cli", "join", "h", "--token", "a", "--token-file", "f"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "not allowed with argument" in done.stderr


def test_an_unexpected_failure_is_one_line_not_a_stack_trace() -> None:
    import argparse

    from herd.settings import Settings
    from launch.cli_http import CliError
    from launch.cluster_cmds import _readable

    def boom(args: argparse.Namespace, settings: Settings) -> int:
        raise RuntimeError("Version mismatch: The cluster was started with:\n    Ray: 2.59")

    with pytest.raises(CliError) as caught:
        _readable(boom)(argparse.Namespace(command="join"), Settings())
    first_line = "Version mismatch: The cluster was started with:"
    assert caught.value.message == f"herd join failed: {first_line}"
    assert caught.value.code == 1
