"""Profiles (built-in and from files), durations, deterministic text, and the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

import herd
from herd.errors import ConfigError
from herd.sim import builtin_profile_names, load_profile
from herd.sim.cli import main
from herd.sim.profile import GIB, SimProfile, keep_alive_seconds, parse_go_duration
from herd.sim.structured import pick_tool, schema_value, subject_of
from herd.sim.textgen import embed_vector, plan_completion, rng_for


def test_builtin_profiles() -> None:
    assert set(builtin_profile_names()) >= {
        "mac-studio",
        "gaming-pc",
        "laptop",
        "mac-mini",
        "instant",
    }
    for name in builtin_profile_names():
        p = load_profile(name)
        assert p.name == name
        assert p.models and p.registry
        assert all(m.size < p.memory_bytes for m in p.models)
    studio = load_profile("mac-studio")
    assert studio.memory_bytes >= 128 * GIB
    assert any(m.parameter_size.startswith("70") for m in studio.models)
    instant = load_profile("instant")
    assert instant.no_delays and instant.preload
    assert load_profile("laptop").gpu_offload == 0


def test_profile_from_files(tmp_path: Path) -> None:
    data = {
        "name": "box",
        "memory_bytes": 8 * GIB,
        "models": [{"name": "m:1b", "size": 1000, "capabilities": ["completion", "tools"]}],
        "preload": ["m:1b"],
    }
    as_json = tmp_path / "box.json"
    as_json.write_text(json.dumps(data))
    assert load_profile(as_json).models[0].name == "m:1b"
    as_yaml = tmp_path / "box.yaml"
    as_yaml.write_text(
        yaml.safe_dump({"extends": "laptop", "name": "my-laptop", "num_parallel": 3})
    )
    p = load_profile(str(as_yaml))
    assert (p.name, p.num_parallel, p.tokens_per_s) == ("my-laptop", 3, 12.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "colour": "red"}))
    with pytest.raises(ConfigError, match="colour"):
        load_profile(bad)
    with pytest.raises(ConfigError, match="neither a built-in"):
        load_profile("no-such-profile")


def test_profile_validation() -> None:
    with pytest.raises(ValueError, match="preload"):
        SimProfile(models=[], preload=["ghost"])
    with pytest.raises(ValueError):
        SimProfile(keep_alive="soon")
    with pytest.raises(ValueError):
        SimProfile(num_parallel=0)


def test_durations() -> None:
    assert parse_go_duration("5m") == 300
    assert parse_go_duration("1h30m") == 5400
    assert parse_go_duration("1.5s") == 1.5
    assert parse_go_duration("300ms") == pytest.approx(0.3)
    assert parse_go_duration("0") == 0
    assert parse_go_duration("-1m") == -60
    with pytest.raises(ValueError, match="missing unit"):
        parse_go_duration("10")
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration("abc")
    assert keep_alive_seconds(-1) is None
    assert keep_alive_seconds("-5m") is None
    assert keep_alive_seconds(30) == 30
    assert keep_alive_seconds("120") == 120


def test_text_is_deterministic() -> None:
    kw = {"model": "m", "n_tokens": (10, 30)}
    a = plan_completion(prompt="p", seed=1, **kw)  # type: ignore[arg-type]
    b = plan_completion(prompt="p", seed=1, **kw)  # type: ignore[arg-type]
    c = plan_completion(prompt="p", seed=2, **kw)  # type: ignore[arg-type]
    assert a == b
    assert a.text != c.text
    assert 10 <= len(a.content) <= 30
    cut = plan_completion(prompt="p", seed=1, num_predict=4, think="true", **kw)  # type: ignore[arg-type]
    assert (cut.eval_count, cut.done_reason, cut.content) == (4, "length", ())


def test_structured_helpers() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 5, "maximum": 6},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 1},
            "kind": {"enum": ["a", "b"]},
            "ref": {"$ref": "#/$defs/Inner"},
        },
        "required": ["n", "extra"],
        "$defs": {"Inner": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    }
    value = schema_value(schema, rng_for("x"))
    assert value["n"] in (5, 6)
    assert len(value["tags"]) == 1
    assert value["kind"] in ("a", "b")
    assert isinstance(value["ref"]["ok"], bool)
    assert "extra" in value
    assert subject_of("What is the weather in Tokyo?") == "Tokyo"
    assert subject_of("weather in paris") == "paris"
    tools = [
        {"function": {"name": "search_docs"}},
        {"function": {"name": "forecast", "description": "Weather"}},
    ]
    assert pick_tool(tools, "please search docs for ray")["name"] == "search_docs"  # type: ignore[index]
    assert pick_tool(tools, "how is the weather?")["name"] == "forecast"  # type: ignore[index]
    assert pick_tool(tools, "hello") is None


def test_embeddings_share_words() -> None:
    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    base = embed_vector("m", "the quick brown fox", 256)
    near = embed_vector("m", "the quick brown dog", 256)
    far = embed_vector("m", "completely unrelated sentence here", 256)
    assert cos(base, near) > cos(base, far)


def test_cli_list_and_bad_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-profiles"]) == 0
    assert "mac-studio" in capsys.readouterr().out
    assert main(["--profile", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["--profile", "instant", "--num-parallel", "0"]) == 2


def test_cli_serves_until_terminated() -> None:
    root = str(Path(herd.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "herd.sim", "--port", "0", "--profile", "instant", "--name", "n1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"herd sim-node n1 listening on (http://127\.0\.0\.1:(\d+))", line)
        assert m, line
        assert int(m.group(2)) > 0
        r = httpx.get(m.group(1) + "/", timeout=5)
        assert r.text == "Ollama is running"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        if proc.stdout is not None:
            proc.stdout.close()
