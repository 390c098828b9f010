"""The oracle's canonical forms and row comparison (pure)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from cdc.verify import canonical, compare_rows


@pytest.mark.parametrize(
    ("source", "lake", "kind", "source_type"),
    [
        (Decimal("12.30"), Decimal("12.30"), DecimalType(5, 2), "decimal(5,2)"),
        (Decimal("1E-30"), "0.000000000000000000000000000001", StringType(), "decimal(65,30)"),
        (18446744073709551615, Decimal("18446744073709551615"), DecimalType(20, 0), "bigint(20) unsigned"),
        (dt.timedelta(hours=-838, minutes=-59, seconds=-59), -3020399000000, LongType(), "time"),
        (dt.timedelta(days=1, microseconds=1), 86400000001, LongType(), "time(6)"),
        (dt.datetime(2025, 3, 30, 1, 0), dt.datetime(2025, 3, 30, 1, 0, tzinfo=dt.UTC), TimestamptzType(), "timestamp"),
        (dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), TimestampType(), "datetime(6)"),
        (dt.date(1000, 1, 1), dt.date(1000, 1, 1), DateType(), "date"),
        (1, True, BooleanType(), "tinyint(1)"),
        (0, False, BooleanType(), "bit(1)"),
        (513, 513, LongType(), "bit(10)"),  # BIT(n>1) is the number `b+0`
        (935, 935, LongType(), "bit(12)"),
        (2**64 - 1, Decimal("18446744073709551615"), DecimalType(20, 0), "bit(64)"),
        (-1, -1, IntegerType(), "tinyint(1)"),  # TINYINT(1) keeps its exact value
        ({"blue", "red"}, "red,blue", StringType(), "set('red','green','blue')"),
        (set(), "", StringType(), "set('red','green','blue')"),
        (0.1, 0.10000000149011612, FloatType(), "float"),
        (1.7976931348623157e308, 1.7976931348623157e308, DoubleType(), "double"),
        (bytearray(b"\x00\xff"), b"\x00\xff", BinaryType(), "varbinary(16)"),
        ("h😀", "h😀", StringType(), "varchar(20)"),
    ],
)
def test_both_sides_meet_in_one_canonical_form(source: object, lake: object, kind: object, source_type: str) -> None:
    assert canonical(source, kind, source_type) == canonical(lake, kind, source_type)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b", "kind"),
    [
        (Decimal("12.30"), Decimal("12.3"), DecimalType(5, 2)),  # the scale is part of the value
        (dt.datetime(2025, 3, 30, 1, 0), dt.datetime(2025, 3, 30, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), TimestamptzType()),
        (0.1, 0.2, FloatType()),
        (b"\x00", b"", BinaryType()),
        ("blue,red", "red,blue", StringType()),  # SET members keep their order: a wrong one is caught
    ],
)
def test_different_values_stay_different(a: object, b: object, kind: object) -> None:
    assert canonical(a, kind) != canonical(b, kind)  # type: ignore[arg-type]


def test_a_driver_set_takes_the_definition_order() -> None:
    assert canonical({"c", "a"}, StringType(), "set('a','b','c')") == "a,c"
    assert canonical({"it's", "x"}, StringType(), "set('x','it''s')") == "x,it's"


def test_null_is_null() -> None:
    assert canonical(None, StringType()) is None


def test_compare_rows_reports_each_kind_of_difference() -> None:
    names = ("k", "v")
    source = [("1", "a"), ("2", "b"), ("3", "c")]
    lake = [("1", "a"), ("2", "B"), ("4", "d"), ("4", "d")]
    result = compare_rows("db.t", names, ("k",), source, lake)
    assert not result.equal
    assert result.missing_in_lake == [("3", "c")]
    assert result.extra_in_lake == [("4", "d")]
    assert result.different == [(("2", "b"), ("2", "B"))]
    assert result.duplicate_keys == 1
    assert (result.source_rows, result.lake_rows) == (3, 4)


def test_compare_rows_equal_on_composite_keys() -> None:
    rows = [("1", "x", "v"), ("1", "y", "w")]
    assert compare_rows("db.t", ("a", "b", "v"), ("a", "b"), rows, list(reversed(rows))).equal
