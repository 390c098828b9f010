"""Integer columns that land as booleans by the table's opt-in (`tables.<db.table>.booleans`).

MariaDB's BOOLEAN is TINYINT(1), which holds -128..127: the lake keeps it as the exact integer unless
the table lists the column. A listed column lands as a boolean and a value other than 0/1 is refused
(the message goes to the dead-letter table), never rounded to true.

Pure: a decoded change and the column names in, the change out or a `DecodeError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from cdc.errors import DecodeError
from cdc.events.model import ChangeEvent, Column, ColumnType, Kind, TableSchema
from cdc.events.source_types import BOOLEAN_CAPABLE

BOOLEAN = ColumnType(Kind.BOOLEAN)


def strict_bool(value: Any, column: str) -> bool:
    """0 -> False, 1 -> True; anything else is refused."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise DecodeError(f"column {column!r} is a boolean (tables.<db.table>.booleans) but holds {value!r}, not 0 or 1")


def as_booleans(event: ChangeEvent, columns: Collection[str]) -> ChangeEvent:
    """The change with the listed integer columns as booleans (a listed column the change lacks, or
    that is no integer, is left as it is)."""
    wanted = {c.name for c in event.schema.columns if c.name in columns and c.type.kind in BOOLEAN_CAPABLE}
    if not wanted:
        return event
    schema_columns: list[Column] = []
    for c in event.schema.columns:
        if c.name in wanted:
            default = None if c.default is None else strict_bool(c.default, c.name)
            c = dataclasses.replace(c, type=BOOLEAN, default=default)
        schema_columns.append(c)
    values = {k: (strict_bool(v, k) if k in wanted and v is not None else v) for k, v in event.values.items()}
    return dataclasses.replace(event, schema=TableSchema(tuple(schema_columns), event.schema.key), values=values)
