"""Pure planning of schema changes (cdc/lake/evolution.py) and the DDL history's parsing (cdc/ingest/ddl.py)."""

from __future__ import annotations

import json

import pytest
from pyiceberg.types import DecimalType, DoubleType, FloatType, IntegerType, LongType, StringType

from cdc.events.model import Column, ColumnType, Kind, TableId, TableSchema
from cdc.ingest.ddl import Alter, decode_schema_change, parse_alter
from cdc.ingest.landing import _bookkeeping
from cdc.lake import evolution as ev

INT, LONG, STR = ColumnType(Kind.INT), ColumnType(Kind.LONG), ColumnType(Kind.STRING)


def schema(*cols: tuple[str, ColumnType], key: tuple[str, ...] = ("id",), defaults: dict[str, object] | None = None) -> TableSchema:
    d = defaults or {}
    return TableSchema(tuple(Column(n, t, True, d.get(n)) for n, t in cols), key)


LAKE = {"id": IntegerType(), "a": StringType(), "n": IntegerType()}


def test_an_added_column_with_its_default() -> None:
    p = ev.plan(LAKE, ["id"], schema(("id", INT), ("a", STR), ("n", INT), ("k", INT), defaults={"k": 5}), ())
    assert [c.name for c in p.adds] == ["k"]
    assert p.adds[0].default == 5
    at = ev.Positions(9999, added=(("K", 1234), ("j", 1500)), newest=1500)
    props = _bookkeeping("base", {}, p, schema(("id", INT), ("k", INT)), at)
    assert json.loads(props[ev.COLUMN_DEFAULTS]) == {"k": {"below": "1234", "type": "int", "text": "5"}}  # the ADD's own position


def test_a_rename_keeps_the_column_and_a_missing_rename_is_a_drop() -> None:
    source = schema(("id", INT), ("b", STR), ("n", INT))
    renamed = ev.plan(LAKE, ["id"], source, [("a", "b")])
    assert renamed.renames == (("a", "b"),)
    assert not renamed.adds
    assert not renamed.drops
    dropped = ev.plan(LAKE, ["id"], source, [])
    assert dropped.drops == ("a",)
    assert [c.name for c in dropped.adds] == ["b"]


def test_renames_compose_in_order_and_ignore_case() -> None:
    assert ev.compose_renames([("a", "b"), ("B", "c")], ["a", "n"]) == {"a": "c"}


def test_keep_freezes_a_dropped_column_and_exclusion_drops_it() -> None:
    source = schema(("id", INT), ("n", INT))
    kept = ev.plan(LAKE, ["id"], source, [], dropped_columns="keep")
    assert kept.freezes == ("a",)
    assert not kept.drops
    assert ev.plan(LAKE, ["id"], source, [], dropped_columns="keep", excluded=["a"]).drops == ("a",)
    with pytest.raises(ev.Refused, match=r"\['a'\] were dropped \(kept frozen in the lake\) and added again"):
        ev.plan(LAKE, ["id"], schema(("id", INT), ("a", STR), ("n", INT)), [], frozen=["a"])
    again = ev.plan(LAKE, ["id"], source, [], dropped_columns="keep", frozen=["a"])
    assert again.empty
    props = _bookkeeping("base", {}, kept, source, ev.Positions(99, dropped=(("a", 77),), newest=80))
    assert json.loads(props[ev.FROZEN_COLUMNS]) == {"a": 77}
    assert json.loads(_bookkeeping("base", {}, kept, source, ev.Positions(99))[ev.FROZEN_COLUMNS]) == {"a": 99}


def test_widenings_evolve_and_narrower_types_fit() -> None:
    lake = {"id": IntegerType(), "f": FloatType(), "d": DecimalType(8, 2)}
    wider = schema(("id", LONG), ("f", ColumnType(Kind.DOUBLE)), ("d", ColumnType(Kind.DECIMAL, 12, 2)))
    p = ev.plan(lake, ["id"], wider, [])
    assert dict(p.widens) == {"id": LongType(), "f": DoubleType(), "d": DecimalType(12, 2)}
    assert ev.plan({"id": LongType()}, ["id"], schema(("id", INT)), []).empty


