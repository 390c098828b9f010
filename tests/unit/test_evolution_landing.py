"""Schema changes through the real Lander on a temporary lake: the cases a hostile review found.

The DDL history is an in-memory list here (the Kafka topic reader is exercised end to end in
tests/e2e/test_schema_changes.py); everything else is the product's code.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cdc.config import load_settings
from cdc.events.debezium import decode
from cdc.events.model import ChangeEvent, KafkaCoordinates, TableId
from cdc.events.position import STREAM, BinlogPosition, binlog_file_index
from cdc.ingest import ddl
from cdc.ingest.batch import Batch
from cdc.ingest.landing import Lander
from cdc.lake import catalog as lake, evolution as ev
from tests.debezium_messages import envelope, field, key, payload, source, value_schema

DB, TABLE = "rv", "t"
TOPIC = f"cdc.{DB}.{TABLE}"
T = TableId(DB, TABLE)
ID = field("id", "int32", optional=False)


def seq(pos: int) -> int:
    return BinlogPosition(STREAM, binlog_file_index("mysql-bin.000001"), pos, 0).pack()


class History:
    """The schema-change topic as a list (what `ddl.DdlHistory` reads from Kafka)."""

    def __init__(self) -> None:
        self.items: list[ddl.SchemaChange] = []

    def alter(self, pos: int, sql: str) -> None:
        self.items.append(ddl.SchemaChange(T, seq(pos), sql))

    def changes(self, table: TableId, after: int, upto: int, refresh: bool = True) -> list[ddl.SchemaChange]:
        return sorted((c for c in self.items if c.table == table and after < c.seq <= upto), key=lambda c: c.seq)

    def close(self) -> None:
        pass


class Lake:
    def __init__(self, tmp_path: Path, **table: Any) -> None:
        self.settings = load_settings(home=tmp_path, ingest={"buckets": 2}, tables={str(T): table} if table else {})
        self.catalog = lake.open_catalog(self.settings)
        self.history = History()
        self.lander = Lander(self.settings, self.catalog, ddl_history=self.history)  # type: ignore[arg-type]
        self.offset = 0

    def land(self, fields: list[dict[str, Any]], *rows: tuple[int, int, dict[str, Any]]) -> Any:
        b = Batch()
        for pos, ident, after in rows:
            k = key([ID], {"id": ident})
            v = envelope(value_schema([ID, *fields], DB, TABLE), payload("c", src=source(pos=pos, db=DB, table=TABLE),
                                                                          after={"id": ident, **after}))
            e = decode(k, v, KafkaCoordinates(TOPIC, 0, self.offset))
            assert isinstance(e, ChangeEvent), e
            b.add(e, (k, v, ()), time.monotonic())
            self.offset += 1
        return self.lander.land(b)

    def columns(self, kind: str = "changelog") -> list[str]:
        ident = lake.changelog_name(T) if kind == "changelog" else lake.base_name(T)
        return [f.name for f in self.catalog.load_table(ident).schema().fields if not f.name.startswith("_")]

    def rows(self) -> dict[int, dict[str, Any]]:
        got = self.catalog.load_table(lake.changelog_name(T)).scan().to_arrow().to_pylist()
        return {r["id"]: {k: v for k, v in r.items() if not k.startswith("_")} for r in got}


def test_renamed_back_in_one_process(tmp_path: Path) -> None:
    lk = Lake(tmp_path)
    a, b = [field("a", "int32")], [field("b", "int32")]
    lk.land(a, (1000, 1, {"a": 10}))
    lk.history.alter(2000, "ALTER TABLE t RENAME COLUMN a TO b")
    lk.land(b, (2100, 2, {"b": 20}))
    lk.history.alter(3000, "ALTER TABLE t RENAME COLUMN b TO a")
    out = lk.land(a, (3100, 3, {"a": 30}))
    assert not out.halted
    assert lk.columns() == ["id", "a"]
    assert lk.rows()[3]["a"] == 30
    assert lk.rows()[1]["a"] == 10  # same field id all along


def test_added_then_dropped_in_one_process_leaves_no_ghost(tmp_path: Path) -> None:
    lk = Lake(tmp_path)
    v, vx = [field("v", "int32")], [field("v", "int32"), field("x", "int32")]
    lk.land(v, (1000, 1, {"v": 1}))
    lk.history.alter(2000, "ALTER TABLE t ADD COLUMN x INT")
    lk.land(vx, (2100, 2, {"v": 2, "x": 7}))
    lk.history.alter(3000, "ALTER TABLE t DROP COLUMN x")
    lk.land(v, (3100, 3, {"v": 3}))
    assert lk.columns("base") == ["id", "v"]
    assert lk.columns() == ["id", "v"]


def test_a_swap_of_two_columns_trades_their_values(tmp_path: Path) -> None:
    lk = Lake(tmp_path)
    ab = [field("a", "int32"), field("b", "int32")]
    lk.land(ab, (1000, 1, {"a": 1, "b": 2}))
    lk.history.alter(2000, "ALTER TABLE t CHANGE a tmp INT, CHANGE b a INT, CHANGE tmp b INT")
    lk.land(ab, (2100, 2, {"a": 20, "b": 10}), (900, 3, {"a": 5, "b": 6}))  # a late event from before the swap too
    rows = lk.rows()
    assert rows[1] == {"id": 1, "a": 2, "b": 1}  # the older row's values moved with their columns
    assert rows[2] == {"id": 2, "a": 20, "b": 10}
    assert rows[3] == {"id": 3, "a": 6, "b": 5}  # translated under the new names


def test_a_column_dropped_and_added_again_is_new(tmp_path: Path) -> None:
    lk = Lake(tmp_path)
    a = [field("a", "int32")]
    lk.land(a, (1000, 1, {"a": 10}))
    lk.history.alter(2000, "ALTER TABLE t DROP COLUMN a, ADD COLUMN a INT NOT NULL DEFAULT 0")
    lk.land([{**field("a", "int32", optional=False), "default": 0}], (2100, 2, {"a": 3}))
    assert lk.rows()[1]["a"] is None  # the old value is gone with the old column (a new field id)
    defaults = json.loads(lk.catalog.load_table(lake.base_name(T)).properties[ev.COLUMN_DEFAULTS])
    assert defaults == {"a": {"below": str(seq(2000)), "type": "int", "text": "0"}}  # the merge gives older rows 0


def test_an_event_between_two_renames_is_translated(tmp_path: Path) -> None:
    lk = Lake(tmp_path)
    lk.land([field("a", "int32")], (1000, 1, {"a": 1}))
    lk.history.alter(2000, "ALTER TABLE t RENAME COLUMN a TO t")
    lk.history.alter(3000, "ALTER TABLE t RENAME COLUMN t TO b")
    lk.land([field("b", "int32")], (3100, 2, {"b": 2}))  # the lake goes a -> b at once
    lk.land([field("t", "int32")], (2500, 3, {"t": 3}))  # late: written between the two renames
    assert lk.rows()[3]["b"] == 3


def test_a_rename_then_an_add_of_the_old_name_needs_the_history(tmp_path: Path) -> None:
    lk = Lake(tmp_path)
    lk.lander.ddl_wait_seconds = 0.1
    lk.land([field("a", "int32")], (1000, 1, {"a": 1}))
    out = lk.land([field("a", "int32"), field("b", "int32")], (2100, 2, {"a": 0, "b": 2}))
    assert T in out.halted  # b appeared: without its ALTER, a rename and an add look the same
    assert "no schema-change event says how" in out.halted[T].reason


@pytest.mark.parametrize(("sql", "says"), [
    ("ALTER TABLE t ADD COLUMN c TIMESTAMP DEFAULT CURRENT_TIMESTAMP", "not a constant"),
    ("ALTER TABLE t ADD COLUMN c INT DEFAULT 5, ALTER COLUMN c SET DEFAULT 7", "redefined after its ADD COLUMN"),
])
def test_an_addition_whose_backfill_is_unknown_halts(tmp_path: Path, sql: str, says: str) -> None:
    lk = Lake(tmp_path)
    lk.land([field("a", "int32")], (1000, 1, {"a": 1}))
    if "SET DEFAULT" in sql:
        lk.history.alter(2000, "ALTER TABLE t ADD COLUMN c INT DEFAULT 5")
        lk.history.alter(2050, "ALTER TABLE t ALTER COLUMN c SET DEFAULT 7")
    else:
        lk.history.alter(2000, sql)
    out = lk.land([field("a", "int32"), field("c", "int32")], (2100, 2, {"a": 2, "c": 1}))
    assert says in out.halted[T].reason


def test_a_schema_neutral_alter_moves_the_schema_position(tmp_path: Path) -> None:
    lk = Lake(tmp_path)
    lk.land([field("a", "int32")], (1000, 1, {"a": 1}))
    lk.history.alter(2000, "ALTER TABLE t ADD INDEX (a)")
    lk.land([field("a", "int32")], (2100, 2, {"a": 2}))
    assert lk.catalog.load_table(lake.changelog_name(T)).properties[ev.SCHEMA_SEQ] == str(seq(2000))


@pytest.mark.parametrize(("sql", "renames", "added", "dropped"), [
    ("ALTER TABLE t WAIT 5 DROP COLUMN a", (), (), ("a",)),
    ("ALTER TABLE t NOWAIT CHANGE a b INT", (("a", "b"),), (), ()),
    ("alter table t add x int first", (), ("x",), ()),
    ("ALTER TABLE `my.db`.`t``x` CHANGE `a.b` `c` INT", (("a.b", "c"),), (), ()),
    ("ALTER TABLE t ADD COLUMN x VARCHAR(5) DEFAULT 'it''s, (x' , DROP y", (), ("x",), ("y",)),
])
def test_alter_table_forms(sql: str, renames: tuple[Any, ...], added: tuple[str, ...], dropped: tuple[str, ...]) -> None:
    got = ddl.parse_alter(sql)
    assert (got.renames, got.added, got.dropped) == (renames, added, dropped)
