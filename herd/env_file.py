"""The env file and the check of ``FLEET_*`` names, for :func:`herd.settings.load_settings`.

``<data dir>/env`` (``~/.fleet-manager/env`` by default, as the seed keeps its state
there) holds settings in the dotenv form: one ``NAME=value`` a line, ``#`` comments and
blank lines, an optional ``export`` before the name, values optionally in single quotes
(taken as they are) or double quotes (``\\n`` and the like are escapes), ``${NAME}``
replaced by that variable of the file or the environment. It is read at every start,
before the environment, and **the environment wins**: a variable set in both is taken
from the environment (and overrides passed in code win over both). The data dir itself
comes from the environment (``FLEET_DATA_DIR``) or its default, never from the file.

Every ``FLEET_*`` name in the environment or the file that is no setting is logged at
start-up, with the closest setting by spelling (:func:`unknown_names`), so a typo is
not silently dropped. A file that holds secrets (tokens, keys, the database URL) and is
readable by other users is logged too.
"""

from __future__ import annotations

import difflib
import logging
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import AliasChoices
from pydantic_settings import BaseSettings, DotEnvSettingsSource, EnvSettingsSource

ENV_FILE_NAME = "env"
PREFIX = "FLEET_"

log = logging.getLogger("herd.settings")


def env_path(data_dir: Path) -> Path:
    return data_dir / ENV_FILE_NAME


def from_environment(cls: type[BaseSettings]) -> dict[str, Any]:
    """The field values the process environment gives ``cls``."""
    return EnvSettingsSource(cls)()


def from_file(
    cls: type[BaseSettings], path: Path, skip: Iterable[str] = (), set_here: Iterable[str] = ()
) -> dict[str, Any]:
    """The field values the env file gives ``cls``, parsed as the environment's are,
    without the fields the environment sets (``set_here``) or that are ``skip``ped."""
    if not path.is_file():
        return {}
    data = DotEnvSettingsSource(cls, env_file=path, env_file_encoding="utf-8")()
    dropped = set(skip) | set(set_here)
    return {k: v for k, v in data.items() if k in cls.model_fields and k not in dropped}


def file_names(path: Path) -> list[str]:
    """The variable names the env file sets (empty when there is none)."""
    if not path.is_file():
        return []
    return [name for name in dotenv_values(path, encoding="utf-8") if name]


def env_names(cls: type[BaseSettings], skip: Iterable[str] = ()) -> set[str]:
    """The variable names of ``cls``'s fields (upper case), aliases included."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        elif field.alias:
            names.add(field.alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def unknown_names(found: Mapping[str, str], known: set[str]) -> list[str]:
    """One message per ``FLEET_*`` name of ``found`` (name -> where it was set) that is
    not ``known``, naming the closest known one when one is close."""
    messages = []
    tails = {k[len(PREFIX) :]: k for k in known if k.startswith(PREFIX)}
    for name, where in sorted(found.items()):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known:
            continue
        where_text = f" (set in {where})" if where != "environment" else ""
        close = difflib.get_close_matches(upper[len(PREFIX) :], list(tails), n=1, cutoff=0.7)
        hint = f"; did you mean {tails[close[0]]}?" if close else " (see the README's settings)"
        messages.append(f"{name}{where_text} is not a herd setting{hint}")
    return messages


def warn_unknown(path: Path, known: set[str], environ: Mapping[str, str] | None = None) -> None:
    """Log every unknown ``FLEET_*`` name of the file and the environment, and a file
    others may read."""
    in_file = file_names(path)
    found = {name: str(path) for name in in_file}
    found.update({name: "environment" for name in (os.environ if environ is None else environ)})
    for message in unknown_names(found, known):
        log.warning(message)
    if any(name.upper() == f"{PREFIX}DATA_DIR" for name in in_file):
        log.warning("FLEET_DATA_DIR in %s is ignored: the file is read from the data dir", path)
    secrets = [n for n in in_file if _secret(n)]
    if secrets and path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "%s holds %s and is readable by other users (chmod 600 it)", path, ", ".join(secrets)
        )


def _secret(name: str) -> bool:
    upper = name.upper()
    return upper.startswith(PREFIX) and (
        "TOKEN" in upper or "KEY" in upper or upper == f"{PREFIX}DATABASE_URL"
    )
