"""The lake's aggregates and drill-down rows as of a source position S, computed in DuckDB over
pyiceberg scans (see `cdc.quality.asof` for the rules). The base is streamed batch by batch for each
level; only the keys changed around S are held whole."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThanOrEqual,
    Or,
)
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.table import Table

from cdc.errors import CdcError
from cdc.events.model import TableId
from cdc.lake import bookkeeping, catalog as lake, state
from cdc.lake.contract import (
    APPLIED_SEQ,
    BOOTSTRAP_SEQ,
    KAFKA_OFFSET,
    KAFKA_PARTITION,
    LANDED_COLUMN,
    MERGED_LANDED,
    MERGED_UPTO,
    OP,
    SEQ,
    TRUNCATED_BEFORE,
)
from cdc.quality import asof
from cdc.quality.checksum_sql import Compared, Hashing, duck_ident, lake_buckets_sql, lake_cells_sql, lake_hashing, lake_rows_sql
from cdc.quality.drill import Aggregates, add

log = logging.getLogger(__name__)

MAX_TOUCHED = 1_000_000  # keys changed around S held whole; above it the check is refused
PUSHDOWN_VALUES = 5_000  # key values sent to Iceberg as an `In` filter (prunes files); above it the scan is full
STREAM = "base_stream"
TOUCHED = "touched"
CHANGE_FIELDS = (OP, SEQ, KAFKA_PARTITION, KAFKA_OFFSET)


class NotLanded(CdcError):
    """The lake has not landed the table up to the check's source position in time."""

    exit_code = 3


def wait_landed(catalog: Catalog, table: TableId, seq: int, position: str, timeout: float) -> None:
    """Until the table's changelog holds every change before `seq` (the landing records it)."""
    deadline = time.monotonic() + timeout
    while True:
        through = state.landed_through(catalog).get(table)
        if through is not None and through.seq >= seq:
            return
        if time.monotonic() >= deadline:
            raise NotLanded(f"the lake has not landed {table} up to the check's source position {position} within "
                            f"{timeout:.0f} s: is `cdc ingest` running?")
        time.sleep(0.5)


def _summary_value(table: Table, name: str) -> str | None:
    return bookkeeping.value(table, name)  # the newest summary, or the property maintenance left it in


Part = tuple[list[Any], BooleanExpression]  # changelog files and the row filter that picks the part's rows


def rows_keeping(batches: pa.RecordBatchReader, column: str, values: Sequence[Any]) -> pa.Table:
    """Pure over a stream: the rows whose `column` is one of `values`, filtered batch by batch, so memory follows
    the rows kept, not the table (a pushed-down filter prunes only files, and not at all past a few thousand
    values or for binary and temporal keys)."""
    wanted = pa.array([v for v in set(values) if v is not None]).cast(batches.schema.field(column).type)
    kept = [b.filter(pc.is_in(b.column(column), value_set=wanted)) for b in batches]
    return pa.Table.from_batches([b for b in kept if b.num_rows], schema=batches.schema)


def recorded_floor(base: Table) -> int | None:
    """The truncate floor the base's merges published (in their commit summaries; older lakes kept it as a table
    property)."""
    found = [int(v) for v in (_summary_value(base, TRUNCATED_BEFORE), base.properties.get(TRUNCATED_BEFORE)) if v]
    return max(found) if found else None


