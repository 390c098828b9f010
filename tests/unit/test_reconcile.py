"""Reconciliation's pure parts: the checksum SQL builders (as text, and the DuckDB side run in-process), the
drill-down comparisons, and the as-of-S fold (run by DuckDB over tables built here). The MariaDB side of the
canonical texts is proven equal to DuckDB's in tests/e2e/test_reconcile.py (every type of the zoo)."""

from __future__ import annotations

import struct
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from pyiceberg.types import FloatType, IntegerType, LongType, StringType, TimestamptzType

from cdc.bootstrap.source_schema import SourceColumn
from cdc.quality import asof, checksum_sql as cs
from cdc.quality.drill import Row, add, compare_keyed, compare_multiset, differing


def _col(name: str, data_type: str, column_type: str, nullable: bool = True) -> SourceColumn:
    return SourceColumn(name, data_type, column_type, nullable)


def _duck(expr: str, **columns: pa.Array) -> list[Any]:
    con = duckdb.connect()
    con.register("t", pa.table(columns) if columns else pa.table({"_": [0]}))
    return [r[0] for r in con.execute(f"SELECT {expr} FROM t").fetchall()]  # noqa: S608 - test


# ---- builders as text -------------------------------------------------------------------------


def test_source_text_per_family() -> None:
    assert cs.source_text(cs.Compared("n", cs.Family.INT, _col("n", "int", "int(11)"))) == "CAST(`n` AS CHAR)"
    assert cs.source_text(cs.Compared("b", cs.Family.INT, _col("b", "bit", "bit(10)"))) == "CAST(CAST(`b` AS UNSIGNED) AS CHAR)"
    assert cs.source_text(cs.Compared("x", cs.Family.BINARY, _col("x", "blob", "blob"))) == "LOWER(HEX(`x`))"
    assert cs.source_text(cs.Compared("s", cs.Family.TEXT, _col("s", "set", "set('a','b')"))) == "CONVERT(CAST(`s` AS CHAR) USING utf8mb4)"
    assert cs.source_text(cs.Compared("t", cs.Family.TIME, _col("t", "time", "time(6)"))) == \
        "CAST(CAST(TIME_TO_SEC(`t`) * 1000000 AS SIGNED) AS CHAR)"
    # a TIMESTAMP's zero date reads NULL, as in the lake; a NOT NULL DATE's zero date is select_expr's substitute
    ts = cs.source_text(cs.Compared("ts", cs.Family.TIMESTAMP, _col("ts", "timestamp", "timestamp(6)", nullable=False)))
    assert ts.startswith("(CASE WHEN (YEAR(`ts`) = 0")
    assert "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', `ts`)" in ts
    day = cs.source_text(cs.Compared("d", cs.Family.DATE, _col("d", "date", "date", nullable=False)))
    assert day.startswith("CAST(DATEDIFF(CASE WHEN (YEAR(`d`) = 0")
    assert "CAST('1970-01-01' AS DATE)" in day
    odd = cs.source_text(cs.Compared("we`ird", cs.Family.INT, _col("we`ird", "int", "int")))
    assert odd == "CAST(`we``ird` AS CHAR)"


def test_lake_text_and_family() -> None:
    assert cs.lake_text(cs.Compared('a"b', cs.Family.INT, _col('a"b', "int", "int"))) == 'CAST("a""b" AS VARCHAR)'
    assert cs.family(LongType(), _col("t", "time", "time")) is cs.Family.TIME
    assert cs.family(IntegerType(), _col("y", "year", "year(4)")) is cs.Family.INT
    assert cs.family(FloatType(), _col("f", "float", "float")) is cs.Family.FLOAT
    assert cs.family(TimestamptzType(), _col("ts", "timestamp", "timestamp")) is cs.Family.TIMESTAMP
    assert cs.family(StringType(), _col("d", "decimal", "decimal(65,30)")) is cs.Family.TEXT


def test_statements_quote_and_bucket() -> None:
    columns = [cs.Compared("id", cs.Family.INT, _col("id", "int", "int")),
               cs.Compared("v", cs.Family.TEXT, _col("v", "varchar", "varchar(9)"))]
    h = cs.source_hashing(columns, ["id"], 100)
    sql = cs.source_buckets_sql(cs.source_table("d`b", "t"), h)
    assert sql.startswith("SELECT (CAST(CONV(SUBSTR(MD5(CONVERT(")
    assert "% 100) AS b, COUNT(*), SUM(" in sql
    assert sql.endswith("FROM `d``b`.`t` GROUP BY b")
    cells = cs.source_cells_sql("`d`.`t`", h, [3, 7])
    assert "* 256 +" in cells
    assert cells.endswith(f"WHERE (CAST(CONV(SUBSTR(MD5({h.key_text}), 1, 8), 16, 10) AS UNSIGNED) % 100) IN (3, 7) "
                          "GROUP BY c")
    keyless = cs.source_hashing(columns, [], 4)
    assert keyless.key_text is None
    assert "SUBSTR(MD5(" in keyless.bucket
    assert ", 17, 8)" in keyless.bucket
    assert cs.bucket_count(0) == 1
    assert cs.bucket_count(2_000_000) == 100
    assert cs.bucket_count(10**12) == 4096


