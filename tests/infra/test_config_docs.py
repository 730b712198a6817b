"""The README's configuration table is the user's reference: it lists every key of the model,
no key that does not exist, and each key's real default."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from stacks.config import AppConfig

from .conftest import REPO

CODE = re.compile(r"^`([^`]+)`$")
# Commas outside code spans separate the cells of a row that documents several keys.
OUTSIDE_CODE_COMMA = re.compile(r",\s*(?=(?:[^`]*`[^`]*`)*[^`]*$)")


def documented_defaults(readme: str) -> dict[str, str | None]:
    """key -> the default the table shows: a code span's text, or None for plain words ("none",
    "the CLI's"), which the table uses for a setting that is unset by default.

    A row may name several keys, `snowflake_user`, `_role`, ...: a name starting with "_" extends
    the first key's prefix, and the default cell lists one default per key, in the same order.
    """
    section = readme.split("## Deploy to a real account", 1)[1].split("\n## ", 1)[0]
    step = section.split("1. **Configure**", 1)[1].split("\n2. ", 1)[0]
    rows = [line.strip() for line in step.splitlines() if line.strip().startswith("|")]
    assert rows[:2] and rows[0].replace(" ", "") == "|key|default|meaning|", rows[:2]
    table: dict[str, str | None] = {}
    for row in rows[2:]:
        keys_cell, default_cell, _meaning = (c.strip() for c in row.strip("|").split("|", 2))
        names = [CODE.match(part.strip()) for part in keys_cell.split(",")]
        assert all(names), f"key cell {keys_cell!r}: each key is one `code` span"
        keys = [m.group(1) for m in names if m]
        prefix = keys[0].rsplit("_", 1)[0]
        keys = [prefix + k if k.startswith("_") else k for k in keys]
        defaults = [part.strip() for part in OUTSIDE_CODE_COMMA.split(default_cell)]
        assert len(defaults) == len(keys), f"row {keys}: {len(keys)} keys but defaults {defaults}"
        for key, shown in zip(keys, defaults, strict=True):
            assert key not in table, f"{key!r} is listed twice"
            code = CODE.match(shown)
            assert code or "`" not in shown, f"{key}: default {shown!r} mixes code and words"
            table[key] = code.group(1) if code else None
    return table


def as_shown(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return str(value)


TABLE = documented_defaults((REPO / "README.md").read_text())


def test_the_table_lists_exactly_the_models_keys() -> None:
    model = set(AppConfig.model_fields)
    assert not model - set(TABLE), f"keys missing from the README table: {sorted(model - set(TABLE))}"
    assert not set(TABLE) - model, f"README table lists unknown keys: {sorted(set(TABLE) - model)}"


@pytest.mark.parametrize("key", list(AppConfig.model_fields))
def test_the_table_shows_the_models_default(key: str) -> None:
    field = AppConfig.model_fields[key]
    # A default computed from other settings (the zones of the region) is described in words.
    default = None if field.default_factory else as_shown(field.default)
    assert TABLE.get(key, "(not listed)") == default, (
        f"README says the default of {key!r} is {TABLE.get(key, '(not listed)')!r} (None = unset), "
        f"the model says {default!r}"
    )


def test_the_parser_reads_the_notation_the_table_uses() -> None:
    """Guards the parser itself: a prefix row, a list default and words for an unset default."""
    readme = (
        "## Deploy to a real account\n\n1. **Configure** it:\n\n"
        "   | key | default | meaning |\n   | --- | --- | --- |\n"
        "   | `snowflake_user`, `_role` | `A`, `B` | who |\n"
        '   | `snowflake_egress_cidrs`, `account` | `["0.0.0.0/0", "10.0.0.0/8"]`, the CLI\'s | x |\n'
        "\n2. **Deploy**\n"
    )
    assert documented_defaults(readme) == {
        "snowflake_user": "A",
        "snowflake_role": "B",
        "snowflake_egress_cidrs": '["0.0.0.0/0", "10.0.0.0/8"]',
        "account": None,
    }
