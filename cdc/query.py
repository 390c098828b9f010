"""`cdc sql`: read-only SQL over lake tables by `db.table`, with DuckDB over Iceberg scans."""

from __future__ import annotations

import re
from typing import Any

from cdc.config import Settings
from cdc.errors import ConfigError
from cdc.lake.catalog import open_catalog

_READ_ONLY = re.compile(r"^\s*(\(\s*)*(select|with|values|describe|show|summarize|from)\b", re.IGNORECASE)
_NAME = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\b")


def referenced_tables(query: str, known: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pure: the lake tables a query names as db.table."""
    found = {(m.group(1), m.group(2)) for m in _NAME.finditer(query)}
    return sorted(found & known)


def run_query(settings: Settings, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    if not _READ_ONLY.match(query) or ";" in query.strip().rstrip(";"):
        raise ConfigError("cdc sql runs one read-only query (SELECT / WITH ...)")
    import duckdb

    catalog = open_catalog(settings)
    known = {(str(ns[0]), str(ident[-1])) for ns in catalog.list_namespaces() for ident in catalog.list_tables(ns)}
    con = duckdb.connect(":memory:")
    try:
        for i, (db, table) in enumerate(referenced_tables(query, known)):
            arrow = catalog.load_table((db, table)).scan().to_arrow()
            view = f"__cdc_{i}"
            con.register(view, arrow)
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{db}"')
            con.execute(f'CREATE VIEW "{db}"."{table}" AS SELECT * FROM {view}')
        try:
            result = con.execute(query)
        except duckdb.Error as exc:
            raise ConfigError(f"query failed: {exc}") from exc
        columns = [d[0] for d in result.description or []]
        return columns, result.fetchall()
    finally:
        con.close()
