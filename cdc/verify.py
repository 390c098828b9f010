"""The oracle: does a lake base table equal its source table, row for row, value for value?

Both sides are rendered to canonical strings by the lake column's type (so `12.30` stays `12.30`,
a TIMESTAMP is compared as the same UTC instant, TIME as signed microseconds) and compared both
ways by primary key.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.types import BooleanType, FloatType, IcebergType, LongType, TimestamptzType

from cdc.bootstrap.source_schema import COLUMNS_QUERY, select_expr, source_column
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.lake import catalog as lake
from cdc.lake.contract import FROZEN_COLUMNS
from cdc.lake.schema import RESERVED
from cdc.source import connect, quote_ident

Row = tuple[str | None, ...]


@dataclass
class Comparison:
    table: str
    source_rows: int
    lake_rows: int
    missing_in_lake: list[Row] = field(default_factory=list)
    extra_in_lake: list[Row] = field(default_factory=list)
    different: list[tuple[Row, Row]] = field(default_factory=list)
    duplicate_keys: int = 0
    columns_differ: list[str] = field(default_factory=list)  # a column on one side only

    @property
    def equal(self) -> bool:
        return not (self.missing_in_lake or self.extra_in_lake or self.different or self.duplicate_keys or self.columns_differ)


def canonical(value: Any, kind: IcebergType, source_type: str = "") -> str | None:
    """One exact text form per value, whichever side it came from.

    `source_type` is the source's COLUMN_TYPE (`bit(10)`, `set('a','b')`, ...): it settles the
    few types whose two sides differ in shape, not in value.
    """
    if value is None:
        return None
    if isinstance(value, set | frozenset):  # a driver's SET: put the members in the column's definition order
        order = _set_members(source_type)
        return ",".join(sorted(value, key=lambda m: order.index(m) if m in order else len(order)))
    if isinstance(kind, BooleanType):
        return "1" if (value is True or value == 1) else "0"
    if isinstance(kind, FloatType):
        single = float(struct.unpack("f", struct.pack("f", float(value)))[0])
        return repr(single)
    if isinstance(value, dt.timedelta):  # TIME from the source, microseconds in the lake
        return str((value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds)
    if isinstance(kind, LongType) and isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        if isinstance(kind, TimestamptzType) and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return str(value.isoformat(sep=" ", timespec="microseconds"))
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)


def _set_members(source_type: str) -> list[str]:
    """`set('red','green','blue')` -> its members in definition order."""
    inner = source_type[source_type.find("(") + 1 : source_type.rfind(")")]
    return [m[1:-1].replace("''", "'") for m in re.findall(r"'(?:[^']|'')*'", inner)]


def _key_index(names: Sequence[str], key: Sequence[str]) -> list[int]:
    return [names.index(k) for k in key]


def compare_rows(
    table: str, names: Sequence[str], key: Sequence[str], source: Iterable[Row], lake_rows: Iterable[Row]
) -> Comparison:
    """Pure: compare two row sets keyed by `key`."""
    idx = _key_index(names, key)
    src = {tuple(r[i] for i in idx): r for r in source}
    lake_map: dict[tuple[str | None, ...], Row] = {}
    duplicates = 0
    lake_count = 0
    for r in lake_rows:
        lake_count += 1
        k = tuple(r[i] for i in idx)
        if k in lake_map:
            duplicates += 1
        lake_map[k] = r
    result = Comparison(table, len(src), lake_count, duplicate_keys=duplicates)
    for k, row in src.items():
        other = lake_map.get(k)
        if other is None:
            result.missing_in_lake.append(row)
        elif other != row:
            result.different.append((row, other))
    for k, row in lake_map.items():
        if k not in src:
            result.extra_in_lake.append(row)
    return result


def compare_table(settings: Settings, catalog: Catalog, table: TableId) -> Comparison:
    """Compare the source table with its lake base table (source read in one consistent snapshot)."""
    base = catalog.load_table(lake.base_name(table))
    key = tuple(_key_of(base.properties))
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(COLUMNS_QUERY, (table.db, table.table))
        left_out = settings.excluded_columns(table.db, table.table)
        columns = {c.name: c for c in map(source_column, cur.fetchall()) if c.name not in left_out}
        # compared: the columns both sides have; a column dropped at the source and kept frozen in the lake
        # (`dropped_columns: keep`) is not compared; any other column on one side only is a difference
        frozen = json.loads(base.properties.get(FROZEN_COLUMNS) or "{}")
        fields = [f for f in base.schema().fields if f.name not in RESERVED and f.name in columns]
        differ = [f"{f.name!r} is in the lake but not at the source" for f in base.schema().fields
                  if f.name not in RESERVED and f.name not in columns and f.name not in frozen]
        lake_names = {f.name for f in base.schema().fields}
        differ += [f"{n!r} is at the source but not in the lake" for n in columns if n not in lake_names]
        names = [f.name for f in fields]
        kinds = [f.field_type for f in fields]
        arrow = base.scan(selected_fields=tuple(names)).to_arrow()
        source_types = [columns[n].column_type.lower() for n in names]
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        # the bootstrap's reading of each type (BIT as its number, SET in definition order, the zero-date rule)
        cols = ", ".join(f"{select_expr(columns[n])} AS {quote_ident(n)}" for n in names)
        cur.execute(f"SELECT {cols} FROM {quote_ident(table.db)}.{quote_ident(table.table)}")  # noqa: S608 - quoted identifiers
        source_rows = [_canonical_row(row, kinds, source_types) for row in cur.fetchall()]
        conn.rollback()
    finally:
        conn.close()
    lake_columns = [arrow.column(n).to_pylist() for n in names]
    lake_rows = [_canonical_row(row, kinds, source_types) for row in zip(*lake_columns, strict=True)]
    if not key:  # a table without a key: compared as a multiset
        result = compare_multiset(str(table), source_rows, lake_rows)
    else:
        result = compare_rows(str(table), names, key, source_rows, lake_rows)
    result.columns_differ = differ
    return result


def compare_multiset(table: str, source: Iterable[Row], lake_rows: Iterable[Row]) -> Comparison:
    """Pure: compare two bags of rows (a table without a key): each distinct row must occur as often in
    the lake as at the source; every surplus copy is listed once per copy."""
    src, lake_bag = Counter(source), Counter(lake_rows)
    result = Comparison(table, sum(src.values()), sum(lake_bag.values()))
    result.missing_in_lake = list((src - lake_bag).elements())
    result.extra_in_lake = list((lake_bag - src).elements())
    return result


def _canonical_row(row: Sequence[Any], kinds: Sequence[IcebergType], source_types: Sequence[str]) -> Row:
    return tuple(canonical(v, k, t) for v, k, t in zip(row, kinds, source_types, strict=True))


def _key_of(properties: dict[str, str]) -> list[str]:
    raw = properties.get(lake.PROP_KEY)
    if not raw:
        raise ValueError("the base table has no primary key property")
    return list(json.loads(raw))
