"""Tables without a key (issue 10, item 5), pure parts: the decoder keeps an update's before-image, the
changelog rows of an update, the multiset fold's SQL, the bootstrap's one-pass read, the multiset comparison."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from cdc.events.debezium import decode
from cdc.events.model import ChangeEvent, Op
from cdc.lake.writer import to_arrow
from cdc.verify import compare_multiset
from spark_jobs import multiset_sql as m
from spark_jobs.merge_sql import Default, IdentifierError
from tests.debezium_messages import COORDS, ID, field, payload, value

FIELDS = [ID, field("v", "string")]


def _decoded(op: str, **images: dict) -> ChangeEvent:
    result = decode(None, value(payload(op, **images), FIELDS), COORDS)
    assert isinstance(result, ChangeEvent), result
    return result


def test_a_keyless_insert_and_delete_decode_with_no_key() -> None:
    created = _decoded("c", after={"id": 1, "v": "a"})
    assert (created.op, created.values, created.schema.key, created.before) == (Op.CREATE, {"id": 1, "v": "a"}, (), None)
    deleted = _decoded("d", before={"id": 1, "v": "a"})
    assert (deleted.op, deleted.values, deleted.before) == (Op.DELETE, {"id": 1, "v": "a"}, None)


def test_a_keyless_update_keeps_its_before_image() -> None:
    updated = _decoded("u", before={"id": 1, "v": "a"}, after={"id": 1, "v": "b"})
    assert (updated.values, updated.before) == ({"id": 1, "v": "b"}, {"id": 1, "v": "a"})


def test_a_keyless_update_without_before_image_is_a_dead_letter() -> None:
    result = decode(None, value(payload("u", after={"id": 1, "v": "b"}), FIELDS), COORDS)
    assert not isinstance(result, ChangeEvent)
    assert "has no before-image" in result.message  # type: ignore[union-attr]


def test_a_keyed_update_carries_no_before_image() -> None:
    from tests.debezium_messages import key

    result = decode(key([ID], {"id": 1}), value(payload("u", before={"id": 1, "v": "a"}, after={"id": 1, "v": "b"}), FIELDS), COORDS)
    assert isinstance(result, ChangeEvent)
    assert result.before is None


def test_the_changelog_keeps_a_keyless_update_as_a_removal_and_an_addition() -> None:
    updated = _decoded("u", before={"id": 1, "v": "a"}, after={"id": 1, "v": "b"})
    created = _decoded("c", after={"id": 2, "v": "c"})
    target = pa.schema([("id", pa.int32()), ("v", pa.large_string()), ("_op", pa.large_string()), ("_seq", pa.decimal128(38, 0)),
                        ("_source_ts", pa.timestamp("us", tz="UTC")), ("_ingested_at", pa.timestamp("us", tz="UTC")),
                        ("_kafka_topic", pa.large_string()), ("_kafka_partition", pa.int32()), ("_kafka_offset", pa.int64())])
    rows = to_arrow([updated, created], target, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).to_pylist()
    assert [(r["_op"], r["id"], r["v"], r["_kafka_offset"]) for r in rows] == [("d", 1, "a", 42), ("u", 1, "b", 42), ("c", 2, "c", 42)]
    assert rows[0]["_seq"] == rows[1]["_seq"]


PLAN = m.MultisetPlan(("lake", "db", "t"), "_cdc_changes", ("a", "b`x"))


def test_the_slice_keeps_one_row_per_change_and_image_after_the_applied_position() -> None:
    sql = m.slice_sql(PLAN, applied=100, truncated=None)
    assert "PARTITION BY c.`_seq`, c.`_op` ORDER BY c.`_kafka_partition`, c.`_kafka_offset`" in sql
    assert "c.`_op` <> 't' AND (c.`_seq` > 100 OR (c.`_op` = 'r' AND c.`_seq` >= 100))" in sql
    assert sql.endswith("WHERE `_cdc_rank` = 1 OR `_op` = 'r'")  # snapshot reads share one position: all kept
    assert "> 250" in m.slice_sql(PLAN, applied=100, truncated=250)  # nothing before a truncate applies
    assert "_seq` >" not in m.slice_sql(PLAN, applied=None, truncated=None)


def test_the_fold_removes_one_identical_row_per_delete_nulls_equal() -> None:
    sql = m.fold_sql(PLAN, keep_base=True)
    assert "FROM `lake`.`db`.`t` UNION ALL SELECT `a`, `b``x`, `_seq`, `_source_ts` FROM `_cdc_multiset_slice` WHERE `_op` <> 'd'" in sql
    assert "r.`a` <=> d.`a` AND r.`b``x` <=> d.`b``x`" in sql  # NULL equals NULL
    assert "PARTITION BY r.`a`, r.`b``x` ORDER BY r.`_seq` DESC" in sql
    assert sql.endswith("WHERE `_cdc_rank` <= `_cdc_count` - `_cdc_removed`")
    assert "`lake`.`db`.`t`" not in m.fold_sql(PLAN, keep_base=False)  # a truncate emptied the base
    order = ["a", "_seq", "_source_ts", "b`x"]  # a column added later sits after the metadata columns
    assert m.overwrite_sql(PLAN, "_f", order) == "INSERT OVERWRITE `lake`.`db`.`t` SELECT `a`, `_seq`, `_source_ts`, `b``x` FROM `_f`"
    with pytest.raises(IdentifierError):
        m.overwrite_sql(PLAN, "_f", ["a", "_seq", "_source_ts"])


def test_identifiers_are_validated() -> None:
    with pytest.raises(IdentifierError):
        m.MultisetPlan(("lake", "db", "t"), "_cdc_changes", ("bad\x00",))
    with pytest.raises(IdentifierError):
        m.MultisetPlan(("lake", "db", "t"), "_cdc_changes", ())


def test_compare_multiset_counts_identical_rows() -> None:
    same = compare_multiset("t", [("1", None), ("1", None), ("2", "x")], [("2", "x"), ("1", None), ("1", None)])
    assert same.equal
    assert (same.source_rows, same.lake_rows) == (3, 3)
    one_short = compare_multiset("t", [("1", None), ("1", None)], [("1", None), ("3", "y")])
    assert not one_short.equal
    assert (one_short.missing_in_lake, one_short.extra_in_lake) == ([("1", None)], [("3", "y")])


def test_the_fold_gives_rows_older_than_an_added_column_its_default_and_ignores_frozen_columns() -> None:
    plan = m.MultisetPlan(("lake", "db", "t"), "_cdc_changes", ("a", "n", "gone"),
                          defaults=(Default("n", 500, "CAST(5 AS INT)"),), frozen=("gone",))
    sql = m.fold_sql(plan, keep_base=True)
    image = "`a`, CASE WHEN `_seq` < 500 THEN CAST(5 AS INT) ELSE `n` END AS `n`, `gone`"
    assert f"SELECT {image}, `_seq`, `_source_ts` FROM `lake`.`db`.`t` UNION ALL" in sql  # base rows
    assert f"(SELECT {image}, `_seq`, `_source_ts` FROM `_cdc_multiset_slice` WHERE `_op` = 'd') GROUP BY `a`, `n`" in sql
    assert "PARTITION BY r.`a`, r.`n` ORDER BY" in sql  # a frozen column no longer tells rows apart
    assert "d.`gone`" not in sql
    with pytest.raises(IdentifierError):
        m.MultisetPlan(("lake", "db", "t"), "_cdc_changes", ("gone",), frozen=("gone",))
