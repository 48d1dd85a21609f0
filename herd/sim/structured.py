"""Structured output: JSON mode, JSON-Schema-shaped values and tool calls.

Tool-call rule (deterministic, documented for tests and demos):

* Tools are only called when the request has ``tools`` and the **last** message is
  from the user (a ``tool`` result last means "answer in text", so agent loops end).
* The called tool is the first one, in declaration order, whose name appears in
  that message (case-insensitive; ``_`` and ``-`` may be written as spaces).
* Otherwise, if the message contains the word "weather", the first tool whose name
  or description mentions "weather" is called.
* Arguments follow the tool's ``parameters`` schema (every property, required or
  not). The first string property gets the message's *subject*: its last
  capitalised word that does not start a sentence ("What's the weather in
  Tokyo?" -> ``"Tokyo"``), else its last word. Other values come from the schema.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

_WORDS_TEXT = """the a of and to in is it that for on with as by at from this be are was
    model node fleet router token answer request stream memory cluster machine
    quick light steady bright calm clear small large warm cool simple careful
    river mountain forest ocean garden city window signal engine pattern system
    question reason result number value idea story detail moment process layer
    runs moves finds builds keeps reads writes sends holds turns shows gives
    often always gently quickly slowly clearly nearly simply rarely together
    because while when where after before under over between through around
"""
WORDS: tuple[str, ...] = tuple(_WORDS_TEXT.split())

_SCHEMA_STRING_WORDS = ("alpha", "blue", "sunny", "north", "river", "apple", "delta", "stone")


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, Mapping) else {}


def _schema_type(schema: Mapping[str, Any]) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if isinstance(t, str):
        return t
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def schema_value(
    schema: Mapping[str, Any], rng: random.Random, root: Mapping[str, Any] | None = None
) -> Any:
    """A value that matches ``schema`` (types, enums, required properties) well enough."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return rng.choice(enum)
    for combo in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combo)
        if isinstance(options, list) and options:
            first = next(
                (o for o in options if isinstance(o, Mapping) and o.get("type") != "null"),
                options[0],
            )
            return schema_value(first, rng, root) if isinstance(first, Mapping) else None
    kind = _schema_type(schema)
    if kind == "object":
        props = schema.get("properties")
        out: dict[str, Any] = {}
        if isinstance(props, Mapping):
            for key, sub in props.items():
                out[str(key)] = schema_value(sub, rng, root) if isinstance(sub, Mapping) else None
        required = schema.get("required")
        for key in required if isinstance(required, list) else ():
            out.setdefault(str(key), rng.choice(_SCHEMA_STRING_WORDS))
        return out
    if kind == "array":
        items = schema.get("items")
        lo = int(schema.get("minItems", 2) or 0)
        hi = schema.get("maxItems")
        n = max(lo, 2) if hi is None else min(max(lo, 2), int(hi))
        sub = items if isinstance(items, Mapping) else {"type": "string"}
        return [schema_value(sub, rng, root) for _ in range(n)]
    if kind == "integer":
        low = int(schema.get("minimum", 1))
        return rng.randint(low, int(schema.get("maximum", max(low, 1) + 99)))
    if kind == "number":
        base = float(schema.get("minimum", 0.0))
        return round(rng.uniform(base, float(schema.get("maximum", base + 100.0))), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _schema_string(schema, rng)


def _schema_string(schema: Mapping[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time":
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z"
    if fmt == "email":
        return f"{rng.choice(_SCHEMA_STRING_WORDS)}@example.com"
    text = " ".join(rng.choice(_SCHEMA_STRING_WORDS) for _ in range(rng.randint(1, 3)))
    min_len = int(schema.get("minLength", 0) or 0)
    while len(text) < min_len:
        text += " " + rng.choice(_SCHEMA_STRING_WORDS)
    max_len = schema.get("maxLength")
    return text[: int(max_len)] if isinstance(max_len, int) else text


def json_mode_value(rng: random.Random, words: Sequence[str]) -> dict[str, Any]:
    """What a model says in ``format: "json"`` mode: a small object."""
    return {"answer": " ".join(words), "confidence": round(rng.uniform(0.5, 0.99), 2)}


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.lower()).strip()


def pick_tool(tools: Sequence[Mapping[str, Any]], message: str) -> Mapping[str, Any] | None:
    """The tool the rule in the module docstring calls for ``message``, if any."""
    text = f" {_norm(message)} "
    functions = [t.get("function") for t in tools]
    valid = [f for f in functions if isinstance(f, Mapping) and isinstance(f.get("name"), str)]
    for fn in valid:
        if f" {_norm(fn['name'])} " in text or fn["name"].lower() in message.lower():
            return fn
    if re.search(r"\bweather\b", message, re.IGNORECASE):
        for fn in valid:
            blob = f"{fn['name']} {fn.get('description', '')}".lower()
            if "weather" in blob:
                return fn
    return None


def subject_of(message: str) -> str:
    """The last capitalised word that does not start a sentence, else the last word."""
    words = re.findall(r"[A-Za-z][\w'-]*|[.!?]", message)
    subject = ""
    start = True
    for word in words:
        if word in ".!?":
            start = True
            continue
        if word[0].isupper() and not start:
            subject = word
        start = False
    if subject:
        return subject
    plain = [w for w in words if w not in ".!?"]
    return plain[-1] if plain else "something"


def tool_arguments(fn: Mapping[str, Any], message: str, rng: random.Random) -> dict[str, Any]:
    params = fn.get("parameters")
    if not isinstance(params, Mapping):
        return {}
    props = params.get("properties")
    if not isinstance(props, Mapping):
        return {}
    args: dict[str, Any] = {}
    subject_used = False
    for key, sub in props.items():
        sub = sub if isinstance(sub, Mapping) else {}
        if not subject_used and _schema_type(sub) == "string" and "enum" not in sub:
            args[str(key)] = subject_of(message)
            subject_used = True
        else:
            args[str(key)] = schema_value(sub, rng, params)
    return args


def tool_call_id(rng: random.Random) -> str:
    return "call_" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(8))
