"""MariaDB source column types -> lake column types: the one table both paths use.

Streaming reads a column's type from the parameters Debezium propagates with every field
(`column.propagate.source.type`: `__debezium.source.column.type` "INT UNSIGNED", `...length`,
`...scale`); the bootstrap reads it from information_schema (`DATA_TYPE`, `COLUMN_TYPE`). Both are
parsed into a `SourceType` and mapped here, so a bootstrapped table and the changes streamed into it
share one Iceberg schema by construction. The Connect schema type alone is not enough: Debezium
declares a streamed `INTEGER(11) UNSIGNED` as int32 and `REAL` as float32, and sends `BIT(n)` as
little-endian bytes.

Pure: no I/O, no settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdc.events.model import ColumnType, Kind

MAX_ICEBERG_DECIMAL = 38
SINGLE_PRECISION_MAX = 24  # FLOAT(p) with p above this is a DOUBLE in MariaDB

TYPE_PARAM = "__debezium.source.column.type"
LENGTH_PARAM = "__debezium.source.column.length"
SCALE_PARAM = "__debezium.source.column.scale"

GEOMETRY = frozenset({"GEOMETRY", "POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON",
                      "GEOMETRYCOLLECTION"})
_TEXT = frozenset({"CHAR", "VARCHAR", "TINYTEXT", "TEXT", "MEDIUMTEXT", "LONGTEXT", "JSON", "ENUM", "SET", "UUID",
                   "INET4", "INET6"})
_BINARY = frozenset({"BINARY", "VARBINARY", "TINYBLOB", "BLOB", "MEDIUMBLOB", "LONGBLOB"})
_DECIMAL = frozenset({"DECIMAL", "NUMERIC", "DEC", "FIXED"})
# type names MariaDB (and Debezium's DDL parser) accept as synonyms
_ALIASES = {
    "INTEGER": "INT", "INT4": "INT", "INT1": "TINYINT", "INT2": "SMALLINT", "INT3": "MEDIUMINT", "MIDDLEINT": "MEDIUMINT",
    "INT8": "BIGINT", "BOOL": "BOOLEAN", "REAL": "DOUBLE", "DOUBLE PRECISION": "DOUBLE", "FLOAT8": "DOUBLE",
    "FLOAT4": "FLOAT", "CHARACTER": "CHAR", "CHARACTER VARYING": "VARCHAR", "NCHAR": "CHAR", "NVARCHAR": "VARCHAR",
    "NATIONAL CHAR": "CHAR", "NATIONAL VARCHAR": "VARCHAR", "LONG VARCHAR": "MEDIUMTEXT", "LONG": "MEDIUMTEXT",
    "LONG VARBINARY": "MEDIUMBLOB", "CHAR BYTE": "BINARY",
}
_ARGS = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")
_IGNORED_WORDS = frozenset({"ZEROFILL", "SIGNED", "UNSIGNED"})


@dataclass(frozen=True, slots=True)
class SourceType:
    """A MariaDB column type: its family (upper case, synonyms resolved), length, scale, signedness.

    `declared` keeps the spelling the source used where it matters (`BOOLEAN`, `REAL`): Debezium
    converts a column it saw declared as BOOLEAN to a Connect boolean.
    """

    name: str
    length: int | None = None
    scale: int | None = None
    unsigned: bool = False
    declared: str = ""


def _family(words: list[str]) -> tuple[str, str, bool]:
    unsigned = "UNSIGNED" in words
    kept = [w for w in words if w not in _IGNORED_WORDS]
    declared = " ".join(kept)
    return _ALIASES.get(declared, declared), declared, unsigned


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v) if v is not None and str(v).strip() != "" else None
    except (TypeError, ValueError):
        return None


def from_debezium(parameters: Mapping[str, Any]) -> SourceType | None:
    """The source type Debezium propagated with a field, or None when it propagated none."""
    raw = parameters.get(TYPE_PARAM)
    if not isinstance(raw, str) or not raw.strip():
        return None
    name, declared, unsigned = _family(raw.upper().split())
    return SourceType(name, _int_or_none(parameters.get(LENGTH_PARAM)), _int_or_none(parameters.get(SCALE_PARAM)),
                      unsigned, declared)


def from_information_schema(data_type: str, column_type: str) -> SourceType:
    """The source type of an information_schema column (`int`, `int(10) unsigned`)."""
    full = column_type.upper()
    args = _ARGS.search(full)
    words = _ARGS.sub(" ", full).split() if not full.startswith(("ENUM", "SET")) else [full.split("(")[0]]
    name, declared, unsigned = _family(words)
    if not name:
        name, declared, _ = _family(data_type.upper().split())
    length = int(args.group(1)) if args and not full.startswith(("ENUM", "SET")) else None
    scale = int(args.group(2)) if args and args.group(2) is not None else None
    return SourceType(name, length, scale, unsigned, declared)


def lake_type(source: SourceType, boolean: bool = False) -> ColumnType | None:
    """The lake column type of a source type, or None when the table has no entry for it.

    `boolean`: the column is in `tables.<db.table>.booleans`: an integer column lands as a boolean
    (values other than 0/1 are refused, see `cdc.events.booleans`).
    """
    mapped = _lake_type(source)
    if boolean and mapped is not None and mapped.kind in BOOLEAN_CAPABLE:
        return ColumnType(Kind.BOOLEAN)
    return mapped


BOOLEAN_CAPABLE = frozenset({Kind.INT, Kind.LONG, Kind.BOOLEAN})


def _lake_type(source: SourceType) -> ColumnType | None:
    name, n = source.name, source.length
    if name in ("TINYINT", "SMALLINT", "BOOLEAN", "YEAR"):
        return ColumnType(Kind.INT)  # TINYINT(1) keeps its exact value (-128..127, 0..255)
    if name == "MEDIUMINT":
        return ColumnType(Kind.INT)  # unsigned too: 0..16777215 fits, and Debezium declares it int32
    if name == "INT":
        return ColumnType(Kind.LONG if source.unsigned else Kind.INT)
    if name == "BIGINT":
        return ColumnType(Kind.DECIMAL, 20, 0) if source.unsigned else ColumnType(Kind.LONG)
    if name in _DECIMAL:
        precision = n or 10
        kind = Kind.DECIMAL if precision <= MAX_ICEBERG_DECIMAL else Kind.BIG_DECIMAL
        return ColumnType(kind, precision, source.scale or 0)
    if name == "FLOAT":
        wide = n is not None and n > SINGLE_PRECISION_MAX and source.scale is None
        return ColumnType(Kind.DOUBLE if wide else Kind.FLOAT)
    if name == "DOUBLE":
        return ColumnType(Kind.DOUBLE)
    if name == "BIT":
        width = n or 1
        if width == 1:
            return ColumnType(Kind.BOOLEAN)
        return ColumnType(Kind.LONG) if width < 64 else ColumnType(Kind.DECIMAL, 20, 0)  # the number `b+0`
    if name in _TEXT:
        return ColumnType(Kind.STRING)
    if name in _BINARY or name in GEOMETRY:
        return ColumnType(Kind.BINARY)
    if name == "DATE":
        return ColumnType(Kind.DATE)
    if name == "DATETIME":
        return ColumnType(Kind.TIMESTAMP)
    if name == "TIMESTAMP":
        return ColumnType(Kind.TIMESTAMPTZ)
    if name == "TIME":
        return ColumnType(Kind.TIME_MICROS)
    return None


def bit_width(source: SourceType) -> int:
    return source.length or 1