class LakeSide:
    """The lake as of `seq` for one table; `buckets`, `cells` and `rows` mirror the source's levels."""

    def __init__(self, catalog: Catalog, table: TableId, columns: Sequence[Compared], key: Sequence[str], seq: int,
                 buckets: int) -> None:
        import duckdb

        self.table, self.columns, self.key, self.seq = table, list(columns), list(key), seq
        self.names = [c.name for c in columns]
        self.h: Hashing = lake_hashing(columns, key, buckets)
        self.base = catalog.load_table(lake.base_name(table))  # first: its folded-in changelog snapshot is in what follows
        self.changelog = catalog.load_table(lake.changelog_name(table))
        self.tombstones = catalog.load_table(lake.tombstones_name(table)) if key else None
        snap = self.base.current_snapshot()
        self.base_snapshot = snap.snapshot_id if snap is not None else None
        self.con = duckdb.connect()
        self.con.execute("SET threads = 2").fetchall()
        self.not_evaluable: set[str] = set()
        self.not_comparable = ""
        self.floor: int | None = None
        self.touched = 0
        self.late = 0  # keys merged after S (evaluated from the changelog)
        if key:
            self._prepare_keyed()
        else:
            self._prepare_keyless()

    # ---- reading the lake ----------------------------------------------------------------------
    def _scan(self, table: Table, fields: Sequence[str], row_filter: BooleanExpression | None = None,
              snapshot_id: int | None = None, keep: Sequence[Any] | None = None) -> pa.Table:
        """The rows of `table` (only those whose first key column is one of `keep`, batch by batch, when given)."""
        have = {f.name for f in table.schema().fields}
        picked = [f for f in fields if f in have]
        scan = table.scan(row_filter=row_filter or AlwaysTrue(), selected_fields=tuple(picked), snapshot_id=snapshot_id)
        data = scan.to_arrow() if keep is None else rows_keeping(scan.to_arrow_batch_reader(), self.key[0], keep)
        return self._complete(data, table, fields)

    def _complete(self, data: pa.Table, table: Table, fields: Sequence[str]) -> pa.Table:
        """`data` with every field of `fields` (a column the table lacks reads NULL, typed like the base's)."""
        base_schema = self.base.schema().as_arrow()
        for f in fields:
            if f not in data.column_names:
                typ = base_schema.field(f).type if f in base_schema.names else pa.string()
                data = data.append_column(f, pa.nulls(data.num_rows, typ))
        return data.select(list(fields))

    def _base_reader(self) -> pa.RecordBatchReader:
        fields = (*self.names, SEQ)
        return self.base.scan(selected_fields=fields, snapshot_id=self.base_snapshot).to_arrow_batch_reader()

    def _split(self) -> tuple[Part, Part]:
        """The changelog's rows as (files, row filter): (unmerged, merged). Merged is a row predicate on the landing
        number (`_cdc_landed` <= the base's merged one), which rows keep through compaction and expiry; a base merged
        before landing numbers existed is split by the files of the changelog snapshot it merged."""
        current = self.changelog.current_snapshot()
        if current is None:
            return ([], AlwaysTrue()), ([], AlwaysTrue())
        tasks = list(self.changelog.scan(snapshot_id=current.snapshot_id).plan_files())
        merged_landed = bookkeeping.value(self.base, MERGED_LANDED) if self.base_snapshot is not None else None
        if merged_landed is not None:
            n = int(merged_landed)
            return ((tasks, GreaterThan(LANDED_COLUMN, n)),  # type: ignore[call-arg, arg-type]
                    (tasks, Or(LessThanOrEqual(LANDED_COLUMN, n), IsNull(LANDED_COLUMN))))  # type: ignore[call-arg, arg-type]
        merged = bookkeeping.value(self.base, MERGED_UPTO) if self.base_snapshot is not None else None
        if merged is None or self.changelog.snapshot_by_id(int(merged)) is None:
            return (tasks, AlwaysTrue()), ([], AlwaysTrue())
        done = {t.file.file_path for t in self.changelog.scan(snapshot_id=int(merged)).plan_files()}
        return (([t for t in tasks if t.file.file_path not in done], AlwaysTrue()),
                ([t for t in tasks if t.file.file_path in done], AlwaysTrue()))

    def _read(self, tasks: list[Any], fields: Sequence[str], row_filter: BooleanExpression | None = None) -> pa.Table:
        """Rows of the given changelog files (every field of `fields`; a column the changelog lacks reads NULL)."""
        if not tasks:
            return self._empty(fields)
        have = {f.name for f in self.changelog.schema().fields}
        projected = self.changelog.schema().select(*[f for f in fields if f in have])
        data = ArrowScan(self.changelog.metadata, self.changelog.io, projected, row_filter or AlwaysTrue()).to_table(tasks)
        return self._complete(data, self.changelog, fields)

    def _empty(self, fields: Sequence[str]) -> pa.Table:
        schema = self.changelog.schema().as_arrow()
        return pa.table({f: pa.array([], type=schema.field(f).type) for f in fields})

    def _key_filter(self, values: list[Any]) -> BooleanExpression:
        """An `In` on the first key column when it prunes files cheaply, else everything."""
        distinct = {v for v in values if v is not None}
        if not distinct or len(distinct) > PUSHDOWN_VALUES or not all(isinstance(v, int | str | Decimal) for v in distinct):
            return AlwaysTrue()
        return In(self.key[0], distinct)  # type: ignore[call-arg, arg-type]

    # ---- the fold ------------------------------------------------------------------------------
    def _prepare_keyed(self) -> None:
        recorded = recorded_floor(self.base)
        if recorded is not None and recorded >= self.seq:
            self.not_comparable = "the table was truncated after the check's source position"
            return
        change_fields = (*self.names, *CHANGE_FIELDS)
        (unmerged_tasks, unmerged_filter), (merged_tasks, merged_filter) = self._split()
        unmerged = self._read(unmerged_tasks, change_fields, unmerged_filter)
        con = self.con
        con.register(asof.UNMERGED, unmerged)
        truncated = con.execute(f"SELECT max({duck_ident(SEQ)}) FROM {duck_ident(asof.UNMERGED)} "  # noqa: S608
                                f"WHERE {duck_ident(OP)} = 't' AND {duck_ident(SEQ)} < {asof.seq_literal(self.seq)}").fetchall()
        floors = [int(x) for x in (recorded, truncated[0][0] if truncated else None) if x is not None]
        self.floor = max(floors) if floors else None
        late_filter = GreaterThanOrEqual(SEQ, Decimal(self.seq))  # type: ignore[call-arg, arg-type]
        late = [self._scan(self.base, self.key, late_filter, self.base_snapshot)]
        if self.tombstones is not None and self.tombstones.current_snapshot() is not None:
            late.append(self._scan(self.tombstones, self.key, late_filter).cast(late[0].schema))
        # merged deletes at or after S: a merge publishes the base before its tombstones, and a key deleted after
        # S is then in neither the base nor the tombstones of `main` for a moment
        deleted = self._read(merged_tasks, (*self.key, OP),
                             And(merged_filter, And(late_filter, EqualTo(OP, "d"))))  # type: ignore[call-arg, arg-type]
        late.append(deleted.filter(pc.equal(deleted.column(OP), "d")).select(self.key).cast(late[0].schema))
        late_keys = pa.concat_tables(late)
        con.register(asof.LATE, late_keys)
        key_text = self.h.key_text or ""
        con.execute(f"CREATE TEMP TABLE {duck_ident(TOUCHED)} AS {asof.touched_keys_sql(key_text, self.seq, self.floor)}").fetchall()
        self.touched = int(con.execute(f"SELECT count(*) FROM {duck_ident(TOUCHED)}").fetchall()[0][0])  # noqa: S608 - built here
        self.late = int(con.execute(f"SELECT count(DISTINCT {key_text}) FROM {duck_ident(asof.LATE)}").fetchall()[0][0])  # noqa: S608
        if self.touched > MAX_TOUCHED:
            raise CdcError(f"{self.table}: {self.touched} keys changed around the check's source position (more than "
                           f"{MAX_TOUCHED}): merge, then check again")
        first = self.key[0]
        touched_values = (unmerged.column(first).to_pylist() + late_keys.column(first).to_pylist()) if self.touched else []
        base_rows = self._scan(self.base, (*self.names, SEQ), self._key_filter(touched_values), self.base_snapshot,
                               keep=touched_values) if self.touched else self._empty_base()
        con.register("touched_scan", base_rows)
        con.execute(f"CREATE TEMP TABLE {duck_ident(asof.TOUCHED_BASE)} AS SELECT * FROM touched_scan "  # noqa: S608
                    f"WHERE {key_text} IN (SELECT _k FROM {duck_ident(TOUCHED)})").fetchall()
        con.unregister("touched_scan")
        tomb_fields = (*self.key, SEQ)
        tombs = self._scan(self.tombstones, tomb_fields, keep=touched_values) \
            if self.tombstones is not None and self.touched else None
        con.register(asof.TOMBS, tombs if tombs is not None else self._empty_base().select(list(tomb_fields)))
        late_values = late_keys.column(first).to_pylist()
        history = self._scan(self.changelog, change_fields, self._key_filter(late_values), keep=late_values) \
            if late_keys.num_rows else self._empty(change_fields)
        con.register(asof.HISTORY, history)
        trusted = _summary_value(self.base, BOOTSTRAP_SEQ)
        rows_sql, unknown_sql = asof.fold_sql(self.names, key_text, self.seq, self.floor, int(trusted) if trusted else None)
        con.execute(f"CREATE TEMP TABLE {duck_ident(asof.ASOF)} AS {rows_sql}").fetchall()
        self.not_evaluable = {str(r[0]) for r in con.execute(unknown_sql).fetchall()}
        log.info("%s as of _seq %d: %d keys touched, %d not evaluable, floor %s", self.table, self.seq, self.touched,
                 len(self.not_evaluable), self.floor)

    def _empty_base(self) -> pa.Table:
        schema = self.base.schema().as_arrow()
        return pa.table({f: pa.array([], type=schema.field(f).type) for f in (*self.names, SEQ)})

    def _prepare_keyless(self) -> None:
        """A table without a key is compared when its base is exactly a point before S: the fold applied no
        change at or after S and no change before S waits unmerged."""
        applied = _summary_value(self.base, APPLIED_SEQ) or _summary_value(self.base, BOOTSTRAP_SEQ)
        if applied is not None and int(applied) >= self.seq:
            self.not_comparable = "the base (no key) was merged past the check's source position: check again"
            return
        tasks, unmerged_filter = self._split()[0]
        unmerged = self._read(tasks, (SEQ,), unmerged_filter)
        self.con.register(asof.UNMERGED, unmerged)
        above = f" AND {duck_ident(SEQ)} > {asof.seq_literal(int(applied))}" if applied is not None else ""
        waiting = self.con.execute(f"SELECT count(*) FROM {duck_ident(asof.UNMERGED)} "  # noqa: S608
                                   f"WHERE {duck_ident(SEQ)} < {asof.seq_literal(self.seq)}{above}").fetchall()
        if waiting and int(waiting[0][0]):
            self.not_comparable = (f"{int(waiting[0][0])} changes before the check's source position are not merged (no key: "
                                   "compared only at a merged point): merge, then check again")

    # ---- the levels ----------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{duck_ident(SEQ)} > {asof.seq_literal(self.floor)}" if self.floor is not None else "TRUE"

    def _three(self, build: Any) -> Aggregates:
        """Every base row, minus the touched keys' base rows, plus their rows as of S."""
        self.con.register(STREAM, self._base_reader())
        out = add({}, self.con.execute(build(STREAM, self._where())).fetchall())
        if self.key:
            out = add(out, self.con.execute(build(asof.TOUCHED_BASE, self._where())).fetchall(), -1)
            out = add(out, self.con.execute(build(asof.ASOF, "TRUE")).fetchall())
        return out

    def buckets(self) -> Aggregates:
        return self._three(lambda rel, where: lake_buckets_sql(rel, self.h, where))

    def cells(self, buckets: Sequence[int]) -> Aggregates:
        return self._three(lambda rel, where: lake_cells_sql(rel, self.h, buckets, where))

    def rows(self, cells: Sequence[int]) -> list[tuple[Any, ...]]:
        self.con.register(STREAM, self._base_reader())
        where = self._where()
        if self.key:
            where += f" AND {self.h.key_text} NOT IN (SELECT _k FROM {duck_ident(TOUCHED)})"  # noqa: S608 - built here
        out = self.con.execute(lake_rows_sql(STREAM, self.h, self.columns, self.key, cells, where)).fetchall()
        if self.key:
            out += self.con.execute(lake_rows_sql(asof.ASOF, self.h, self.columns, self.key, cells)).fetchall()
        return out

    def close(self) -> None:
        self.con.close()


def key_property(table: Table) -> list[str]:
    raw = table.properties.get(lake.PROP_KEY)
    if raw is None:
        raise CdcError(f"{'.'.join(table.name())} has no {lake.PROP_KEY} property: not a cdc base table")
    return list(json.loads(raw))
