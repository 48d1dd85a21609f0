"""The terminal commands' pure parts: Ollama's sizes and times, the ps / ls rows, the host
reading, a node's pull progress, the JSONL log reads of ``herd logs``; and the errors a
user meets without an endpoint (one line, the documented exit code)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from herd.node import log_tail
from launch import cli_format as fmt
from launch.cli_http import EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, CliError, parse_host
from launch.cli_logs import Source, group_sources, merged, render
from launch.cli_models import pull_targets
from launch.cli_progress import NodePull, PlainView, make_view
from launch.localray import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


# --- sizes and times, as Ollama's CLI says them ------------------------------------------
@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 KB"),
        (1500, "1.5 KB"),
        (80 * 1024 * 1024, "83 MB"),
        (4_661_224_676, "4.7 GB"),
        (2_000_000_000, "2 GB"),
        (12_345_678_901, "12 GB"),
        (274_302_450, "274 MB"),
        (1_200_000_000_000, "1.2 TB"),
    ],
)
def test_sizes_are_decimal_like_ollamas(n: int, shown: str) -> None:
    assert fmt.human_bytes(n) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.4, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (4 * 60 + 59, "4 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (15 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_durations_read_like_ollamas(seconds: float, shown: str) -> None:
    assert fmt.human_duration(seconds) == shown


def test_until_says_from_now_forever_or_stopping() -> None:
    soon = (NOW + timedelta(minutes=4, seconds=30)).isoformat()
    assert fmt.until(soon, NOW) == "4 minutes from now"
    assert fmt.until("2318-01-01T00:00:00Z", NOW) == "Forever"  # keep_alive -1 in Ollama
    assert fmt.until("0001-01-01T00:00:00Z", NOW) == "Forever"  # herd: no expiry at all
    assert fmt.until("", NOW) == "Forever"
    assert fmt.until((NOW - timedelta(seconds=3)).isoformat(), NOW) == "Stopping..."


def test_times_with_nanoseconds_and_zones_are_read() -> None:
    when = fmt.parse_time("2025-06-01T13:00:00.123456789+01:00")
    assert when == NOW.replace(microsecond=123456)
    assert fmt.parse_time("2025-06-01T12:00:00Z") == NOW
    assert fmt.parse_time("yesterday").year == 1
    assert fmt.human_time(NOW - timedelta(days=15), NOW) == "2 weeks ago"
    assert fmt.human_time(fmt.ZERO_TIME, NOW) == "Never"


@pytest.mark.parametrize(
    ("size", "vram", "shown"),
    [
        (100, 0, "100% CPU"),
        (100, 100, "100% GPU"),
        (100, 52, "48%/52% CPU/GPU"),
        (100, 120, "Unknown"),
        (0, 5, "Unknown"),
    ],
)
def test_processor_split(size: int, vram: int, shown: str) -> None:
    assert fmt.processor(size, vram) == shown


def test_ps_and_ls_rows_add_the_nodes() -> None:
    ps = {
        "models": [
            {
                "name": "tiny:1b",
                "digest": "sha256:0123456789abcdef0123",
                "size": 104_857_600,
                "size_vram": 104_857_600,
                "context_length": 4096,
                "expires_at": (NOW + timedelta(minutes=5)).isoformat(),
                "node": "alpha",
            }
        ]
    }
    rows = fmt.ps_rows(ps, NOW)
    assert rows == [
        ["tiny:1b", "0123456789ab", "104 MB", "100% GPU", "4096", "5 minutes from now", "alpha"]
    ]
    text = fmt.table(fmt.PS_HEADER, rows).splitlines()
    assert text[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "NODE"]
    assert text[1].startswith("tiny:1b   0123456789ab")
    tags = {
        "models": [
            {
                "name": "coder:1b",
                "digest": "fedcba9876543210",
                "size": 1_500_000_000,
                "modified_at": (NOW - timedelta(hours=3)).isoformat(),
                "nodes": ["beta", "gamma"],
            }
        ]
    }
    assert fmt.ls_rows(tags, NOW) == [
        ["coder:1b", "fedcba987654", "1.5 GB", "3 hours ago", "beta,gamma"]
    ]


# --- the endpoint's address, read as Ollama reads OLLAMA_HOST ------------------------------
@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, "http://127.0.0.1:11435"),
        ("", "http://127.0.0.1:11435"),
        ("router", "http://router:11435"),
        ("router:8080", "http://router:8080"),
        ("10.0.0.5", "http://10.0.0.5:11435"),
        ("http://router", "http://router:80"),
        ("https://router", "https://router:443"),
        ("HTTPS://router:8443/", "https://router:8443"),
        (":9999", "http://127.0.0.1:9999"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("::1", "http://[::1]:11435"),
        ("http://router:8080/herd", "http://router:8080/herd"),
    ],
)
def test_hosts_read_like_ollama_host(value: str | None, url: str) -> None:
    assert parse_host(value, 11435) == url


@pytest.mark.parametrize("value", ["ftp://router", "router:port", "router:70000", "a:b:c"])
def test_unreadable_hosts_are_usage_errors(value: str) -> None:
    with pytest.raises(CliError) as err:
        parse_host(value, 11435)
    assert err.value.code == EXIT_USAGE


# --- pull: where, and what a node's progress says ---------------------------------------
def _node(name: str, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "node_id": name,
        "status": "online",
        "backend_ok": True,
        "backend": "ollama",
        "draining": False,
    }
    return base | over


def test_pull_all_goes_to_every_online_ollama_node() -> None:
    nodes = [
        _node("alpha"),
        _node("beta", draining=True),
        _node("gamma", backend="llamacpp"),
        _node("delta", status="offline", backend_ok=False),
    ]
    chosen, skipped = pull_targets(nodes, None, True)
    assert chosen == ["alpha"]
    assert skipped == ["beta (draining)", "gamma (llamacpp: cannot pull)", "delta (offline, down)"]
    assert pull_targets(nodes, None, False) == ([None], [])
    assert pull_targets(nodes, "gamma", False) == (["gamma"], [])  # the endpoint says why not
    with pytest.raises(CliError) as err:
        pull_targets(nodes, "omega", False)
    assert err.value.code == EXIT_NOT_FOUND and "alpha, beta, delta, gamma" in err.value.message
    with pytest.raises(CliError, match="no online Ollama node"):
        pull_targets([_node("gamma", backend="llamacpp")], None, True)


def _layer(digest: str, total: int, completed: int | None = None) -> dict[str, object]:
    line: dict[str, object] = {"status": f"pulling {digest}", "digest": f"sha256:{digest}"}
    line["total"] = total
    if completed is not None:
        line["completed"] = completed
    return line


def test_a_node_pull_sums_its_layers_and_logs_in_quarters() -> None:
    pull = NodePull("alpha")
    said = [pull.feed({"status": "pulling manifest"})]
    said.append(pull.feed(_layer("aaa", 1000)))
    for done in (100, 260, 500, 510, 1000):
        said.append(pull.feed(_layer("aaa", 1000, done)))
    said.append(pull.feed(_layer("bbb", 96, 96)))
    assert (pull.total, pull.completed) == (1096, 1096)
    for status in ("verifying sha256 digest", "writing manifest", "success"):
        said.append(pull.feed({"status": status}))
    flat = [m for messages in said for m in messages]
    assert flat == [
        "pulling manifest",
        "pulling aaa (1 KB)",
        "pulling aaa: 25% of 1 KB",
        "pulling aaa: 50% of 1 KB",
        "pulling aaa: 100% of 1 KB",
        "pulling bbb (96 B)",
        "pulling bbb: 100% of 96 B",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert pull.done and pull.error is None


def test_an_error_line_ends_a_node_pull() -> None:
    pull = NodePull("beta")
    pull.feed({"status": "pulling manifest"})
    assert pull.feed({"error": "pull model manifest: file does not exist"}) == [
        "error: pull model manifest: file does not exist"
    ]
    assert pull.error and not pull.done


def test_the_plain_view_prints_node_prefixed_lines_and_a_pipe_gets_it() -> None:
    out = io.StringIO()
    view = make_view(out)
    assert isinstance(view, PlainView)
    pull = NodePull("gamma")
    view.changed(pull, pull.feed({"status": "success"}))
    assert out.getvalue() == "gamma: success\n"


# --- herd logs: bounded reads of the JSONL file -----------------------------------------
def _write(path: Path, count: int, start: int = 0, partial: bool = False) -> None:
    with path.open("a") as fh:
        for i in range(start, start + count):
            fh.write(json.dumps({"ts": f"2025-06-01T12:00:{i % 60:02d}", "msg": f"m{i}"}) + "\n")
        if partial:
            fh.write('{"ts": "2025-06-01T12:59:59", "msg": "half')


def test_tail_returns_the_last_whole_lines_and_the_position(tmp_path: Path) -> None:
    path = tmp_path / "herd.jsonl"
    assert log_tail.tail(path, 10)["lines"] == []  # no file yet
    _write(path, 50, partial=True)
    got = log_tail.tail(path, 5)
    assert [json.loads(line)["msg"] for line in got["lines"]] == [f"m{i}" for i in range(45, 50)]
    assert got["position"]["offset"] == path.read_bytes().rfind(b"\n") + 1
    assert log_tail.tail(path, 0)["lines"] == []
    assert len(log_tail.tail(path, 10**9)["lines"]) == 50  # capped at MAX_LINES, all here


def test_tail_of_a_long_file_reads_only_its_end(tmp_path: Path) -> None:
    path = tmp_path / "herd.jsonl"
    _write(path, 30_000)
    got = log_tail.tail(path, 3000)
    assert len(got["lines"]) == log_tail.MAX_LINES
    assert json.loads(got["lines"][-1])["msg"] == "m29999"


def test_read_after_follows_new_lines_and_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "herd.jsonl"
    _write(path, 3, partial=True)
    pos = log_tail.tail(path, 100)["position"]
    assert log_tail.read_after(path, pos)["lines"] == []  # the half line waits
    with path.open("a") as fh:
        fh.write('"}\n')
    _write(path, 2, start=3)
    got = log_tail.read_after(path, pos)
    assert [json.loads(line)["msg"] for line in got["lines"]] == ["half", "m3", "m4"]
    path.rename(tmp_path / "herd.jsonl.2025-06-01")  # rotated: a new file
    _write(path, 1, start=7)
    again = log_tail.read_after(path, got["position"])
    assert [json.loads(line)["msg"] for line in again["lines"]] == ["m7"]


def test_read_after_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "herd.jsonl"
    _write(path, log_tail.MAX_LINES + 5)
    first = log_tail.read_after(path, None)
    assert len(first["lines"]) == log_tail.MAX_LINES
    rest = log_tail.read_after(path, first["position"])
    assert [json.loads(line)["msg"] for line in rest["lines"]] == [
        f"m{i}" for i in range(log_tail.MAX_LINES, log_tail.MAX_LINES + 5)
    ]


def test_log_lines_render_and_merge_by_time() -> None:
    raw = json.dumps(
        {"ts": "2025-06-01T12:00:01.250+00:00", "level": "INFO", "logger": "herd.x", "msg": "up"}
        | {"node": "alpha", "n": 3, "why": "two words"}
    )
    assert (
        render(raw) == '2025-06-01 12:00:01.250 INFO    herd.x: up node=alpha n=3 why="two words"'
    )
    assert render(raw, as_json=True) == raw
    assert render("not json") == "not json"
    a = {"source": "h:1:2", "lines": [json.dumps({"ts": "2", "msg": "a2"})]}
    b = {"source": "h:1:3", "lines": [json.dumps({"ts": "1", "msg": "b1"})]}
    sources = group_sources([("alpha", None, a), ("gemma", None, a), ("beta", None, b)])
    assert [s.label for s in sources] == ["alpha,gemma", "beta"]
    shown = list(merged(sources, as_json=True))
    assert shown == [f"[beta] {b['lines'][0]}", f"[alpha,gemma] {a['lines'][0]}"]
    single = [Source("alpha", None, a)]
    assert list(merged(single, as_json=True)) == a["lines"]


# --- the command as a user meets it --------------------------------------------------------
def _herd(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "HERD_"))}
    env |= {"PYTHONPATH": str(REPO_ROOT), "FLEET_DATA_DIR": str(tmp)}
    cmd = [sys.executable, "-m", "launch.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_no_endpoint_is_one_line_and_exit_code_4(tmp_path: Path) -> None:
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    for args in (("ps",), ("ls",), ("pull", "tiny:1b", "--all"), ("rm", "tiny:1b")):
        result = _herd(*args, "--host", url, tmp=tmp_path)
        assert result.returncode == EXIT_UNREACHABLE, (args, result.stderr)
        assert result.stderr.strip() == (
            f"herd: no herd endpoint at http://{url}: start one with `herd demo` / `herd deploy`"
        )
        assert result.stdout == ""


def test_version_and_usage_errors(tmp_path: Path) -> None:
    version = _herd("--version", tmp=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == "herd version 0.1.0"
    wrong = _herd("pull", "x", "--node", "a", "--all", tmp=tmp_path)
    assert wrong.returncode == EXIT_USAGE and "not allowed with" in wrong.stderr
    bad_host = _herd("ps", "--host", "ftp://x", tmp=tmp_path)
    assert bad_host.returncode == EXIT_USAGE
    assert bad_host.stderr.strip() == "herd: cannot read host 'ftp://x': use http:// or https://"
