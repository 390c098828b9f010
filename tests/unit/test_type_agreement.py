"""One type table, two paths: for every MariaDB source type, the streaming mapping (a Connect field as
Debezium writes it with the propagated source type) and the bootstrap mapping (information_schema
DATA_TYPE/COLUMN_TYPE and the value the driver returns for the bootstrap's SELECT) give the same lake
type and the same Python value. Issue 10, items 3 and 5."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from cdc.bootstrap.snapshot import _converter, select_expr
from cdc.bootstrap.source_schema import SourceColumn, column_type, zero_date_substitute
from cdc.errors import ConfigError, DecodeError
from cdc.events.booleans import as_booleans
from cdc.events.connect_types import field_column
from cdc.events.debezium import decode
from cdc.events.model import ChangeEvent, ColumnType, Kind
from cdc.events.source_types import SourceType, from_debezium, from_information_schema, lake_type
from tests.debezium_messages import COORDS, ID, field, key, payload, source_field, value

DECIMAL = "org.apache.kafka.connect.data.Decimal"


def dec(name: str, precision: int, scale: int, source_type: str) -> dict:
    params = {"scale": str(scale), "connect.decimal.precision": str(precision)}
    return source_field(name, "bytes", source_type, length=precision, scale=scale if scale else None, parameters=params,
                        semantic=DECIMAL, version=1)


# (id, Connect field, JSON value, DATA_TYPE, COLUMN_TYPE, value the driver returns for select_expr, lake type, value)
CASES: list[tuple[str, dict, Any, str, str, Any, ColumnType, Any]] = [
    ("tinyint1-minus-one", source_field("x", "int16", "TINYINT", length=1), -1, "tinyint", "tinyint(1)", -1,
     ColumnType(Kind.INT), -1),
    ("tinyint1-max", source_field("x", "int16", "TINYINT", length=1), 127, "tinyint", "tinyint(1)", 127, ColumnType(Kind.INT), 127),
    ("tinyint1-min", source_field("x", "int16", "TINYINT", length=1), -128, "tinyint", "tinyint(1)", -128,
     ColumnType(Kind.INT), -128),
    ("tinyint1-unsigned", source_field("x", "int16", "TINYINT UNSIGNED", length=1), 255, "tinyint", "tinyint(1) unsigned", 255,
     ColumnType(Kind.INT), 255),
    ("tinyint", source_field("x", "int16", "TINYINT"), -128, "tinyint", "tinyint(4)", -128, ColumnType(Kind.INT), -128),
    ("smallint-unsigned", source_field("x", "int32", "SMALLINT UNSIGNED"), 65535, "smallint", "smallint(5) unsigned", 65535,
     ColumnType(Kind.INT), 65535),
    ("mediumint-unsigned", source_field("x", "int32", "MEDIUMINT UNSIGNED"), 16777215, "mediumint", "mediumint(8) unsigned",
     16777215, ColumnType(Kind.INT), 16777215),
    ("int", source_field("x", "int32", "INT"), -2147483648, "int", "int(11)", -2147483648, ColumnType(Kind.INT), -2147483648),
    # a snapshot's DDL: Debezium declares INT UNSIGNED as int64
    ("int-unsigned", source_field("x", "int64", "INT UNSIGNED"), 4294967295, "int", "int(10) unsigned", 4294967295,
     ColumnType(Kind.LONG), 4294967295),
    # DDL seen while streaming: int32, and 4294967295 arrives as -1
    ("integer11-unsigned-streamed", source_field("x", "int32", "INTEGER UNSIGNED", length=11), -1, "int", "int(11) unsigned",
     4294967295, ColumnType(Kind.LONG), 4294967295),
    ("bigint", source_field("x", "int64", "BIGINT"), -(2**63), "bigint", "bigint(20)", -(2**63), ColumnType(Kind.LONG), -(2**63)),
    ("bigint-unsigned", dec("x", 20, 0, "BIGINT UNSIGNED"), "AP//////////", "bigint", "bigint(20) unsigned", 2**64 - 1,
     ColumnType(Kind.DECIMAL, 20, 0), Decimal(2**64 - 1)),
    ("decimal", dec("x", 5, 2, "DECIMAL"), "/w==", "decimal", "decimal(5,2)", Decimal("-0.01"), ColumnType(Kind.DECIMAL, 5, 2),
     Decimal("-0.01")),
    ("decimal-65-30", dec("x", 65, 30, "DECIMAL"), "AQ==", "decimal", "decimal(65,30)", Decimal("1E-30"),
     ColumnType(Kind.BIG_DECIMAL, 65, 30), "0.000000000000000000000000000001"),
    ("float", source_field("x", "float", "FLOAT"), 1.5, "float", "float", 1.5, ColumnType(Kind.FLOAT), 1.5),
    ("double", source_field("x", "double", "DOUBLE"), 0.1, "double", "double", 0.1, ColumnType(Kind.DOUBLE), 0.1),
    # REAL is DOUBLE in MariaDB; Debezium declares a streamed REAL as float32, but the JSON number is the double
    ("real-streamed", source_field("x", "float", "REAL"), 2.36, "double", "double", 2.36, ColumnType(Kind.DOUBLE), 2.36),
    ("double-precision", source_field("x", "double", "DOUBLE PRECISION"), 2.36, "double", "double", 2.36,
     ColumnType(Kind.DOUBLE), 2.36),
    ("bit1", source_field("x", "boolean", "BIT", length=1), True, "bit", "bit(1)", 1, ColumnType(Kind.BOOLEAN), True),
    # BIT(12) b'001110100111' = 935: Debezium sends little-endian bytes a7 03
    ("bit12", source_field("x", "bytes", "BIT", length=12, parameters={"length": "12"}, semantic="io.debezium.data.Bits",
                           version=1), "pwM=", "bit", "bit(12)", 935, ColumnType(Kind.LONG), 935),
    ("bit64", source_field("x", "bytes", "BIT", length=64, parameters={"length": "64"}, semantic="io.debezium.data.Bits",
                           version=1), "//////////8=", "bit", "bit(64)", 2**64 - 1, ColumnType(Kind.DECIMAL, 20, 0),
     Decimal(2**64 - 1)),
    # a column created as BOOLEAN while streaming arrives as a Connect boolean (Debezium made -1 true: lossy)
    ("boolean-keyword-streamed", source_field("x", "boolean", "BOOLEAN"), True, "tinyint", "tinyint(1)", 1,
     ColumnType(Kind.INT), 1),
    ("varchar", source_field("x", "string", "VARCHAR", length=5), "h😀", "varchar", "varchar(5)", "h😀",
     ColumnType(Kind.STRING), "h😀"),
    ("enum", source_field("x", "string", "ENUM", length=1, parameters={"allowed": "p,q"}, semantic="io.debezium.data.Enum",
                          version=1), "q", "enum", "enum('p','q')", "q", ColumnType(Kind.STRING), "q"),
    # SET members in definition order on both paths (the binlog's order; CAST(x AS CHAR) in the bootstrap)
    ("set", source_field("x", "string", "SET", length=5, parameters={"allowed": "a,b,c"}, semantic="io.debezium.data.EnumSet",
                         version=1), "a,c", "set", "set('a','b','c')", "a,c", ColumnType(Kind.STRING), "a,c"),
    ("json", source_field("x", "string", "JSON", semantic="io.debezium.data.Json", version=1), "[1]", "longtext", "longtext",
     "[1]", ColumnType(Kind.STRING), "[1]"),
    ("binary", source_field("x", "bytes", "BINARY", length=4), "AP8AAA==", "binary", "binary(4)", bytearray(b"\x00\xff\x00\x00"),
     ColumnType(Kind.BINARY), b"\x00\xff\x00\x00"),
    ("blob", source_field("x", "bytes", "BLOB"), "AA==", "blob", "blob", b"\x00", ColumnType(Kind.BINARY), b"\x00"),
    # years below 100 stay (enable.time.adjuster=false)
    ("date-year-18", source_field("x", "int32", "DATE", semantic="io.debezium.time.Date", version=1), -712863, "date", "date",
     dt.date(18, 4, 1), ColumnType(Kind.DATE), dt.date(18, 4, 1)),
    ("datetime-year-99", source_field("x", "int64", "DATETIME", semantic="io.debezium.time.Timestamp", version=1),
     -59011459201000, "datetime", "datetime", dt.datetime(99, 12, 31, 23, 59, 59), ColumnType(Kind.TIMESTAMP),
     dt.datetime(99, 12, 31, 23, 59, 59)),
    ("datetime6", source_field("x", "int64", "DATETIME", length=6, semantic="io.debezium.time.MicroTimestamp", version=1),
     1743298200000001, "datetime", "datetime(6)", dt.datetime(2025, 3, 30, 1, 30, 0, 1), ColumnType(Kind.TIMESTAMP),
     dt.datetime(2025, 3, 30, 1, 30, 0, 1)),
    ("timestamp", source_field("x", "string", "TIMESTAMP", semantic="io.debezium.time.ZonedTimestamp", version=1),
     "2025-03-30T01:00:00Z", "timestamp", "timestamp", dt.datetime(2025, 3, 30, 1, 0), ColumnType(Kind.TIMESTAMPTZ),
     dt.datetime(2025, 3, 30, 1, 0, tzinfo=dt.UTC)),
    ("time6", source_field("x", "int64", "TIME", length=6, semantic="io.debezium.time.MicroTime", version=1), -1000000,
     "time", "time(6)", dt.timedelta(seconds=-1), ColumnType(Kind.TIME_MICROS), -1000000),
    ("year", source_field("x", "int32", "YEAR", semantic="io.debezium.time.Year", version=1), 2000, "year", "year(4)", 2000,
     ColumnType(Kind.INT), 2000),
]


@pytest.mark.parametrize(("connect_field", "raw", "data_type", "full", "read", "expected_type", "expected"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_streaming_and_bootstrap_agree(connect_field: dict, raw: Any, data_type: str, full: str, read: Any,
                                       expected_type: ColumnType, expected: Any) -> None:
    column, convert = field_column(connect_field)
    streamed = convert(raw)
    bootstrap_type = column_type(data_type, full)
    bootstrapped = _converter(bootstrap_type, SourceColumn("x", data_type, full, True))(read)
    assert column.type == bootstrap_type == expected_type
    assert streamed == bootstrapped == expected
    assert type(streamed) is type(bootstrapped) is type(expected)
    # and through the whole decoder, as a message on the wire
    event = decode(key([ID], {"id": 1}), value(payload("c", after={"id": 1, "x": raw}), [ID, connect_field]), COORDS)
    assert isinstance(event, ChangeEvent), event
    assert event.values["x"] == expected
    assert event.schema.columns[1].type == expected_type


def test_every_source_family_parses_the_same_from_both_sides() -> None:
    for _, connect_field, _, data_type, full, *_ in CASES:
        streamed = from_debezium(connect_field["parameters"])
        assert streamed is not None
        bootstrapped = from_information_schema(data_type, full)
        if streamed.declared in ("BOOLEAN", "JSON"):
            continue  # information_schema says tinyint(1) / longtext: the lake types still agree (above)
        assert (streamed.name, streamed.unsigned) == (bootstrapped.name, bootstrapped.unsigned), full


def test_a_plain_connect_field_still_maps_without_source_types() -> None:
    column, convert = field_column(field("x", "boolean"))  # a message written before the source types were propagated
    assert column.type == ColumnType(Kind.BOOLEAN)
    assert convert(True) is True


def test_a_source_type_that_contradicts_the_connect_type_is_refused() -> None:
    with pytest.raises(DecodeError, match="source type DATE maps to date, but Debezium sent string"):
        field_column(source_field("x", "string", "DATE"))


def test_an_unknown_source_type_falls_back_to_the_connect_type() -> None:
    column, _ = field_column(source_field("x", "string", "VECTOR", length=3))
    assert column.type == ColumnType(Kind.STRING)
    with pytest.raises(ConfigError, match="has no lake mapping"):
        column_type("vector", "vector(3)")
    assert lake_type(SourceType("VECTOR")) is None


def test_float_with_double_precision_is_a_double() -> None:
    assert column_type("double", "double") == lake_type(SourceType("FLOAT", 30)) == ColumnType(Kind.DOUBLE)
    assert lake_type(SourceType("FLOAT", 7, 4)) == ColumnType(Kind.FLOAT)


# ---- the booleans opt-in ------------------------------------------------------------------------

T1 = source_field("x", "int16", "TINYINT", length=1)


def _event(raw: Any) -> ChangeEvent:
    event = decode(key([ID], {"id": 1}), value(payload("c", after={"id": 1, "x": raw}), [ID, T1]), COORDS)
    assert isinstance(event, ChangeEvent)
    return event


def test_an_opted_in_tinyint1_is_a_boolean_on_both_paths() -> None:
    flagged = as_booleans(_event(1), ["x"])
    assert flagged.schema.columns[1].type == column_type("tinyint", "tinyint(1)", boolean=True) == ColumnType(Kind.BOOLEAN)
    assert flagged.values["x"] is True
    assert as_booleans(_event(0), ["x"]).values["x"] is False
    assert as_booleans(_event(None), ["x"]).values["x"] is None
    bootstrap = _converter(ColumnType(Kind.BOOLEAN), SourceColumn("x", "tinyint", "tinyint(1)", True, boolean=True))
    assert bootstrap(1) is True
    assert bootstrap(0) is False
    assert as_booleans(_event(-1), ["y"]).values["x"] == -1  # not listed: exact


@pytest.mark.parametrize("bad", [-1, 2, 127])
def test_an_opted_in_value_other_than_0_or_1_is_refused_on_both_paths(bad: int) -> None:
    with pytest.raises(DecodeError, match=f"holds {bad}, not 0 or 1"):
        as_booleans(_event(bad), ["x"])
    bootstrap = _converter(ColumnType(Kind.BOOLEAN), SourceColumn("x", "tinyint", "tinyint(1)", True, boolean=True))
    with pytest.raises(ConfigError, match=f"holds {bad}, not 0 or 1"):
        bootstrap(bad)


def test_a_refused_boolean_goes_to_the_dead_letter_table() -> None:
    from cdc.config import load_settings
    from cdc.events.model import DecodeFailure
    from cdc.ingest.capture import CaptureRules
    from cdc.ingest.consumer import classify

    settings = load_settings(tables={"probe.t": {"booleans": ["x"]}})
    rules = CaptureRules.from_settings(settings)
    k = key([ID], {"id": 1})

    def booleans(t: Any) -> list[str]:
        return settings.table_settings(t.db, t.table).booleans

    bad = classify(rules, 10**6, (k, value(payload("c", after={"id": 1, "x": 2}), [ID, T1]), ()), COORDS, booleans)
    assert isinstance(bad, DecodeFailure)
    assert "holds 2, not 0 or 1" in bad.message
    assert bad.value is not None  # the raw message is kept whole
    good = classify(rules, 10**6, (k, value(payload("c", after={"id": 1, "x": 1}), [ID, T1]), ()), COORDS, booleans)
    assert isinstance(good, ChangeEvent)
    assert good.values["x"] is True


# ---- zero dates -----------------------------------------------------------------------------------


def test_the_bootstrap_reads_a_not_null_zero_date_as_debezium_delivers_it() -> None:
    nn = SourceColumn("d", "date", "date", False)
    assert select_expr(nn) == ("CASE WHEN (YEAR(`d`) = 0 OR MONTH(`d`) = 0 OR DAYOFMONTH(`d`) = 0) "
                               "THEN CAST('1970-01-01' AS DATE) ELSE `d` END")
    assert select_expr(SourceColumn("d", "date", "date", True)) == "`d`"  # nullable: the driver's NULL, like Debezium's
    assert zero_date_substitute(SourceColumn("d", "date", "date", False, "'2001-02-03'")) == "2001-02-03"
    assert zero_date_substitute(SourceColumn("d", "date", "date", False, "'0000-00-00'")) == "1970-01-01"
    dtm = SourceColumn("t", "datetime", "datetime(6)", False, "'2001-02-03 04:05:06.500000'")
    assert zero_date_substitute(dtm) == "2001-02-03 04:05:06.500000"
    assert "CAST('2001-02-03 04:05:06.500000' AS DATETIME(6))" in select_expr(dtm)
    assert zero_date_substitute(SourceColumn("t", "datetime", "datetime", False, "current_timestamp()")) == "1970-01-01 00:00:00"
    # streaming: Debezium sends 0 (or the field's default) for the same rows
    column, convert = field_column(source_field("d", "int32", "DATE", semantic="io.debezium.time.Date", version=1,
                                                optional=False))
    assert convert(0) == dt.date(1970, 1, 1)
    assert column.default == dt.date(1970, 1, 1)


def test_a_zero_timestamp_is_null_on_both_paths() -> None:
    _, convert = field_column(source_field("t", "string", "TIMESTAMP", semantic="io.debezium.time.ZonedTimestamp", version=1))
    assert convert("1970-01-01T00:00:00Z") is None  # the binlog's zero TIMESTAMP; the driver reads NULL too


# ---- Column.default -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connect_field", "default"),
    [
        pytest.param(source_field("n", "int32", "INT", optional=False, default=5), 5, id="int-default-5"),
        pytest.param(source_field("n", "int32", "INT UNSIGNED", optional=False, default=5), 5, id="int-unsigned-default"),
        pytest.param(source_field("d", "int32", "DATE", semantic="io.debezium.time.Date", version=1, optional=False,
                                  default=11356), dt.date(2001, 2, 3), id="date-default"),
        pytest.param(source_field("t", "string", "TIMESTAMP", semantic="io.debezium.time.ZonedTimestamp", version=1,
                                  optional=False, default="2001-02-03T04:05:06Z"),
                     dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=dt.UTC), id="timestamp-default"),
        pytest.param(source_field("s", "string", "VARCHAR", length=5, default="ab"), "ab", id="nullable-with-default"),
        pytest.param(dec("m", 5, 2, "DECIMAL") | {"optional": False, "default": "BNI="}, Decimal("12.34"), id="decimal-default"),
        pytest.param(source_field("b", "bytes", "BIT", length=12, parameters={"length": "12"}, semantic="io.debezium.data.Bits",
                                  version=1, optional=False, default="pwM="), 935, id="bit-default"),
        # NOT NULL without DEFAULT: MariaDB's implicit default fills the rows that existed before ADD COLUMN
        pytest.param(source_field("n", "int32", "INT", optional=False), 0, id="implicit-int"),
        pytest.param(source_field("n", "double", "DOUBLE", optional=False), 0.0, id="implicit-double"),
        pytest.param(dec("m", 5, 2, "DECIMAL") | {"optional": False}, Decimal("0.00"), id="implicit-decimal"),
        pytest.param(source_field("s", "string", "VARCHAR", length=5, optional=False), "", id="implicit-varchar"),
        pytest.param(source_field("e", "string", "ENUM", length=1, parameters={"allowed": "p,q"}, semantic="io.debezium.data.Enum",
                                  version=1, optional=False), "p", id="implicit-enum-first-member"),
        pytest.param(source_field("e", "string", "SET", length=3, parameters={"allowed": "a,b"},
                                  semantic="io.debezium.data.EnumSet", version=1, optional=False), "", id="implicit-set"),
        pytest.param(source_field("v", "bytes", "VARBINARY", length=4, optional=False), b"", id="implicit-varbinary"),
        pytest.param(source_field("v", "bytes", "BINARY", length=3, optional=False), b"\x00\x00\x00", id="implicit-binary"),
        pytest.param(source_field("b", "boolean", "BIT", length=1, optional=False), False, id="implicit-bit1"),
        pytest.param(source_field("d", "int32", "DATE", semantic="io.debezium.time.Date", version=1, optional=False),
                     dt.date(1970, 1, 1), id="implicit-date-zero-date-rule"),
        pytest.param(source_field("t", "string", "TIMESTAMP", semantic="io.debezium.time.ZonedTimestamp", version=1,
                                  optional=False), None, id="implicit-timestamp-none"),
        pytest.param(source_field("n", "int32", "INT"), None, id="nullable-without-default"),
    ],
)
def test_column_default(connect_field: dict, default: Any) -> None:
    column, _ = field_column(connect_field)
    assert column.default == default
    assert type(column.default) is type(default)
    if isinstance(default, Decimal):
        assert str(column.default) == str(default)


def test_the_connector_propagates_source_types_and_keeps_small_years(tmp_path: Any) -> None:
    from cdc.config import load_settings
    from cdc.connectors import debezium_config

    config = debezium_config(load_settings(home=tmp_path), tmp_path / "secrets")
    assert config["column.propagate.source.type"] == ".*"
    assert config["enable.time.adjuster"] == "false"  # 0018-04-01 stays year 18
    assert config["include.schema.changes"] == "true"
    assert "converters" not in config  # TINYINT(1) is no longer turned into a boolean