@pytest.mark.parametrize(("new", "says"), [
    (ColumnType(Kind.DECIMAL, 8, 3), "decimal(8, 2) to decimal(8, 3)"),
    (ColumnType(Kind.DECIMAL, 20, 0), "decimal(8, 2) to decimal(20, 0)"),
    (INT, "decimal(8, 2) to int"),
    (STR, "decimal(8, 2) to string"),
])
def test_a_type_change_iceberg_refuses_names_the_column_and_both_types(new: ColumnType, says: str) -> None:
    with pytest.raises(ev.Refused) as err:
        ev.plan({"id": IntegerType(), "d": DecimalType(8, 2)}, ["id"], schema(("id", INT), ("d", new)), [])
    assert "'d'" in err.value.reason
    assert says in err.value.reason


def test_a_new_key_halts_and_a_renamed_key_column_moves_the_key() -> None:
    with pytest.raises(ev.Refused, match=r"primary key changed from \(id\) to \(id, n\)"):
        ev.plan(LAKE, ["id"], schema(("id", INT), ("a", STR), ("n", INT), key=("id", "n")), [])
    p = ev.plan(LAKE, ["id"], schema(("ident", INT), ("a", STR), ("n", INT), key=("ident",)), [("id", "ident")])
    assert p.key == ("ident",)
    assert p.renames == (("id", "ident"),)


def test_policy_halt_refuses_any_change_but_not_none() -> None:
    assert ev.plan(LAKE, ["id"], schema(("id", INT), ("a", STR), ("n", INT)), [], schema_changes="halt").empty
    with pytest.raises(ev.Refused, match="schema_changes: halt"):
        ev.plan(LAKE, ["id"], schema(("id", INT), ("a", STR), ("n", INT), ("x", INT)), [], schema_changes="halt")


def test_events_older_than_a_rename_are_translated() -> None:
    log = [["100", "a", "b"], ["200", "b", "c"]]
    assert ev.translate({"id": 1, "a": "x"}, 50, log) == {"id": 1, "c": "x"}
    assert ev.translate({"id": 1, "b": "x"}, 150, log) == {"id": 1, "c": "x"}
    assert ev.translate({"id": 1, "c": "x"}, 250, log) is None


@pytest.mark.parametrize(("sql", "renames"), [
    ("ALTER TABLE t RENAME COLUMN a TO b", [("a", "b")]),
    ("alter table `db`.`t` rename column `we ird` to `b``q`", [("we ird", "b`q")]),
    ("ALTER TABLE t CHANGE COLUMN d d2 DECIMAL(10,2) NOT NULL DEFAULT '1,2'", [("d", "d2")]),
    ("ALTER TABLE t CHANGE d d BIGINT", []),
    ("ALTER TABLE t ADD COLUMN x INT, RENAME COLUMN a TO b, CHANGE IF EXISTS c e INT", [("a", "b"), ("c", "e")]),
    ("ALTER TABLE t /* RENAME COLUMN a TO b */ ADD COLUMN x INT", []),
    ("CREATE TABLE t (a INT)", []),
])
def test_renames_parsed_from_alter_table(sql: str, renames: list[tuple[str, str]]) -> None:
    assert list(parse_alter(sql).renames) == renames


def test_a_schema_change_event_names_its_table_and_position() -> None:
    value = json.dumps({"schema": {}, "payload": {
        "source": {"file": "mysql-bin.000004", "pos": 4981, "snapshot": None}, "ddl": "ALTER TABLE t RENAME COLUMN v TO w",
        "tableChanges": [{"type": "ALTER", "id": '"ddlx"."t"'}]}}).encode()
    [change] = decode_schema_change(value)
    assert change.table == TableId("ddlx", "t")
    assert change.ddl.endswith("TO w")
    assert decode_schema_change(b"not json") == []
    assert decode_schema_change(None) == []


def test_additions_and_drops_parsed_from_alter_table() -> None:
    sql = ("ALTER TABLE t ADD COLUMN k INT NOT NULL DEFAULT 5, ADD n VARCHAR(5), ADD INDEX (a), DROP COLUMN IF EXISTS x, "
           "DROP PRIMARY KEY, ADD PRIMARY KEY (id, n), ADD COLUMN (p INT, `q r` DECIMAL(10,2) DEFAULT 1)")
    assert parse_alter(sql) == Alter((), ("k", "n", "p", "q r"), ("x",))
