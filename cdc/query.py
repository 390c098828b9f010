"""`cdc sql`: one read-only query over lake tables by `db.table`, in a sandboxed DuckDB over Iceberg scans.

Each lake table the query names is registered as a pyarrow `Dataset` whose `scanner()` DuckDB calls
with the columns and the filter it needs: the columns become the Iceberg scan's `selected_fields`,
the conjuncts of the filter that map onto Iceberg expressions become its `row_filter` (files and row
groups are pruned by their statistics), and the whole filter is applied again in Arrow, so a
conjunct Iceberg cannot take only scans more, never answers differently. Data files are read one
after the other as DuckDB asks for batches: a `LIMIT` stops reading.

After registering the tables, DuckDB is locked down: no file, network or extension access, no
replacement scans of Python variables, and no setting can be changed by the query.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as pads

from cdc.config import Settings
from cdc.errors import ConfigError
from cdc.ingest.capture import MARKER_DB
from cdc.lake.catalog import open_catalog

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table

# Settings applied after the lake views exist; lock_configuration last, so nothing can undo them.
SANDBOX = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET python_enable_replacements = false",
    "SET lock_configuration = true",
)
_READ_STATEMENTS = {"SELECT"}  # DuckDB parses DESCRIBE, SHOW, SUMMARIZE, VALUES and FROM-first queries as SELECT


def one_line(exc: BaseException) -> str:
    """Pure: the first line of DuckDB's message (the rest repeats the query with a caret)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_read_only(query: str) -> None:
    """One statement, and a read: parsed by DuckDB, so quotes, comments and `;` in strings are understood."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise ConfigError(f"cannot parse the query: {one_line(exc)}") from exc
    if len(statements) != 1:
        raise ConfigError(f"cdc sql runs one statement, this text holds {len(statements)}")
    kind = statements[0].type.name
    if kind not in _READ_STATEMENTS:
        raise ConfigError(f"cdc sql runs one read-only query (SELECT, WITH, VALUES, DESCRIBE); this is a {kind} statement")


def referenced_tables(query: str, known: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The lake tables whose name the query mentions (by table name: DuckDB resolves the schema part)."""
    import duckdb

    try:
        names = {n.lower() for n in duckdb.get_table_names(query)}
    except duckdb.Error as exc:
        raise ConfigError(f"cannot parse the query: {one_line(exc)}") from exc
    return sorted(t for t in known if t[1].lower() in names)


# ------------------------------------------------------------------------- filter -> Iceberg
_TERM = re.compile(
    r"^\((?P<col>[A-Za-z_][A-Za-z0-9_]*) (?P<op>==|!=|<=|>=|<|>) (?P<lit>-?[0-9]+|\"[^\"\\]*\")\)$"
    r"|^is_valid\((?P<valid>[A-Za-z_][A-Za-z0-9_]*)\)$"
)
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}


def _conjuncts(text: str) -> list[str]:
    """Pure: the top-level `and` terms of a printed pyarrow expression (quotes and brackets respected)."""
    def strip(t: str) -> str:
        while t.startswith("(") and t.endswith(")") and _balanced(t[1:-1]):
            inner = t[1:-1]
            if _split_and(inner) == [inner]:
                return t
            t = inner
        return t

    out: list[str] = []
    pending = [strip(text.strip())]
    while pending:
        term = pending.pop()
        parts = _split_and(term)
        if parts == [term]:
            out.append(term)
        else:
            pending.extend(strip(p) for p in parts)
    return out


def _scan(text: str) -> Iterator[tuple[int, int, bool]]:
    """Each character's index, the bracket depth after it, and whether it is inside double quotes."""
    depth, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth -= 1
        yield i, depth, quoted


def _balanced(text: str) -> bool:
    steps = list(_scan(text))
    return all(depth >= 0 for _, depth, _ in steps) and (not steps or (steps[-1][1] == 0 and not steps[-1][2]))


