"""The README's settings table is the one generated from the settings model
(``python -m herd.settings_doc``), and every setting has a description."""

from __future__ import annotations

from herd import settings_doc
from herd.node_settings import NodeSettings
from herd.settings import Settings


def test_the_readme_table_is_generated_from_the_settings() -> None:
    readme = settings_doc.README.read_text(encoding="utf-8")
    assert settings_doc.render(readme) == readme, (
        "README.md's settings table differs from herd/settings.py: run "
        "`python -m herd.settings_doc` (and write the text in the field's description)"
    )


def test_every_setting_has_a_description_and_a_row() -> None:
    table = settings_doc.table()
    for cls in (Settings, NodeSettings):
        prefix = cls.model_config["env_prefix"]
        for name, field in cls.model_fields.items():
            if name in settings_doc.NESTED:
                continue
            assert field.description, f"{prefix}{name.upper()} needs a description="
            assert f"| `{prefix}{name.upper()}` |" in table


def test_a_changed_setting_makes_the_check_fail() -> None:
    readme = settings_doc.README.read_text(encoding="utf-8")
    stale = readme.replace("| `FLEET_PORT` | `11435` |", "| `FLEET_PORT` | `8080` |")
    assert stale != readme
    fixed = settings_doc.render(stale)
    assert fixed == readme  # only the block changes, and it comes back whole
    assert settings_doc.render(fixed) == fixed


def test_defaults_are_shown_for_people() -> None:
    table = settings_doc.table()
    assert "| `FLEET_DATA_DIR` | `~/.fleet-manager` |" in table
    assert "| `FLEET_MAX_BODY_BYTES` | `67108864` (64 MiB) |" in table
    assert "| `FLEET_ADMIN_TOKEN` | unset |" in table
    assert "| `FLEET_REBALANCE` | `true` |" in table
    assert "&lt;data dir&gt;" not in table and "&lt;data dir>" in table  # not an HTML tag
