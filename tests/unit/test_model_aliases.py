"""``FLEET_MODEL_ALIASES``: the alias table (herd/model_names.py: parsing, bounds, chains,
loops), its setting (a bad value is a one-line ConfigError at load), the request's names
resolved before routing (herd/dispatch/prep.with_aliases) and the aliases in /v1/models
(herd/convert/openai_models.py)."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from dispatch_fakes import request

from herd.convert.openai_models import find_openai_model, openai_model_list
from herd.dispatch.prep import with_aliases
from herd.domain import ModelOnDisk
from herd.errors import ConfigError
from herd.model_names import MAX_ALIAS_FILE_BYTES, MAX_ALIASES, ModelAliases
from herd.settings import load_settings

CHARS = 200


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("FLEET_"):
            monkeypatch.delenv(name)
    yield


def parse(value: object, chars: int = CHARS) -> ModelAliases:
    text = value if isinstance(value, str) else json.dumps(value)
    return ModelAliases.parse(text, chars)


def refused(value: object, chars: int = CHARS) -> str:
    with pytest.raises(ValueError) as info:
        parse(value, chars)
    return str(info.value)


# --- the table ----------------------------------------------------------------------------
def test_an_alias_resolves_by_ollamas_rule_and_other_names_pass_unchanged() -> None:
    table = parse({"gpt-4o-mini": "smollm2:135m", "Claude-Sonnet-4-5": "qwen3:8b"})
    assert len(table) == 2
    assert table.resolve("gpt-4o-mini") == "smollm2:135m"
    assert table.resolve("GPT-4o-mini:latest") == "smollm2:135m"  # case, missing tag
    assert table.resolve("claude-sonnet-4-5") == "qwen3:8b"
    assert table.resolve("gpt-4o-mini:2024") == "gpt-4o-mini:2024"  # another tag: not it
    assert table.resolve("llama3:8b") == "llama3:8b"
    alias = table.get("claude-sonnet-4-5")
    assert alias is not None and (alias.name, alias.target) == ("Claude-Sonnet-4-5", "qwen3:8b")
    assert table.get("qwen3:8b") is None


def test_empty_values_are_no_aliases() -> None:
    for value in ("", "  ", "{}"):
        table = ModelAliases.parse(value, CHARS)
        assert len(table) == 0 and not table
        assert table.resolve("gpt-4o-mini") == "gpt-4o-mini"


def test_names_are_trimmed() -> None:
    table = parse({" gpt-4o ": " qwen3:8b "})
    assert [(a.name, a.target) for a in table] == [("gpt-4o", "qwen3:8b")]


def test_chains_are_followed_once_when_the_table_is_built() -> None:
    table = parse({"a": "b", "b": "c:1b", "claude": "A"})
    assert {a.name: a.target for a in table} == {"a": "c:1b", "b": "c:1b", "claude": "c:1b"}


def test_an_alias_that_maps_to_itself_is_refused() -> None:
    assert refused({"llama3": "llama3:latest"}) == "alias 'llama3' maps to itself"
    assert "maps to itself" in refused({"X:1b": "x:1b"})


def test_a_loop_is_refused_naming_its_chain() -> None:
    message = refused({"a": "b", "b": "c", "c": "A"})
    assert message == "aliases loop: a -> b -> c -> A"
    assert refused({"ok": "m:1b", "p": "q", "q": "p"}).startswith("aliases loop: p -> q -> p")


def test_an_alias_given_twice_is_refused() -> None:
    message = refused('{"gpt-4o": "a:1b", "GPT-4o:latest": "b:1b"}')
    assert "alias 'GPT-4o:latest' is given twice (as 'gpt-4o'" in message


def test_the_number_of_aliases_is_bounded() -> None:
    assert len(parse({f"a{i}": "m:1b" for i in range(MAX_ALIASES)})) == MAX_ALIASES
    message = refused({f"a{i}": "m:1b" for i in range(MAX_ALIASES + 1)})
    assert message == f"has {MAX_ALIASES + 1} aliases; at most {MAX_ALIASES}"


def test_names_follow_the_model_name_rule() -> None:
    long = "m" * 21
    assert "longer than 20 characters" in refused({long: "m:1b"}, chars=20)
    assert "target 'mmmmmmmmmmmmmmmmmmmmm'" in refused({"a": long}, chars=20)
    assert "invalid model name" in refused({"gpt 4o": "m:1b"})
    assert "invalid model name" in refused({"a": "-m"})
    assert "invalid model name" in refused({"": "m:1b"})
    assert len(parse({"m" * 20: "n" * 20}, chars=20)) == 1


def test_values_must_be_an_object_of_strings() -> None:
    assert "not a valid JSON object" in refused("{not json")
    assert refused('{"a": 1}').startswith("alias 'a': aliases and models must be strings")
    assert refused('["gpt-4o", "qwen3:8b"]').startswith("must be an object mapping")
    assert "readable alias file (Not a directory)" in refused("/dev/null/x")
    assert "is neither a JSON object nor a readable alias file" in refused("gpt-4o=qwen")


def test_a_json_or_yaml_file(tmp_path: Path) -> None:
    as_json = tmp_path / "aliases.json"
    as_json.write_text(json.dumps({"gpt-4o-mini": "smollm2:135m"}))
    assert parse(str(as_json)).resolve("gpt-4o-mini") == "smollm2:135m"
    as_yaml = tmp_path / "aliases.yaml"
    as_yaml.write_text("# names clients insist on\ngpt-4o-mini: smollm2:135m\nclaude: qwen3:8b\n")
    assert {a.name: a.target for a in parse(str(as_yaml))} == {
        "gpt-4o-mini": "smollm2:135m",
        "claude": "qwen3:8b",
    }
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert len(parse(str(empty))) == 0


def test_bad_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- gpt-4o\n- qwen3:8b\n")
    assert refused(str(listed)) == "must be an object mapping each alias to a fleet model"
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [b\n")
    assert "is not valid YAML" in refused(str(broken))
    numbers = tmp_path / "numbers.yaml"
    numbers.write_text("gpt-4o: 3.5\n")
    assert "quote them in YAML" in refused(str(numbers))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_ALIAS_FILE_BYTES + 1))
    assert f"larger than {MAX_ALIAS_FILE_BYTES} bytes" in refused(str(big))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe")
    assert "not UTF-8" in refused(str(binary))
    assert "No such file" in refused(str(tmp_path / "missing.yaml"))


def test_to_text_round_trips_the_flat_table() -> None:
    table = parse({"a": "b", "b": "m:1b"})
    again = ModelAliases.parse(table.to_text(), CHARS)
    assert {x.name: x.target for x in again} == {"a": "m:1b", "b": "m:1b"}


# --- the setting ----------------------------------------------------------------------------
def test_the_setting_keeps_the_table_so_no_file_is_needed_later(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text("gpt-4o-mini: smollm2:135m\n")
    settings = load_settings(model_aliases=str(path))
    path.unlink()  # a replica on another machine has no such file
    assert json.loads(settings.model_aliases) == {"gpt-4o-mini": "smollm2:135m"}
    again = pickle.loads(pickle.dumps(settings))
    assert again.model_alias_table().resolve("gpt-4o-mini") == "smollm2:135m"
    assert load_settings().model_aliases == ""
    assert len(load_settings().model_alias_table()) == 0


def test_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_MODEL_ALIASES", '{"gpt-4o-mini": "smollm2:135m"}')
    assert load_settings().model_alias_table().resolve("gpt-4o-mini") == "smollm2:135m"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('{"a": "b", "b": "a"}', "aliases loop: a -> b -> a"),
        ('{"a": "A"}', "alias 'a' maps to itself"),
        ("[1, 2]", "must be an object mapping each alias to a fleet model"),
        ("gpt-4o=qwen3", "neither a JSON object nor a readable alias file"),
        ('{"a": ', "not a valid JSON object"),
    ],
)
def test_a_bad_value_stops_the_start_with_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.setenv("FLEET_MODEL_ALIASES", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("invalid settings: FLEET_MODEL_ALIASES: ")
    assert reason in message and "\n" not in message


def test_names_are_bounded_by_max_model_name_chars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_MAX_MODEL_NAME_CHARS", "10")
    monkeypatch.setenv("FLEET_MODEL_ALIASES", '{"claude-sonnet-4-5": "qwen3:8b"}')
    with pytest.raises(ConfigError, match="longer than 10 characters"):
        load_settings()


# --- resolving a request ----------------------------------------------------------------------
def test_with_aliases_resolves_the_model_and_the_fallbacks() -> None:
    table = parse({"gpt-4o": "qwen3:8b", "gpt-4o-mini": "smollm2:135m", "mini": "smollm2:135m"})
    req = request("gpt-4o", fallback_models=("GPT-4o-mini", "llama3:8b", "mini", "qwen3:8b"))
    out = with_aliases(req, table)
    assert out.model == "qwen3:8b"
    # mini resolves to smollm2 again and qwen3:8b is the model itself: both dropped
    assert out.fallback_models == ("smollm2:135m", "llama3:8b")
    assert (out.request_id, out.body, out.kind) == (req.request_id, req.body, req.kind)


def test_with_aliases_leaves_other_requests_as_they_are() -> None:
    req = request("llama3:8b", fallback_models=("qwen3:8b",))
    assert with_aliases(req, parse({"gpt-4o": "qwen3:8b"})) is req
    assert with_aliases(req, ModelAliases()) is req


# --- /v1/models -------------------------------------------------------------------------------
SERVED = [
    ModelOnDisk("smollm2:135m", modified_at="2026-01-02T00:00:00Z"),
    ModelOnDisk("qwen3:8b", modified_at="2026-01-01T00:00:00Z"),
]


def test_the_model_list_names_each_alias_whose_target_is_served() -> None:
    table = parse({"gpt-4o-mini": "smollm2:135m", "ghost": "nobody:1b", "qwen3:8b": "smollm2:135m"})
    data = openai_model_list(SERVED, table)["data"]
    assert [m["id"] for m in data] == ["smollm2:135m", "qwen3:8b", "gpt-4o-mini"]
    target = next(m for m in data if m["id"] == "smollm2:135m")
    alias = next(m for m in data if m["id"] == "gpt-4o-mini")
    assert alias == {**target, "id": "gpt-4o-mini"}
    assert [m["id"] for m in openai_model_list(SERVED)["data"]] == ["smollm2:135m", "qwen3:8b"]


def test_find_a_model_or_an_alias() -> None:
    table = parse({"gpt-4o-mini": "smollm2:135m", "ghost": "nobody:1b"})
    found = find_openai_model(SERVED, "GPT-4o-mini", table)
    assert found is not None and found["id"] == "gpt-4o-mini" and found["object"] == "model"
    plain = find_openai_model(SERVED, "qwen3:8b", table)
    assert plain is not None and plain["id"] == "qwen3:8b"
    assert find_openai_model(SERVED, "ghost", table) is None
    assert find_openai_model(SERVED, "gpt-4o-mini") is None
