"""Pure planning of a source schema change against one lake table: what to rename, add, widen, drop or
freeze, or why the table must halt instead.

Applied by `cdc.ingest.landing` (streaming) and `cdc.bootstrap.reshape` (a rebuild). Renames come from
the DDL history (`cdc.ingest.ddl`): a row event only carries names, and a rename must keep the
Iceberg field id and the values, not become a drop plus an add.

| source change                          | lake (policy `evolve`)                                          |
|----------------------------------------|------------------------------------------------------------------|
| ADD COLUMN                             | added; rows older than the change read its default (the merge)  |
| DROP COLUMN                            | `dropped_columns: drop`: deleted; `keep`: frozen, last values   |
| RENAME / CHANGE COLUMN (DDL history)   | renamed in place (same field id, values kept)                   |
| int->long, float->double, decimal p up | widened in place                                                 |
| narrower than the lake column          | kept wide (the values fit)                                       |
| any other type change, a new key       | the table halts: column, old and new type, remedy                |
Policy `halt`: any change halts the table.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pyiceberg.schema import Schema
from pyiceberg.types import IcebergType

from cdc.events.model import Column, TableSchema
from cdc.lake import schema as lake_schema

# table properties (lake contract): see `cdc.lake.contract`
from cdc.lake.contract import COLUMN_DEFAULTS, FROZEN_COLUMNS, RENAMES, SCHEMA_SEQ

__all__ = ["COLUMN_DEFAULTS", "FROZEN_COLUMNS", "RENAMES", "SCHEMA_SEQ", "Plan", "Refused", "compose_renames", "plan",
           "translate"]


class Refused(Exception):
    """The change cannot be taken in place; `reason` names the column and the old and new types."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Plan:
    renames: tuple[tuple[str, str], ...] = ()  # lake name -> source name
    adds: tuple[Column, ...] = ()
    widens: tuple[tuple[str, IcebergType], ...] = ()  # lake column (after renames) -> wider type
    drops: tuple[str, ...] = ()
    freezes: tuple[str, ...] = ()
    key: tuple[str, ...] | None = None  # the key after a rename of a key column

    @property
    def empty(self) -> bool:
        return not (self.renames or self.adds or self.widens or self.drops or self.freezes or self.key)

    def describe(self) -> str:
        parts = [f"rename {o} -> {n}" for o, n in self.renames]
        parts += [f"add {c.name} {lake_schema.iceberg_type(c.type)}" for c in self.adds]
        parts += [f"widen {n} to {t}" for n, t in self.widens]
        parts += [f"drop {n}" for n in self.drops]
        parts += [f"keep the dropped column {n} frozen" for n in self.freezes]
        return ", ".join(parts)


def compose_renames(renames: Sequence[tuple[str, str]], names: Sequence[str]) -> dict[str, str]:
    """Pure: where each of `names` ends after the renames, in order (a -> b, b -> c: a ends as c)."""
    out: dict[str, str] = {}
    for name in names:
        current = name
        for old, new in renames:
            if current.casefold() == old.casefold():  # MariaDB column names are case-insensitive
                current = new
        if current != name:
            out[name] = current
    return out


def plan(
    lake_columns: Mapping[str, IcebergType],
    lake_key: Sequence[str],
    source: TableSchema,
    renames: Sequence[tuple[str, str]],
    *,
    frozen: Sequence[str] = (),
    excluded: Sequence[str] = (),
    dropped_columns: str = "drop",
    schema_changes: str = "evolve",
    key_columns_only: bool = False,
    readded: Sequence[str] = (),
    dropped: Sequence[str] = (),
) -> Plan:
    """What turns the lake table (`lake_columns`: its source columns, without metadata) into `source`.

    `renames`: the column renames the DDL history shows since the lake's schema, in order. A lake column
    the source no longer has is dropped (or frozen) only when it is not renamed; `excluded` columns
    (left out by settings) are dropped whatever the policy. `key_columns_only`: the tombstones table,
    which holds only the key. `readded`: columns the history shows dropped and added again: MariaDB
    refilled them, so the lake column is deleted and added anew (old values gone, the default backfilled).
    Renames may trade names between columns (a swap): `_apply` renames through temporary names.
    """
    source_by_name = {c.name: c for c in source.columns}
    back = [n for n in frozen if n in source_by_name]
    if back:
        # MariaDB fills the new column of every row with its default; the lake holds the frozen values
        raise Refused(f"columns {back} were dropped (kept frozen in the lake) and added again at the source")
    moved = compose_renames(renames, list(lake_columns))
    freed = {n.casefold() for n in dropped}
    # a rename may take a name another rename frees (a swap) or one a DROP frees (`DROP b, CHANGE a b`)
    renamed = tuple((old, new) for old, new in moved.items()
                    if new in source_by_name and (new not in lake_columns or new in moved or new.casefold() in freed))
    targets = dict(renamed)
    displaced = [n for n in lake_columns if n in targets.values() and n not in targets]
    after = {targets.get(n, n): t for n, t in lake_columns.items() if n not in displaced}
    key_after = tuple(dict(renamed).get(k, k) for k in lake_key)
    if source.key and lake_key and tuple(source.key) != key_after:
        raise Refused(f"the primary key changed from ({', '.join(lake_key)}) to ({', '.join(source.key)})")
    wanted = [c for c in source.columns if not key_columns_only or c.name in source.key]
    refused: list[str] = []
    widens: list[tuple[str, IcebergType]] = []
    adds: list[Column] = []
    again = {n.casefold() for n in readded}
    renewed = [n for n in after if n.casefold() in again and n in source_by_name and n not in dict(renamed).values()]
    for col in wanted:
        new_type = lake_schema.iceberg_type(col.type)
        old_type = after.get(col.name)
        if old_type is None or col.name in renewed:
            adds.append(col)
        elif lake_schema.widens(old_type, new_type):
            widens.append((col.name, new_type))
        elif not lake_schema.fits(old_type, new_type):
            refused.append(f"column {col.name!r} changed from {old_type} to {new_type}")
    if refused:
        raise Refused("; ".join(refused))
    gone = [n for n in after if n not in source_by_name and n not in frozen]
    if key_columns_only:
        gone = [n for n in gone if n in key_after]
    drops = tuple([*displaced, *(n for n in gone if dropped_columns == "drop" or n in excluded), *renewed])
    freezes = tuple(n for n in gone if n not in drops)
    result = Plan(renamed, tuple(adds), tuple(widens), drops, freezes, key_after if key_after != tuple(lake_key) else None)
    if schema_changes == "halt" and not result.empty:
        raise Refused(f"a schema change ({result.describe()}) and the table's policy is schema_changes: halt")
    return result


