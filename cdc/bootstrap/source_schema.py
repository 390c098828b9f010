"""MariaDB column types (information_schema) -> the same column kinds the Debezium decoder yields.

The two mappings must agree: a bootstrapped table and the changes Debezium streams into it share
one Iceberg schema. `tests/e2e/test_bootstrap.py` checks the agreement on the type zoo.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cdc.errors import ConfigError
from cdc.events.connect_types import MAX_ICEBERG_DECIMAL
from cdc.events.model import Column, ColumnType, Kind, TableSchema

GEOMETRY = frozenset(
    {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection"}
)
_TEXT = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"})
_BINARY = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
_ARGS = re.compile(r"\((\d+)(?:,(\d+))?\)")


@dataclass(frozen=True)
class SourceColumn:
    name: str
    data_type: str  # information_schema DATA_TYPE, e.g. `int`
    column_type: str  # information_schema COLUMN_TYPE, e.g. `int(10) unsigned`
    nullable: bool


def column_type(data_type: str, full_type: str) -> ColumnType:
    """Pure: one source column type -> its logical kind, as Debezium's converters would describe it."""
    dt, full = data_type.lower(), full_type.lower()
    unsigned = "unsigned" in full
    args = _ARGS.search(full)
    n = int(args.group(1)) if args else None
    scale = int(args.group(2)) if args and args.group(2) else 0
    if dt == "tinyint" and n == 1:
        return ColumnType(Kind.BOOLEAN)  # TinyIntOneToBooleanConverter
    if dt in ("tinyint", "smallint", "mediumint") or (dt == "int" and not unsigned):
        return ColumnType(Kind.INT)
    if dt == "int" or (dt == "bigint" and not unsigned):
        return ColumnType(Kind.LONG)
    if dt == "bigint":
        return ColumnType(Kind.DECIMAL, 20, 0)  # bigint.unsigned.handling.mode=precise
    if dt == "decimal":
        precision = n or 10
        kind = Kind.DECIMAL if precision <= MAX_ICEBERG_DECIMAL else Kind.BIG_DECIMAL
        return ColumnType(kind, precision, scale)
    if dt == "float":
        return ColumnType(Kind.FLOAT)
    if dt == "double":
        return ColumnType(Kind.DOUBLE)
    if dt == "bit":
        return ColumnType(Kind.BOOLEAN) if n == 1 else ColumnType(Kind.BINARY)
    if dt in _TEXT or (dt == "longtext"):
        return ColumnType(Kind.STRING)
    if dt in _BINARY or dt in GEOMETRY:
        return ColumnType(Kind.BINARY)
    if dt == "date":
        return ColumnType(Kind.DATE)
    if dt == "datetime":
        return ColumnType(Kind.TIMESTAMP)
    if dt == "timestamp":
        return ColumnType(Kind.TIMESTAMPTZ)
    if dt == "time":
        return ColumnType(Kind.TIME_MICROS)
    if dt == "year":
        return ColumnType(Kind.INT)
    raise ConfigError(f"source type {full_type!r} has no lake mapping")


def table_schema(columns: Sequence[SourceColumn], key: Sequence[str]) -> TableSchema:
    """Pure: the table's schema as the decoder would build it from a Debezium event."""
    return TableSchema(tuple(Column(c.name, column_type(c.data_type, c.column_type), c.nullable) for c in columns), tuple(key))