# ---- the DuckDB side computes what the rules say ------------------------------------------------


def _python_float_text(x: float) -> str:
    """The canonical float text from Python's shortest repr, the rule `float_text` implements in SQL."""
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    stripped = digits.lstrip("0")
    power = len(whole) - (len(digits) - len(stripped)) + (int(exp) if exp else 0)
    return f"{sign}{stripped.rstrip('0')}e{power}"


EDGE_DOUBLES = [0.1, 1e15, 1e16, 1.2345678901234568e17, 1e-5, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324,
                2.2250738585072014e-308, 2.36, 100000.0, 1e21, 1e22, 0.0, -0.0, 0.30000000000000004, 9007199254740992.0,
                -3.4028234663852886e38, 123456.7]


def test_float_text_in_duckdb_matches_the_rule() -> None:
    expr = cs.float_text('CAST("x" AS VARCHAR)', cs.DUCK)
    assert _duck(expr, x=pa.array(EDGE_DOUBLES, pa.float64())) == [_python_float_text(x) for x in EDGE_DOUBLES]
    singles = [struct.unpack("f", struct.pack("f", x))[0] for x in (0.1, 2.36, 3.4e38, 1e-45, 16777217.0)]
    lake = cs.lake_text(cs.Compared("x", cs.Family.FLOAT, _col("x", "float", "float")))
    assert _duck(lake, x=pa.array(singles, pa.float32())) == [_python_float_text(x) for x in singles]
    assert _duck(expr, x=pa.array([None], pa.float64())) == [None]


def test_encoded_text_is_unambiguous_and_equals_the_python_form() -> None:
    values: list[list[str | None]] = [["a", None], [None, "a"], ["", "-"], ["😀ü", "1:x"], ["", ""]]
    texts = ["CAST(a AS VARCHAR)", "CAST(b AS VARCHAR)"]
    got = _duck(cs.encoded(texts, cs.DUCK), a=pa.array([v[0] for v in values], pa.string()),
                b=pa.array([v[1] for v in values], pa.string()))
    assert got == [cs.encode_texts(v) for v in values]
    assert len(set(got)) == len(got)
    assert cs.encode_texts(["😀ü", None]) == "6:😀ü-"


# ---- drill-down --------------------------------------------------------------------------------


def test_bucket_aggregates_add_subtract_and_differ() -> None:
    agg = add({}, [(1, 2, 10), (2, 1, 5)])
    agg = add(agg, [(2, 1, 5)], -1)
    assert agg == {1: (2, 10)}
    assert differing({1: (2, 10), 3: (1, 1)}, {1: (2, 11), 4: (1, 1)}) == [1, 3, 4]


def test_compare_keyed_names_each_kind_and_skips_not_evaluable() -> None:
    names, key = ["id", "v"], ["id"]
    src = [Row("k1", 1, ("1", "a"), (1,)), Row("k2", 2, ("2", "b"), (2,)), Row("k4", 4, ("4", "d"), (4,))]
    lake = [Row("k1", 1, ("1", "a"), (1,)), Row("k2", 9, ("2", "B"), (2,)), Row("k3", 3, ("3", "c"), (3,)),
            Row("k4", 5, ("4", "x"), (4,))]
    diffs, skipped = compare_keyed(names, key, src, lake, skip={"k4"})
    assert skipped == 1
    assert sorted((d.kind, d.key["id"], tuple(d.columns)) for d in diffs) == [("different", "2", ("v",)), ("extra", "3", ())]
    doubled, _ = compare_keyed(names, key, src[:1], [lake[0], lake[0]], set())
    assert [d.kind for d in doubled] == ["extra"]


def test_compare_multiset_counts_copies() -> None:
    row = Row("h1", 1, ("x",), ())
    other = Row("h2", 2, ("y",), ())
    diffs = compare_multiset(["v"], [row, row, other], [row, other, other])
    assert sorted((d.kind, d.key["v"]) for d in diffs) == [("extra", "y"), ("missing", "x")]


# ---- the fold as of S ----------------------------------------------------------------------------

S = 100


