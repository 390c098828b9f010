"""Column kinds -> Iceberg and Arrow types, the lake's table layouts, and change events -> Arrow."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
from pyiceberg.transforms import BucketTransform
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

from cdc.events.model import ChangeEvent, Column, ColumnType, KafkaCoordinates, Kind, Op, TableId, TableSchema
from cdc.events.position import STREAM, BinlogPosition
from cdc.lake.schema import (
    RESERVED,
    arrow_schema,
    arrow_type,
    bucket_spec,
    iceberg_schema,
    iceberg_type,
    lake_columns,
)
from cdc.lake.writer import to_arrow

TYPES = {
    # kind: (column type, Iceberg type, Arrow type)
    Kind.BOOLEAN: (ColumnType(Kind.BOOLEAN), BooleanType(), pa.bool_()),
    Kind.INT: (ColumnType(Kind.INT), IntegerType(), pa.int32()),
    Kind.LONG: (ColumnType(Kind.LONG), LongType(), pa.int64()),
    Kind.FLOAT: (ColumnType(Kind.FLOAT), FloatType(), pa.float32()),
    Kind.DOUBLE: (ColumnType(Kind.DOUBLE), DoubleType(), pa.float64()),
    Kind.DECIMAL: (ColumnType(Kind.DECIMAL, 38, 10), DecimalType(38, 10), pa.decimal128(38, 10)),
    Kind.BIG_DECIMAL: (ColumnType(Kind.BIG_DECIMAL, 65, 30), StringType(), pa.large_string()),
    Kind.STRING: (ColumnType(Kind.STRING), StringType(), pa.large_string()),
    Kind.BINARY: (ColumnType(Kind.BINARY), BinaryType(), pa.large_binary()),
    Kind.DATE: (ColumnType(Kind.DATE), DateType(), pa.date32()),
    Kind.TIMESTAMP: (ColumnType(Kind.TIMESTAMP), TimestampType(), pa.timestamp("us")),
    Kind.TIMESTAMPTZ: (ColumnType(Kind.TIMESTAMPTZ), TimestamptzType(), pa.timestamp("us", tz="UTC")),
    Kind.TIME_MICROS: (ColumnType(Kind.TIME_MICROS), LongType(), pa.int64()),
}

CHANGELOG_META = ["_op", "_seq", "_source_ts", "_ingested_at", "_kafka_topic", "_kafka_partition", "_kafka_offset", "_cdc_landed"]


def test_every_kind_has_an_expected_mapping() -> None:
    assert set(TYPES) == set(Kind)


@pytest.mark.parametrize("kind", list(Kind))
def test_kind_maps_to_iceberg_and_arrow(kind: Kind) -> None:
    column_type, iceberg, arrow = TYPES[kind]
    assert iceberg_type(column_type) == iceberg
    assert arrow_type(column_type) == arrow


def test_a_decimal_needs_precision_and_scale() -> None:
    for convert in (iceberg_type, arrow_type):
        with pytest.raises(ValueError, match="decimal column type without precision and scale"):
            convert(ColumnType(Kind.DECIMAL, 10))


def test_arrow_schema_agrees_with_what_pyiceberg_derives() -> None:
    columns = [Column(kind.value, column_type) for kind, (column_type, _, _) in TYPES.items()]
    derived = iceberg_schema(columns).as_arrow()
    assert [(f.name, f.type, f.nullable) for f in derived] == [(f.name, f.type, f.nullable) for f in arrow_schema(columns)]


# ---- table layouts -------------------------------------------------------------------------------

SOURCE = TableSchema(
    columns=(
        Column("id", ColumnType(Kind.INT), optional=False),
        Column("d", ColumnType(Kind.DECIMAL, 10, 2)),
        Column("big", ColumnType(Kind.BIG_DECIMAL, 65, 30)),
        Column("ts", ColumnType(Kind.TIMESTAMPTZ)),
        Column("dt", ColumnType(Kind.TIMESTAMP)),
        Column("day", ColumnType(Kind.DATE)),
        Column("t", ColumnType(Kind.TIME_MICROS)),
        Column("raw", ColumnType(Kind.BINARY)),
        Column("v", ColumnType(Kind.STRING)),
    ),
    key=("id",),
)


def test_base_table_columns() -> None:
    columns = lake_columns(SOURCE, changelog=False)
    assert [c.name for c in columns] == [*SOURCE.names, "_seq", "_source_ts"]
    assert all(c.optional for c in columns)  # a delete carries only what its image has
    assert columns[-2].type == ColumnType(Kind.DECIMAL, 38, 0)
    assert columns[-1].type == ColumnType(Kind.TIMESTAMPTZ)
    assert [c.type for c in columns[: len(SOURCE.columns)]] == [c.type for c in SOURCE.columns]


def test_changelog_columns() -> None:
    columns = lake_columns(SOURCE, changelog=True)
    assert [c.name for c in columns] == [*SOURCE.names, *CHANGELOG_META]
    schema = iceberg_schema(columns)
    assert [f.field_id for f in schema.fields] == list(range(1, len(columns) + 1))
    assert not any(f.required for f in schema.fields)
    assert schema.find_field("_seq").field_type == DecimalType(38, 0)
    assert schema.find_field("_kafka_offset").field_type == LongType()


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_a_source_column_with_a_reserved_name_is_refused(name: str) -> None:
    source = TableSchema((Column("id", ColumnType(Kind.INT)), Column(name, ColumnType(Kind.STRING))), ("id",))
    for changelog in (False, True):
        with pytest.raises(ValueError, match=f"source columns \\['{name}'\\] collide"):
            lake_columns(source, changelog=changelog)


def test_bucket_spec_buckets_the_first_key_column() -> None:
    schema = iceberg_schema(lake_columns(SOURCE, changelog=False))
    spec = bucket_spec(schema, ("id",), 16)
    (partition,) = spec.fields
    assert partition.source_id == schema.find_field("id").field_id == 1
    assert partition.transform == BucketTransform(16)
    assert partition.name == "id_bucket"
    assert partition.field_id == 1000


def test_a_table_without_a_key_is_unpartitioned() -> None:
    schema = iceberg_schema(lake_columns(SOURCE, changelog=False))
    assert bucket_spec(schema, (), 16).fields == ()


# ---- to_arrow ------------------------------------------------------------------------------------

TABLE = TableId("probe", "t")
INGESTED = dt.datetime(2026, 11, 25, 15, 10, 0, 5, tzinfo=dt.UTC)
BIG = "-12345678901234567890123456789012345.123456789012345678901234567890"
CREATE = ChangeEvent(
    table=TABLE,
    op=Op.CREATE,
    seq=BinlogPosition(STREAM, 1, 2277, 0).pack(),
    source_ts_us=1795619313000123,
    values={
        "id": 1,
        "d": Decimal("-12.34"),
        "big": BIG,
        "ts": dt.datetime(2026, 3, 29, 1, 30, 0, 123000, tzinfo=dt.UTC),
        "dt": dt.datetime(2026, 1, 1, 10, 0, 0, 123456),
        "day": dt.date(1969, 12, 31),
        "t": -3020399000000,
        "raw": b"\x00\xff",
        "v": "h\U0001f600",
    },
    schema=SOURCE,
    coordinates=KafkaCoordinates("cdc.probe.t", 3, 17),
)
DELETE = ChangeEvent(
    table=TABLE,
    op=Op.DELETE,
    seq=BinlogPosition(STREAM, 2, 4, 1).pack(),
    source_ts_us=0,
    values={"id": 2, "d": None},  # columns missing from the image land as nulls
    schema=SOURCE,
    coordinates=KafkaCoordinates("cdc.probe.t", 0, 18),
)


def test_to_arrow_builds_the_changelog_rows_exactly() -> None:
    target = arrow_schema(lake_columns(SOURCE, changelog=True))
    table = to_arrow([CREATE, DELETE], target, INGESTED)
    assert table.schema == target
    rows = table.to_pylist()
    assert rows[0] == {
        **CREATE.values,
        "_op": "c",
        "_seq": Decimal(10000001000000000000002277000000000000),
        "_source_ts": dt.datetime(2026, 11, 25, 15, 8, 33, 123, tzinfo=dt.UTC),
        "_ingested_at": INGESTED,
        "_kafka_topic": "cdc.probe.t",
        "_kafka_partition": 3,
        "_kafka_offset": 17,
        "_cdc_landed": None,
    }
    assert rows[1] == {
        **dict.fromkeys(SOURCE.names),
        "id": 2,
        "_op": "d",
        "_seq": Decimal(10000002000000000000000004000000000001),
        "_source_ts": dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        "_ingested_at": INGESTED,
        "_kafka_topic": "cdc.probe.t",
        "_kafka_partition": 0,
        "_kafka_offset": 18,
        "_cdc_landed": None,
    }
    assert str(rows[0]["d"]) == "-12.34"
    assert rows[0]["dt"].tzinfo is None


def test_to_arrow_of_no_events_is_an_empty_table_in_the_schema() -> None:
    target = arrow_schema(lake_columns(SOURCE, changelog=True))
    table = to_arrow([], target, INGESTED)
    assert table.num_rows == 0
    assert table.schema == target


def test_to_arrow_refuses_a_value_that_does_not_fit_its_column() -> None:
    target = arrow_schema(lake_columns(SOURCE, changelog=True))
    too_precise = dataclasses.replace(CREATE, values={"id": 3, "d": Decimal("1.234")})  # DECIMAL(10,2)
    with pytest.raises(pa.ArrowInvalid):
        to_arrow([too_precise], target, INGESTED)


def test_widenings_and_what_fits() -> None:
    from pyiceberg.types import DecimalType, DoubleType, FloatType, IntegerType, LongType, StringType

    from cdc.lake.schema import fits, widens

    assert widens(IntegerType(), LongType())
    assert widens(FloatType(), DoubleType())
    assert widens(DecimalType(10, 2), DecimalType(12, 2))
    assert not widens(DecimalType(10, 2), DecimalType(12, 3))  # a scale change is not a promotion
    assert not widens(LongType(), DecimalType(20, 0))  # INT UNSIGNED -> BIGINT UNSIGNED
    assert not widens(StringType(), LongType())
    assert fits(LongType(), IntegerType())
    assert fits(DecimalType(12, 2), DecimalType(10, 2))
    assert not fits(DecimalType(12, 2), DecimalType(12, 3))
    assert not fits(IntegerType(), LongType())
