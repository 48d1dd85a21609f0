"""``FLEET_API_KEYS``: the inference keys, ``name:key`` pairs or a JSON object.

Read by :class:`herd.settings.Settings` (its validator and ``api_key_table``).
"""

from __future__ import annotations

import json
import re


def parse_api_keys(text: str) -> list[tuple[str, str]]:
    """``name:key,name2:key2`` or a JSON object ``{"name": "key"}`` -> (name, key) pairs.
    Names are short words (they become trace tags); keys are at least 16 characters."""
    text = text.strip()
    pairs: list[tuple[str, str]]
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError("is not a valid JSON object of name -> key") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError("must map each name to a key string")
        pairs = [(str(k).strip(), v.strip()) for k, v in data.items()]
    else:
        pairs = []
        for part in text.split(","):
            name, sep, key = part.strip().partition(":")
            if not sep:
                raise ValueError("each entry must be name:key")
            pairs.append((name.strip(), key.strip()))
    seen: set[str] = set()
    for name, key in pairs:
        if not _KEY_NAME.fullmatch(name):
            raise ValueError(f"key name {name!r} must be 1-32 letters, digits, '-', '_' or '.'")
        if len(key) < 16:
            raise ValueError(f"the key named {name!r} must be at least 16 characters")
        if key in seen:
            raise ValueError(f"the key named {name!r} is used twice")
        seen.add(key)
    return pairs


_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