def _changes(rows: list[tuple[int, str | None, str, int]]) -> pa.Table:
    return pa.table({"id": pa.array([r[0] for r in rows], pa.int32()), "v": pa.array([r[1] for r in rows], pa.string()),
                     "_op": pa.array([r[2] for r in rows], pa.string()),
                     "_seq": pa.array([Decimal(r[3]) for r in rows], pa.decimal128(38, 0)),
                     "_kafka_partition": pa.array([0] * len(rows), pa.int32()),
                     "_kafka_offset": pa.array(list(range(len(rows))), pa.int64())})


def _rows(rows: list[tuple[int, str | None, int]]) -> pa.Table:
    return pa.table({"id": pa.array([r[0] for r in rows], pa.int32()), "v": pa.array([r[1] for r in rows], pa.string()),
                     "_seq": pa.array([Decimal(r[2]) for r in rows], pa.decimal128(38, 0))})


@pytest.fixture
def folded() -> tuple[dict[int, str | None], set[str]]:
    base = _rows([(1, "b1", 10), (2, "b2", 10), (3, "b3", 10), (6, "new6", 120), (7, "new7", 130), (8, "new8", 140),
                  (9, "b9", 10)])
    unmerged = _changes([
        (1, "u1", "u", 20),  # before S, newer than the base row: applies
        (2, "late2", "u", 150),  # at or after S: ignored
        (3, None, "d", 30),  # a delete before S
        (4, "old4", "c", 40),  # older than the key's tombstone: ignored
        (5, "u5", "c", 60),  # a new key before S
        (9, "older9", "u", 5),  # older than the base row: ignored
    ])
    history = _changes([(6, "v6", "u", 70), (6, "new6", "u", 120), (7, "new7", "c", 130), (8, "new8", "u", 140)])
    tombs = pa.table({"id": pa.array([4], pa.int32()), "_seq": pa.array([Decimal(50)], pa.decimal128(38, 0))})
    late = base.filter(pa.compute.greater_equal(base.column("_seq"), pa.scalar(Decimal(S), pa.decimal128(38, 0)))).select(["id"])
    con = duckdb.connect()
    key_text = cs.encoded([cs.lake_text(cs.Compared("id", cs.Family.INT, _col("id", "int", "int")))], cs.DUCK)
    for name, table in ((asof.UNMERGED, unmerged), (asof.LATE, late), (asof.TOMBS, tombs), (asof.HISTORY, history)):
        con.register(name, table)
    touched = {r[0] for r in con.execute(asof.touched_keys_sql(key_text, S, None)).fetchall()}
    assert touched == {cs.encode_texts([str(k)]) for k in (1, 3, 4, 5, 6, 7, 8, 9)}
    con.register(asof.TOUCHED_BASE, base)
    rows_sql, unknown_sql = asof.fold_sql(["id", "v"], key_text, S, None, 0)
    state = {int(r[0]): r[1] for r in con.execute(rows_sql).fetchall()}
    unknown = {str(r[0]) for r in con.execute(unknown_sql).fetchall()}
    return state, unknown


def test_fold_applies_unmerged_changes_before_s_like_the_merge(folded: tuple[dict[int, str | None], set[str]]) -> None:
    state, _ = folded
    assert state[1] == "u1"
    assert state[2] == "b2"
    assert 3 not in state
    assert 4 not in state
    assert state[5] == "u5"
    assert state[9] == "b9"


def test_fold_evaluates_keys_merged_after_s_from_the_changelog(folded: tuple[dict[int, str | None], set[str]]) -> None:
    state, unknown = folded
    assert state[6] == "v6"  # its newest change before S
    assert 7 not in state  # inserted after S: absent at S
    assert 8 not in state
    assert unknown == {cs.encode_texts(["8"])}


def test_fold_truncate_floor_hides_older_rows() -> None:
    con = duckdb.connect()
    key_text = cs.encoded([cs.lake_text(cs.Compared("id", cs.Family.INT, _col("id", "int", "int")))], cs.DUCK)
    con.register(asof.UNMERGED, _changes([(1, "after", "u", 60), (2, "before", "u", 20)]))
    con.register(asof.LATE, pa.table({"id": pa.array([], pa.int32())}))
    con.register(asof.TOMBS, pa.table({"id": pa.array([], pa.int32()), "_seq": pa.array([], pa.decimal128(38, 0))}))
    con.register(asof.HISTORY, _changes([]))
    con.register(asof.TOUCHED_BASE, _rows([(1, "b1", 10), (2, "b2", 10)]))
    rows_sql, _ = asof.fold_sql(["id", "v"], key_text, S, 50, None)
    assert {int(r[0]): r[1] for r in con.execute(rows_sql).fetchall()} == {1: "after"}
