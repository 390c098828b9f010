"""Declared keys (`tables.<db.table>.key`): Debezium's message.key.columns and the bootstrap's key, pure."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cdc.bootstrap.keys import resolve_key
from cdc.config import Settings, TableOverride, load_settings
from cdc.connectors import debezium_config, message_key_columns
from cdc.errors import ConfigError
from cdc.events.model import TableId


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name in list(os.environ):
        if name.startswith("CDC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDC_HOME", str(tmp_path / "home"))
    return load_settings()


def _with_keys(settings: Settings, keys: dict[str, list[str]]) -> Settings:
    s = settings.model_copy(deep=True)
    for name, key in keys.items():
        s.tables[name] = TableOverride(key=key)
    return s


def _debezium_regex(entry: str) -> list[re.Pattern[str]]:
    """What Debezium does with one `table:cols` entry: a case-insensitive regex per column, `table.col`."""
    table, cols = entry.split(":")
    return [re.compile(f"{table}.{c}", re.IGNORECASE) for c in cols.split(",")]


def test_no_declared_key_leaves_the_setting_out(settings: Settings) -> None:
    assert message_key_columns(settings) == ""
    assert "message.key.columns" not in debezium_config(settings, Path("/s"))


def test_declared_keys_in_debeziums_format_in_declared_order(settings: Settings) -> None:
    s = _with_keys(settings, {"shop.log": ["b", "a"], "crm.events": ["id"]})
    value = message_key_columns(s)
    assert value == "crm\\.events:id;shop\\.log:b,a"
    assert debezium_config(s, Path("/s"))["message.key.columns"] == value


def test_regex_characters_in_names_match_only_themselves(settings: Settings) -> None:
    s = _with_keys(settings, {"a-b.t$x": ["c.d", "e+f", "g(h)"]})
    entry = message_key_columns(s)
    patterns = _debezium_regex(entry)
    assert [p.fullmatch(f"a-b.t$x.{c}") is not None for p, c in zip(patterns, ["c.d", "e+f", "g(h)"], strict=True)] == [True] * 3
    # `.` and `+` are literal: similar names do not match
    assert patterns[0].fullmatch("a-b.t$x.cXd") is None
    assert patterns[1].fullmatch("a-b.t$x.eef") is None


@pytest.mark.parametrize("bad", ["with space", "semi;colon", "co:lon"])
def test_names_debezium_cannot_carry_are_refused(settings: Settings, bad: str) -> None:
    s = _with_keys(settings, {"shop.log": [bad]})
    with pytest.raises(ConfigError, match="message.key.columns cannot name"):
        message_key_columns(s)


T = TableId("shop", "log")


def test_resolve_key_primary_key_without_declaration() -> None:
    assert resolve_key(T, ["id", "v"], ["id"], None) == ["id"]
    assert resolve_key(T, ["id", "v"], [], None) == []  # keyless: lands as a multiset


def test_resolve_key_declared_on_a_keyless_table_in_declared_order_with_source_spelling() -> None:
    assert resolve_key(T, ["Day", "host", "v"], [], ["HOST", "day"]) == ["host", "Day"]


def test_resolve_key_refuses_unknown_columns() -> None:
    with pytest.raises(ConfigError, match=r"names columns \['nope'\]"):
        resolve_key(T, ["id", "v"], [], ["id", "nope"])


def test_resolve_key_declared_must_equal_an_existing_primary_key() -> None:
    assert resolve_key(T, ["id", "v"], ["id"], ["id"]) == ["id"]
    with pytest.raises(ConfigError, match="differs from the primary key"):
        resolve_key(T, ["id", "v"], ["id"], ["v"])
    with pytest.raises(ConfigError, match="differs from the primary key"):
        resolve_key(T, ["a", "b"], ["a", "b"], ["b", "a"])


def test_a_declared_key_column_cannot_be_excluded(settings: Settings) -> None:
    s = settings.model_copy(deep=True)
    s.tables["shop.log"] = TableOverride(key=["id"], exclude_columns=["id", "ssn"])
    with pytest.raises(ConfigError, match=r"columns \['id'\] are in tables.shop.log.exclude_columns"):
        message_key_columns(s)