# ---- the bookkeeping a plan leaves in table properties (pure encoders/decoders) ----------------------


def read_json(properties: Mapping[str, str], key: str, default: Any) -> Any:
    text = properties.get(key)
    return json.loads(text) if text else default


def translate(values: Mapping[str, Any], seq: int, renames: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
    """Pure: an event's values under the lake's current names. `renames` is the changelog's log of
    [seq, old, new]: a rename applies to events older than it. None when nothing changes."""
    later = [(str(o), str(n)) for s, o, n in renames if seq < int(s)]
    if not later or not any(o in values for o, _ in later):
        return None
    out = dict(values)
    for old, new in later:
        if old in out:
            out[new] = out.pop(old)
    return out


@dataclass(frozen=True)
class Positions:
    """Where each change of a schema change happened at the source (from the DDL history), so that rows
    older than an ADD read its default and a frozen column keeps what changes before its DROP gave it.
    `fallback`: the first event with the new schema, when the history does not name the change."""

    fallback: int
    renamed: tuple[tuple[str, str, int], ...] = ()
    added: tuple[tuple[str, int], ...] = ()
    dropped: tuple[tuple[str, int], ...] = ()
    newest: int | None = None
    volatile: tuple[tuple[str, int], ...] = ()  # added with a DEFAULT that is not a constant
    redefined: tuple[tuple[str, int], ...] = ()  # MODIFY / ALTER COLUMN / CHANGE to the same name

    @property
    def readded(self) -> list[str]:
        """Columns dropped and added again (MariaDB refilled them with their default)."""
        return [n for n, s in self.added if any(d.casefold() == n.casefold() and ds <= s for d, ds in self.dropped)]

    def check(self, todo: Plan) -> None:
        """Refuse additions whose default rows older than the ADD read cannot be known from the stream: a
        DEFAULT that is not a constant (CURRENT_TIMESTAMP, an expression: MariaDB evaluated it at the ALTER),
        or a default redefined between the ADD and the first change that carries the column."""
        for column in todo.adds:
            name = column.name.casefold()
            if any(n.casefold() == name for n, _ in self.volatile):
                raise Refused(f"column {column.name!r} was added with a DEFAULT that is not a constant: the values MariaDB "
                              "gave the existing rows are not in the binlog")
            added_at = self.add(column.name)
            if any(n.casefold() == name and s > added_at for n, s in self.redefined):
                raise Refused(f"column {column.name!r} was redefined after its ADD COLUMN, before a change carried it: "
                              "the default the existing rows read is not known")

    def add(self, name: str) -> int:
        return next((s for n, s in reversed(self.added) if n.casefold() == name.casefold()), self.fallback)

    def drop(self, name: str) -> int:
        return next((s for n, s in reversed(self.dropped) if n.casefold() == name.casefold()), self.fallback)

    @property
    def schema(self) -> int:
        return self.newest if self.newest is not None else self.fallback


@dataclass
class Bookkeeping:
    """What the merge and later landings need to know about past changes (table properties)."""

    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # base: column -> {below, type, text}
    frozen: dict[str, int] = field(default_factory=dict)  # base: column -> seq of its drop

    @classmethod
    def of(cls, properties: Mapping[str, str]) -> Bookkeeping:
        return cls(read_json(properties, COLUMN_DEFAULTS, {}), read_json(properties, FROZEN_COLUMNS, {}))


def lake_source_columns(schema: Schema) -> dict[str, IcebergType]:
    """The lake table's source columns (its metadata columns left out), in order."""
    return {f.name: f.field_type for f in schema.fields if f.name not in lake_schema.RESERVED}


def default_text(value: Any) -> str | None:
    """Pure: a column default as the text the merge turns into a typed literal (None: NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dt.datetime):
        wall: dt.datetime = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        return wall.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
