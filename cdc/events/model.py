"""Typed change records: what every decoder produces and the lake writer consumes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Op(enum.StrEnum):
    """Debezium's operation codes."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # snapshot read
    TRUNCATE = "t"


class Kind(enum.StrEnum):
    """Logical column kinds; each maps to exactly one Iceberg type (lake/schema.py)."""

    BOOLEAN = "boolean"
    INT = "int"  # up to 32-bit signed
    LONG = "long"  # 64-bit signed
    FLOAT = "float"
    DOUBLE = "double"
    DECIMAL = "decimal"  # precision <= 38
    BIG_DECIMAL = "big_decimal"  # precision > 38: kept exact as its canonical text
    STRING = "string"
    BINARY = "binary"
    DATE = "date"
    TIMESTAMP = "timestamp"  # wall clock, no zone (DATETIME), microseconds
    TIMESTAMPTZ = "timestamptz"  # an instant in UTC (TIMESTAMP), microseconds
    TIME_MICROS = "time_micros"  # TIME as signed microseconds: may be negative or over 24 h


@dataclass(frozen=True, slots=True)
class ColumnType:
    kind: Kind
    precision: int | None = None
    scale: int | None = None


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    optional: bool = True
    # the value rows that existed before an ALTER TABLE ... ADD of this column read for it (its DEFAULT,
    # or MariaDB's implicit one for NOT NULL), as the column's converter gives it; None: NULL
    default: Any = None


@dataclass(frozen=True, slots=True)
class TableId:
    db: str
    table: str

    def __str__(self) -> str:
        return f"{self.db}.{self.table}"

    @classmethod
    def parse(cls, text: str) -> TableId:
        """`db.table` as the CLI takes it."""
        db, sep, table = text.partition(".")
        if not sep or not db or not table or "." in table:
            raise ValueError(f"expected DB.TABLE, got {text!r}")
        return cls(db, table)


@dataclass(frozen=True, slots=True)
class TableSchema:
    """The columns of a source table as one change event describes them, and its key."""

    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True, slots=True)
class KafkaCoordinates:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One row change. `values` is the after-image (the before-image for deletes).

    `before`: an update's before-image, for a table without a key only (its changelog keeps the update
    as the removal of the before-image and the addition of the after-image); None otherwise."""

    table: TableId
    op: Op
    seq: int
    source_ts_us: int
    values: dict[str, Any]
    schema: TableSchema
    coordinates: KafkaCoordinates
    before: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """A message that carries no row change (a delete's tombstone); its offset still advances."""

    reason: str
    coordinates: KafkaCoordinates


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """A message that could not be decoded, kept whole for the dead-letter table."""

    error: str
    message: str
    key: bytes | None
    value: bytes | None
    coordinates: KafkaCoordinates
    table: TableId | None = field(default=None)
    headers: tuple[tuple[str, bytes], ...] = ()


Decoded = ChangeEvent | Skip | DecodeFailure
