"""The key a table lands under: its primary key, a key declared in settings (`tables.<db.table>.key`),
or none (the table lands keyless, as a multiset); and the checks a declared key must pass at the source.

A declared key is not enforced by the source: the bootstrap checks that it is unique and never NULL
inside its consistent snapshot (two rows with one key would collapse into one in the lake, a NULL key
could never be matched); a NULL key part streamed later is dead-lettered by the decoder; a duplicate
inserted later is what `cdc check` finds (the lake holds one row where the source holds two).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cdc.bootstrap.source_schema import SourceColumn
from cdc.config import Settings
from cdc.errors import ConfigError
from cdc.events.model import TableId
from cdc.source import quote_ident


def primary_key(cur: Any, table: TableId) -> list[str]:
    """The source table's primary key columns in key order (empty: it has none)."""
    cur.execute(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
        (table.db, table.table),
    )
    return [str(r[0]) for r in cur.fetchall()]


def resolve_key(table: TableId, columns: Sequence[str], primary: Sequence[str], declared: Sequence[str] | None) -> list[str]:
    """Pure: the lake key of a source table: its primary key, else the key declared in settings, else none.

    A declared key must name existing columns. On a table with a primary key it must be exactly that key
    (same columns, same order): the primary key is what the source keeps unique, a different declared key
    could collapse rows the source keeps apart, and Debezium's message key would differ from the identity
    every other reader of the table uses.
    """
    if not declared:
        return list(primary)
    # MariaDB column names compare case-insensitively, and so does Debezium's message.key.columns
    by_lower = {c.lower(): c for c in columns}
    missing = [c for c in declared if c.lower() not in by_lower]
    if missing:
        raise ConfigError(f"tables.{table}.key names columns {missing} that {table} does not have")
    key = [by_lower[c.lower()] for c in declared]
    if primary and key != list(primary):
        raise ConfigError(f"tables.{table}.key {key} differs from the primary key {list(primary)} of {table}: "
                          "a declared key is for tables without one (remove it, or declare exactly the primary key)")
    return key


def key_violation(cur: Any, table: TableId, key: Sequence[str], nullable: Sequence[str]) -> str | None:
    """Why a declared key cannot key the lake copy as the source stands in `cur`'s transaction: rows with a
    NULL key part, or two rows with one key (the first such key is shown). None when the key is sound."""
    source = f"{quote_ident(table.db)}.{quote_ident(table.table)}"
    if nullable:
        cur.execute(f"SELECT COUNT(*) FROM {source} WHERE "  # noqa: S608 - quoted identifiers
                    + " OR ".join(f"{quote_ident(c)} IS NULL" for c in nullable))
        nulls = int(cur.fetchone()[0])
        if nulls:
            return f"{nulls} rows have a NULL in the declared key columns {list(nullable)}"
    cols = ", ".join(quote_ident(c) for c in key)
    cur.execute(f"SELECT {cols}, COUNT(*) FROM {source} GROUP BY {cols} HAVING COUNT(*) > 1 LIMIT 1")  # noqa: S608
    row = cur.fetchone()
    if row is not None:
        shown = ", ".join(f"{c}={v!r}" for c, v in zip(key, row[:-1], strict=True))
        return f"the declared key is not unique: {row[-1]} rows have {shown}"
    return None


def check_declared_key(settings: Settings, cur: Any, table: TableId, columns: Sequence[SourceColumn], key: Sequence[str]) -> None:
    """Refuse (ConfigError, exit 2) a key declared for a table without a primary key that is excluded,
    not unique or NULL somewhere, as `cur`'s transaction reads the table. A no-op for other tables."""
    if not key or not settings.table_settings(table.db, table.table).key or primary_key(cur, table):
        return
    left_out = settings.excluded_columns(table.db, table.table) & set(key)
    if left_out:
        raise ConfigError(f"{table}: declared key columns {sorted(left_out)} are in tables.{table}.exclude_columns: "
                          "a key cannot be left out")
    violation = key_violation(cur, table, key, [c.name for c in columns if c.name in key and c.nullable])
    if violation:
        raise ConfigError(f"{table}: {violation}; tables.{table}.key must be unique and never NULL at the source")