def _split_and(text: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for i, depth, quoted in _scan(text):
        if i >= start and not quoted and depth == 0 and text.startswith(" and ", i):
            parts.append(text[start:i])
            start = i + 5
    parts.append(text[start:])
    return [p.strip() for p in parts]


def iceberg_filter(arrow_filter: str | None, types: dict[str, str]) -> BooleanExpression:
    """Pure: the part of DuckDB's pushed-down filter (printed by pyarrow) that Iceberg can prune with.

    Only comparisons of an integer or string column with a literal of its own kind, and `IS NOT
    NULL`, are taken; every other conjunct is left out (a wider scan; Arrow applies the full filter).
    `types` maps column name -> "int" or "string" for the columns that may be used.
    """
    from pyiceberg.expressions import (
        AlwaysTrue,
        And,
        EqualTo,
        GreaterThan,
        GreaterThanOrEqual,
        LessThan,
        LessThanOrEqual,
        NotEqualTo,
        NotNull,
        Reference,
    )

    ops: dict[str, Any] = {"==": EqualTo, "!=": NotEqualTo, "<": LessThan, "<=": LessThanOrEqual, ">": GreaterThan,
                           ">=": GreaterThanOrEqual}
    result: BooleanExpression = AlwaysTrue()
    if not arrow_filter or arrow_filter == "None":
        return result
    for term in _conjuncts(arrow_filter):
        m = _TERM.match(term)
        if m is None:
            continue
        if m.group("valid"):
            if m.group("valid") in types:
                result = And(result, NotNull(term=Reference(m.group("valid"))))
            continue
        col, op, lit = m.group("col"), m.group("op"), m.group("lit")
        kind = types.get(col)
        value: int | str
        if kind == "int" and not lit.startswith('"'):
            value = int(lit)
        elif kind == "string" and lit.startswith('"'):
            value = lit[1:-1]
        else:
            continue
        result = And(result, ops[op](col, value))
    return result


def _prunable_types(table: Table) -> dict[str, str]:
    from pyiceberg.types import IntegerType, LongType, StringType

    out: dict[str, str] = {}
    for f in table.schema().fields:
        if isinstance(f.field_type, IntegerType | LongType):
            out[f.name] = "int"
        elif isinstance(f.field_type, StringType):
            out[f.name] = "string"
    return out


def _read_file(arrow_scan: Any, task: Any) -> Iterator[pa.RecordBatch]:
    """The batches of one data file (with its deletes applied)."""
    yield from arrow_scan.to_record_batches([task])


class IcebergDataset(pads.Dataset):  # type: ignore[misc]
    """An Iceberg table as DuckDB sees it: a dataset whose `scanner()` receives DuckDB's pushdowns."""

    def __init__(self, table: Table) -> None:  # noqa: D107 - pyarrow's constructor must not run
        from pyiceberg.io.pyarrow import schema_to_pyarrow

        self._table = table
        self._schema = schema_to_pyarrow(table.schema())
        self._types = _prunable_types(table)

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def scanner(self, columns: list[str] | None = None, filter: Any = None, **kwargs: Any) -> _LazyScanner:  # noqa: A002
        """What DuckDB calls with its pushdowns; the batches are produced only as DuckDB pulls them."""
        from pyiceberg.io.pyarrow import ArrowScan, schema_to_pyarrow

        text = None if filter is None else str(filter)
        names = list(self._schema.names)
        wanted = names if columns is None else list(columns)
        if text:  # the filter's columns too (a name inside a literal only widens the read)
            wanted += [n for n in names if n in text and n not in wanted]
        if not wanted:
            wanted = names[:1]
        scan = self._table.scan(row_filter=iceberg_filter(text, self._types), selected_fields=tuple(wanted))
        projected = scan.projection()
        target = schema_to_pyarrow(projected)
        arrow_scan = ArrowScan(scan.table_metadata, scan.io, projected, scan.row_filter, scan.case_sensitive)
        out_schema = target if columns is None else pa.schema([target.field(c) for c in columns])

        def batches() -> Iterator[pa.RecordBatch]:
            # pyarrow's Scanner.from_batches would read ahead to the end: a LIMIT must stop the reading
            for task in scan.plan_files():
                for batch in _read_file(arrow_scan, task):
                    batch = batch.cast(target)
                    if filter is not None:
                        batch = batch.filter(filter)
                    yield batch if columns is None else batch.select(columns)

        return _LazyScanner(pa.RecordBatchReader.from_batches(out_schema, batches()))


class _LazyScanner:
    """The part of `pyarrow.dataset.Scanner` DuckDB uses: `to_reader()`."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self._reader = reader

    def to_reader(self) -> pa.RecordBatchReader:
        return self._reader


def run_query(settings: Settings, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only query; a refused or failing query is a `ConfigError` of one line."""
    check_read_only(query)
    import duckdb

    catalog = open_catalog(settings)
    known = {(str(ns[0]), str(ident[-1])) for ns in catalog.list_namespaces() if ns[0] != MARKER_DB
             for ident in catalog.list_tables(ns)}
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        for i, (db, table) in enumerate(referenced_tables(query, known)):
            view = f"__cdc_{i}"
            con.register(view, IcebergDataset(catalog.load_table((db, table))))
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{db.replace(chr(34), chr(34) * 2)}"')
            con.execute(f'CREATE VIEW "{db.replace(chr(34), chr(34) * 2)}"."{table.replace(chr(34), chr(34) * 2)}" '
                        f"AS SELECT * FROM {view}")
        for statement in SANDBOX:
            con.execute(statement)
        try:
            result = con.execute(query)
            columns = [d[0] for d in result.description or []]
            return columns, result.fetchall()
        except duckdb.Error as exc:
            raise ConfigError(f"query failed: {one_line(exc)}") from exc
    finally:
        con.close()
