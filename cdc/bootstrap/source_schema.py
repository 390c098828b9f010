"""MariaDB columns (information_schema) -> lake column types, and how to read each value from the source.

The type mapping is `cdc.events.source_types`, the one table streaming uses too (from the source
types Debezium propagates), so a bootstrapped table and the changes streamed into it share one
Iceberg schema; `tests/unit/test_type_agreement.py` checks every type on both paths.

The SELECT expressions here are shared by the bootstrap and `cdc check`: both read the source the
way Debezium delivers it (BIT as its number, SET members in definition order, a zero date in a NOT
NULL column as Debezium's substitute).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cdc.errors import ConfigError
from cdc.events.model import Column, ColumnType, TableSchema
from cdc.events.source_types import GEOMETRY as _GEOMETRY_TYPES, SourceType, from_information_schema, lake_type
from cdc.source import quote_ident

GEOMETRY = frozenset(t.lower() for t in _GEOMETRY_TYPES)

# what both the bootstrap and the check read about each column, in table order
COLUMNS_QUERY = (
    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
)


@dataclass(frozen=True)
class SourceColumn:
    name: str
    data_type: str  # information_schema DATA_TYPE, e.g. `int`
    column_type: str  # information_schema COLUMN_TYPE, e.g. `int(10) unsigned`
    nullable: bool
    default: str | None = None  # information_schema COLUMN_DEFAULT as MariaDB writes it (`'2001-02-03'`, `NULL`)
    boolean: bool = False  # listed in tables.<db.table>.booleans

    @property
    def source_type(self) -> SourceType:
        return from_information_schema(self.data_type, self.column_type)


def source_column(row: Sequence[object]) -> SourceColumn:
    """One row of `COLUMNS_QUERY`."""
    name, data_type, full, nullable, default = row
    return SourceColumn(str(name), str(data_type), str(full), str(nullable) == "YES", None if default is None else str(default))


def column_type(data_type: str, full_type: str, boolean: bool = False) -> ColumnType:
    """Pure: one source column type -> its lake column type (`cdc.events.source_types`)."""
    mapped = lake_type(from_information_schema(data_type, full_type), boolean)
    if mapped is None:
        raise ConfigError(f"source type {full_type!r} has no lake mapping")
    return mapped


def table_schema(columns: Sequence[SourceColumn], key: Sequence[str]) -> TableSchema:
    """Pure: the table's schema as the decoder would build it from a Debezium event."""
    return TableSchema(
        tuple(Column(c.name, column_type(c.data_type, c.column_type, c.boolean), c.nullable) for c in columns), tuple(key)
    )


# ---- zero dates ------------------------------------------------------------------------------
# MariaDB accepts '0000-00-00', '0001-00-00', '0000-01-01' where sql_mode allows. Debezium reads any
# date with a zero year, month or day as no date: NULL in a nullable column; in a NOT NULL column the
# column's DEFAULT, or the epoch without one. It cannot tell such a value from a real 1970-01-01, so
# that is the rule on every path: the bootstrap and the check read the source through `select_expr`.
# A zero TIMESTAMP is binlogged as epoch 0, outside TIMESTAMP's range: it reads as NULL everywhere.

_ZERO_DATED = frozenset({"date", "datetime"})
_DATE_LITERAL = re.compile(r"^'?(\d{4})-(\d{2})-(\d{2})(?: (\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?))?'?$")


def zero_date_condition(column: SourceColumn) -> str:
    """Pure: SQL true where a DATE/DATETIME/TIMESTAMP value has a zero year, month or day."""
    q = quote_ident(column.name)
    return f"(YEAR({q}) = 0 OR MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0)"


def zero_date_substitute(column: SourceColumn) -> str:
    """Pure: the literal a zero date of this NOT NULL DATE/DATETIME column reads as: its valid DEFAULT,
    else the epoch (a default such as CURRENT_TIMESTAMP() counts as none)."""
    date_only = column.data_type.lower() == "date"
    match = _DATE_LITERAL.match(column.default or "")
    if match and all(int(match.group(i)) for i in (1, 2, 3)):
        day = f"{match.group(1)}-{match.group(2)}-{match.group(3)}"
        return day if date_only else f"{day} {match.group(4) or '00:00:00'}"
    return "1970-01-01" if date_only else "1970-01-01 00:00:00"


def select_expr(column: SourceColumn) -> str:
    """Pure: read a column in the form Debezium delivers it."""
    q = quote_ident(column.name)
    data_type = column.data_type.lower()
    if data_type == "bit":
        return f"CAST({q} AS UNSIGNED)"  # the number `b+0`
    if data_type in GEOMETRY:
        return f"ST_AsBinary({q})"
    if data_type == "set":
        return f"CAST({q} AS CHAR)"  # members in definition order, like the binlog
    if data_type == "float":
        return f"CAST({q} AS DOUBLE)"  # the stored single exactly, not its 6-digit text
    if data_type in _ZERO_DATED and not column.nullable:
        precision = column.source_type.length or 0
        cast = "DATE" if data_type == "date" else f"DATETIME({int(precision)})"
        return f"CASE WHEN {zero_date_condition(column)} THEN CAST('{zero_date_substitute(column)}' AS {cast}) ELSE {q} END"
    return q
