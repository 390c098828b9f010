"""Pure mapping from logical column kinds to Iceberg and Arrow types, and the lake table layouts.

| kind          | Iceberg            | Arrow                    | how exactness is kept                    |
|---------------|--------------------|--------------------------|------------------------------------------|
| boolean       | boolean            | bool                     |                                          |
| int           | int                | int32                    | TINYINT..INT signed, SMALLINT/MEDIUMINT unsigned |
| long          | long               | int64                    | BIGINT signed, INT UNSIGNED               |
| float/double  | float/double       | float32/float64          | same IEEE width as the source            |
| decimal(p,s)  | decimal(p,s)       | decimal128(p,s)          | p <= 38; BIGINT UNSIGNED is decimal(20,0) |
| big_decimal   | string             | string                   | p > 38: plain decimal text, no exponent  |
| string        | string             | string                   | UTF-8 incl. 4-byte; JSON/ENUM/SET as text |
| binary        | binary             | binary                   | BLOB/BINARY/BIT(n)/GEOMETRY WKB          |
| date          | date               | date32                   |                                          |
| timestamp     | timestamp          | timestamp[us]            | DATETIME wall clock, no zone applied     |
| timestamptz   | timestamptz        | timestamp[us, UTC]       | TIMESTAMP as an instant in UTC           |
| time_micros   | long               | int64                    | TIME may be negative or past 24 h        |
"""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
)

from cdc.events.model import Column, ColumnType, Kind, TableSchema
from cdc.lake.contract import (  # re-exported: other modules name them through here
    INGESTED_AT as INGESTED_AT,
    KAFKA_OFFSET as KAFKA_OFFSET,
    KAFKA_PARTITION as KAFKA_PARTITION,
    KAFKA_TOPIC as KAFKA_TOPIC,
    LANDED_COLUMN as LANDED_COLUMN,
    METADATA_COLUMNS as METADATA_COLUMNS,
    OP as OP,
    SEQ as SEQ,
    SOURCE_TS as SOURCE_TS,
)

SEQ_TYPE = ColumnType(Kind.DECIMAL, 38, 0)
RESERVED = frozenset(METADATA_COLUMNS)

_ICEBERG: dict[Kind, IcebergType] = {
    Kind.BOOLEAN: BooleanType(),
    Kind.INT: IntegerType(),
    Kind.LONG: LongType(),
    Kind.FLOAT: FloatType(),
    Kind.DOUBLE: DoubleType(),
    Kind.BIG_DECIMAL: StringType(),
    Kind.STRING: StringType(),
    Kind.BINARY: BinaryType(),
    Kind.DATE: DateType(),
    Kind.TIMESTAMP: TimestampType(),
    Kind.TIMESTAMPTZ: TimestamptzType(),
    Kind.TIME_MICROS: LongType(),
}

_ARROW: dict[Kind, pa.DataType] = {
    Kind.BOOLEAN: pa.bool_(),
    Kind.INT: pa.int32(),
    Kind.LONG: pa.int64(),
    Kind.FLOAT: pa.float32(),
    Kind.DOUBLE: pa.float64(),
    Kind.BIG_DECIMAL: pa.large_string(),
    Kind.STRING: pa.large_string(),
    Kind.BINARY: pa.large_binary(),
    Kind.DATE: pa.date32(),
    Kind.TIMESTAMP: pa.timestamp("us"),
    Kind.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
    Kind.TIME_MICROS: pa.int64(),
}


def _precision_scale(t: ColumnType) -> tuple[int, int]:
    if t.precision is None or t.scale is None:
        raise ValueError(f"decimal column type without precision and scale: {t}")
    return t.precision, t.scale


def iceberg_type(t: ColumnType) -> IcebergType:
    if t.kind is Kind.DECIMAL:
        return DecimalType(*_precision_scale(t))
    return _ICEBERG[t.kind]


def arrow_type(t: ColumnType) -> pa.DataType:
    if t.kind is Kind.DECIMAL:
        return pa.decimal128(*_precision_scale(t))
    return _ARROW[t.kind]


def _meta_columns(changelog: bool) -> list[Column]:
    cols = [Column(SEQ, SEQ_TYPE), Column(SOURCE_TS, ColumnType(Kind.TIMESTAMPTZ))]
    if changelog:
        cols = [
            Column(OP, ColumnType(Kind.STRING)),
            *cols,
            Column(INGESTED_AT, ColumnType(Kind.TIMESTAMPTZ)),
            Column(KAFKA_TOPIC, ColumnType(Kind.STRING)),
            Column(KAFKA_PARTITION, ColumnType(Kind.INT)),
            Column(KAFKA_OFFSET, ColumnType(Kind.LONG)),
            Column(LANDED_COLUMN, ColumnType(Kind.LONG)),
        ]
    return cols


def lake_columns(source: TableSchema, changelog: bool) -> list[Column]:
    """Source columns (all nullable in the lake: a delete carries only what its image has) + metadata."""
    clash = RESERVED.intersection(source.names)
    if clash:
        raise ValueError(f"source columns {sorted(clash)} collide with the lake's metadata columns")
    return [Column(c.name, c.type, True) for c in source.columns] + _meta_columns(changelog)


def tombstone_columns(source: TableSchema) -> list[Column]:
    """Deleted keys and the position of their delete, so an older change cannot bring them back."""
    by_name = {c.name: c for c in source.columns}
    # `_ingested_at`: when the delete reached the lake; tombstones expire by it (lake time, not source time)
    return [Column(k, by_name[k].type, True) for k in source.key] + _meta_columns(changelog=False) + [
        Column(INGESTED_AT, ColumnType(Kind.TIMESTAMPTZ))]


def widens(old: IcebergType, new: IcebergType) -> bool:
    """Pure: `new` is a promotion of `old` the Iceberg spec allows (int->long, float->double, decimal
    precision up at the same scale). pyiceberg 0.12 lets a decimal scale change through: not here."""
    if isinstance(old, IntegerType):
        return isinstance(new, LongType)
    if isinstance(old, FloatType):
        return isinstance(new, DoubleType)
    if isinstance(old, DecimalType) and isinstance(new, DecimalType):
        return new.scale == old.scale and new.precision > old.precision
    return False


def fits(old: IcebergType, new: IcebergType) -> bool:
    """Pure: values of type `new` fit a lake column of type `old` as they are (equal, or narrower)."""
    return old == new or widens(new, old)


def iceberg_schema(columns: list[Column]) -> Schema:
    fields = [
        NestedField(field_id=i, name=c.name, field_type=iceberg_type(c.type), required=False)
        for i, c in enumerate(columns, start=1)
    ]
    return Schema(*fields)


def arrow_schema(columns: list[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c.type), nullable=True) for c in columns])


def bucket_spec(schema: Schema, key: tuple[str, ...], buckets: int) -> PartitionSpec:
    """`bucket(N, first key column)`: an update never moves a row between partitions.

    A table without a key is unpartitioned: no column of it stays put under an update, and its merge
    rewrites it whole (spark_jobs/multiset.py)."""
    if not key:
        return PartitionSpec()
    source = schema.find_field(key[0])
    return PartitionSpec(
        PartitionField(source_id=source.field_id, field_id=1000, transform=BucketTransform(buckets), name=f"{key[0]}_bucket")
    )
