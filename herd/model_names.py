"""What a model name means to the fleet: Ollama's matching rule (:func:`canonical_model`),
the characters a name may use (:func:`name_problem`), and the fleet's aliases
(:class:`ModelAliases`, ``FLEET_MODEL_ALIASES``).

Pure and at the bottom of the layers (it imports nothing of herd), so the settings check
the aliases when they are loaded (a bad value stops the start with one line) and every
layer above resolves names by the same rule.

An alias is a name a client insists on (``gpt-4o-mini``, ``claude-sonnet-4-5``) mapped to
a model the fleet serves. It is matched like any model name (case-insensitive, a missing
tag is ``:latest``), it shadows a fleet model of the same name, and an alias whose target
is another alias is followed to the end when the table is built (a loop is refused), so
a request resolves in one lookup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_ALIASES = 256
"""Aliases in ``FLEET_MODEL_ALIASES``: a table of names, not a catalogue."""

MAX_ALIAS_FILE_BYTES = 256 * 1024
"""Largest alias file read (JSON or YAML)."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@+-]*")
NAME_HELP = (
    "invalid model name: use ASCII letters, digits and _ . : / - @ + "
    "(starting with a letter, digit or _)"
)


def canonical_model(name: str) -> str:
    """Ollama's matching rule: case-insensitive, a missing tag means ``latest``."""
    name = name.strip().lower()
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def name_problem(name: str, max_chars: int) -> str | None:
    """Why ``name`` is not an acceptable model name (longer than ``max_chars``, or a
    character Ollama's name parser refuses), or None when it is."""
    if len(name) > max_chars:
        return f"model name is longer than {max_chars} characters"
    if _NAME.fullmatch(name) is None:
        return NAME_HELP
    return None


@dataclass(frozen=True, slots=True)
class Alias:
    name: str  # as configured (how /v1/models lists it)
    target: str  # the fleet model it resolves to, chains followed


class ModelAliases:
    """alias -> fleet model, looked up by canonical name; empty when none are set."""

    __slots__ = ("_by_key",)

    def __init__(self, aliases: Mapping[str, str] | None = None) -> None:
        """``aliases`` must already be valid and flat (:meth:`parse` makes them so)."""
        self._by_key = {canonical_model(k): Alias(k, v) for k, v in (aliases or {}).items()}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Alias]:
        return iter(self._by_key.values())

    def get(self, name: str) -> Alias | None:
        """The alias ``name`` is, or None (also when no aliases are set: no work)."""
        return self._by_key.get(canonical_model(name)) if self._by_key else None

    def resolve(self, name: str) -> str:
        """The fleet model ``name`` stands for: its target when it is an alias, else
        ``name`` unchanged."""
        found = self.get(name)
        return name if found is None else found.target

    def to_text(self) -> str:
        """The table as a compact JSON object (what the settings keep, so a Serve replica
        on another machine needs no alias file)."""
        return json.dumps({a.name: a.target for a in self}, separators=(",", ":"))

    @classmethod
    def parse(cls, value: str, max_name_chars: int) -> ModelAliases:
        """``FLEET_MODEL_ALIASES``: a JSON object ``{"alias": "fleet model"}``, or the path
        of a JSON (``.json``) or YAML file holding one; ``""`` for none. Raises
        :class:`ValueError` saying what is wrong: not an object of strings, more than
        :data:`MAX_ALIASES`, a name Ollama would refuse or longer than
        ``max_name_chars``, an alias given twice, an alias that maps to itself or whose
        chain of aliases comes back to it."""
        value = value.strip()
        if not value:
            return cls()
        data = _json_object(value) if value[0] in "{[" else _read_file(value)
        return cls(_flatten(_pairs(data, max_name_chars)))


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"is not a valid JSON object of alias -> model ({exc})") from None


def _read_file(value: str) -> Any:
    path = Path(value).expanduser()
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_ALIAS_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(
            f"is neither a JSON object nor a readable alias file ({exc.strerror or exc})"
        ) from None
    if len(raw) > MAX_ALIAS_FILE_BYTES:
        raise ValueError(f"alias file {path} is larger than {MAX_ALIAS_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"alias file {path} is not UTF-8 text") from None
    if path.suffix.lower() == ".json":
        return _json_object(text)
    import yaml  # only for alias files

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"alias file {path} is not valid YAML ({exc})") from None


def _pairs(data: Any, max_chars: int) -> dict[str, str]:
    """The validated pairs, names trimmed, in the order given."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("must be an object mapping each alias to a fleet model")
    if len(data) > MAX_ALIASES:
        raise ValueError(f"has {len(data)} aliases; at most {MAX_ALIASES}")
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for raw_name, raw_target in data.items():
        if not isinstance(raw_name, str) or not isinstance(raw_target, str):
            raise ValueError(
                f"alias {raw_name!r}: aliases and models must be strings (quote them in YAML)"
            )
        name, target = raw_name.strip(), raw_target.strip()
        for what, text in (("alias", name), ("target", target)):
            problem = name_problem(text, max_chars)
            if problem is not None:
                raise ValueError(f"{what} {text!r}: {problem}")
        key = canonical_model(name)
        if key in seen:
            raise ValueError(
                f"alias {name!r} is given twice (as {seen[key]!r}; names match "
                "case-insensitively and a missing tag is :latest)"
            )
        if canonical_model(target) == key:
            raise ValueError(f"alias {name!r} maps to itself")
        seen[key] = name
        out[name] = target
    return out


def _flatten(pairs: dict[str, str]) -> dict[str, str]:
    """Each alias mapped to the end of its chain (``a -> b -> model``: ``a -> model``);
    a chain that comes back to a name already on it is a loop."""
    by_key = {canonical_model(k): v for k, v in pairs.items()}
    flat: dict[str, str] = {}
    for name, target in pairs.items():
        chain = [name]
        keys = {canonical_model(name)}
        while (key := canonical_model(target)) in by_key:
            if key in keys:
                raise ValueError(f"aliases loop: {' -> '.join([*chain, target])}")
            chain.append(target)
            keys.add(key)
            target = by_key[key]
        flat[name] = target
    return flat
