"""`cdc check`: reconcile a source table with its lake base table at one consistent source position S.

1. MariaDB: one consistent snapshot (`START TRANSACTION WITH CONSISTENT SNAPSHOT`), whose binlog position
   S it reports; per bucket, the row count and the sum of 60-bit row hashes (`cdc.quality.checksum_sql`).
2. The lake: once the landing has recorded the table complete through S, the same aggregates over the
   lake as of S (`cdc.quality.lake_side`, rules in `cdc.quality.asof`), inside DuckDB.
3. Only differing buckets are drilled into: their 256 cells each, then the rows of differing cells, whose
   key, row hash and column texts say which keys are missing, extra or different and in which columns.
   Everything stays in the same source snapshot; memory is bounded by the drilled cells, never the table.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.catalog import Catalog

from cdc.bootstrap.source_schema import COLUMNS_QUERY, SourceColumn, source_column
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.events.position import STREAM, BinlogPosition, binlog_file_index
from cdc.lake import catalog as lake
from cdc.lake.contract import FROZEN_COLUMNS
from cdc.lake.schema import RESERVED
from cdc.quality import checksum_sql as cs
from cdc.quality.drill import Aggregates, KeyDiff, add, compare_keyed, compare_multiset, differing, row_of
from cdc.quality.lake_side import LakeSide, NotLanded, key_property, wait_landed
from cdc.source import connect

log = logging.getLogger(__name__)

MAX_CELLS = 2048  # differing cells whose rows are listed; more: the result says how many were not


@dataclass
class Reconciliation:
    table: str
    position: str  # binlog file:pos of the source snapshot (S)
    seq: int
    buckets: int = 0
    differing_buckets: int = 0
    source_rows: int = 0
    lake_rows: int = 0
    diffs: list[KeyDiff] = field(default_factory=list)
    not_evaluable: int = 0  # keys changed after S with no earlier change in the lake: left out
    late: int = 0  # keys the base holds a change of at or after S for (merged after S)
    touched: int = 0  # keys whose row as of S the lake side folded from changes (unmerged before S, or merged after)
    columns_differ: list[str] = field(default_factory=list)
    unexplained_cells: int = 0  # differing cells not listed (over MAX_CELLS) or with no differing row found
    not_comparable: str = ""
    seconds: float = 0.0  # the table's own work on both sides (the wait for the lake to land through S is shared)

    @property
    def equal(self) -> bool:
        return not (self.differs or self.not_comparable)

    @property
    def differs(self) -> bool:
        """A difference was found (a table not comparable as of S has none: the next check covers it)."""
        return bool(self.diffs or self.columns_differ or self.unexplained_cells)

    @property
    def result(self) -> str:
        if self.not_comparable:
            return "NOT COMPARED"
        return "EQUAL" if self.equal else "DIFFERENT"

    def of_kind(self, kind: str) -> list[KeyDiff]:
        return [d for d in self.diffs if d.kind == kind]


def snapshot_seq(binlog_file: str, position: int) -> int:
    """The `_seq` of a consistent snapshot's position: every change in it is below, every later one at or above."""
    return BinlogPosition(STREAM, binlog_file_index(binlog_file), position, 0).pack()


def compared_columns(base_fields: Sequence[Any], source: dict[str, SourceColumn], frozen: set[str]) -> tuple[list[cs.Compared], list[str]]:
    """Pure: the columns both sides have (in the lake's order), and each column on one side only as a difference
    (a frozen dropped column and excluded columns are not)."""
    ours = [f for f in base_fields if f.name not in RESERVED]
    compared = [cs.Compared(f.name, cs.family(f.field_type, source[f.name]), source[f.name]) for f in ours if f.name in source]
    differ = [f"{f.name!r} is in the lake but not at the source" for f in ours if f.name not in source and f.name not in frozen]
    names = {f.name for f in base_fields}
    differ += [f"{n!r} is at the source but not in the lake" for n in source if n not in names]
    return compared, differ


def open_snapshot(cur: Any) -> tuple[str, int]:
    """Start a consistent snapshot in UTC; its binlog file and position."""
    cur.execute("SET SESSION time_zone = '+00:00'")
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
    status = {str(k): str(v) for k, v in cur.fetchall()}
    return status["Binlog_snapshot_file"], int(status["Binlog_snapshot_position"])


def check_table(settings: Settings, catalog: Catalog, table: TableId, wait_seconds: float = 300.0,
                max_cells: int = MAX_CELLS) -> Reconciliation:
    """Reconcile one table (see the module doc)."""
    return check_tables(settings, catalog, [table], wait_seconds, max_cells)[0]


@dataclass
class _Planned:
    table: TableId
    key: list[str]
    columns: list[cs.Compared]
    result: Reconciliation
    hashing: cs.Hashing | None = None
    source: Aggregates = field(default_factory=dict)


def check_tables(settings: Settings, catalog: Catalog, tables: Sequence[TableId], wait_seconds: float = 300.0,
                 max_cells: int = MAX_CELLS, before_lake: Callable[[], None] | None = None) -> list[Reconciliation]:
    """Reconcile tables, all at one source position S: one snapshot, one wait for the lake to land through it.

    `before_lake` runs between the wait and the lake's side (tests: a merge there puts changes after S in the base).
    """
    started = time.monotonic()
    conn = connect(settings)
    try:
        cur = conn.cursor()
        planned = [_plan(settings, catalog, cur, t) for t in tables]
        binlog_file, pos = open_snapshot(cur)
        seq = snapshot_seq(binlog_file, pos)
        for p in planned:
            p.result.position, p.result.seq = f"{binlog_file}:{pos}", seq
            cur.execute("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                        (p.table.db, p.table.table))
            estimate = cur.fetchone()
            p.result.buckets = cs.bucket_count(int(estimate[0] or 0) if estimate else 0)
            p.hashing = cs.source_hashing(p.columns, p.key, p.result.buckets)
            source_started = time.monotonic()
            cur.execute(cs.source_buckets_sql(cs.source_table(p.table.db, p.table.table), p.hashing))
            p.source = add({}, cur.fetchall())
            p.result.seconds = time.monotonic() - source_started
        for p in planned:  # a table that does not land (halted, say) is not compared; the others still are
            try:
                wait_landed(catalog, p.table, seq, p.result.position, max(0.0, wait_seconds - (time.monotonic() - started)))
            except NotLanded as exc:
                p.result.not_comparable = str(exc)
        if before_lake is not None:
            before_lake()
        for p in planned:
            if p.result.not_comparable:
                continue
            table_started = time.monotonic()
            side = LakeSide(catalog, p.table, p.columns, p.key, seq, p.result.buckets)
            try:
                p.result.touched, p.result.late = side.touched, side.late
                if side.not_comparable:
                    p.result.not_comparable = side.not_comparable
                elif p.hashing is not None:
                    _compare(p.result, cur, cs.source_table(p.table.db, p.table.table), p.hashing, side, p.source,
                             p.columns, p.key, max_cells)
            finally:
                side.close()
            p.result.seconds += time.monotonic() - table_started
        conn.rollback()
    finally:
        conn.close()
    return [p.result for p in planned]


def _plan(settings: Settings, catalog: Catalog, cur: Any, table: TableId) -> _Planned:
    base = catalog.load_table(lake.base_name(table))
    key = key_property(base)
    cur.execute(COLUMNS_QUERY, (table.db, table.table))
    left_out = settings.excluded_columns(table.db, table.table)
    source = {c.name: c for c in map(source_column, cur.fetchall()) if c.name not in left_out}
    frozen = set(json.loads(base.properties.get(FROZEN_COLUMNS) or "{}"))
    columns, differ = compared_columns(base.schema().fields, source, frozen)
    return _Planned(table, key, columns, Reconciliation(str(table), "", 0, columns_differ=differ))


def _compare(result: Reconciliation, cur: Any, src_table: str, sh: cs.Hashing, side: LakeSide, src: Aggregates,
             columns: Sequence[cs.Compared], key: Sequence[str], max_cells: int) -> None:
    lake_agg = side.buckets()
    result.source_rows = sum(c for c, _ in src.values())
    result.lake_rows = sum(c for c, _ in lake_agg.values())
    buckets = differing(src, lake_agg)
    result.differing_buckets = len(buckets)
    result.not_evaluable = len(side.not_evaluable)
    if not buckets:
        return
    cur.execute(cs.source_cells_sql(src_table, sh, buckets))
    cells = differing(add({}, cur.fetchall()), side.cells(buckets))
    listed = cells[:max_cells]
    names = [c.name for c in columns]
    cur.execute(cs.source_rows_sql(src_table, sh, columns, key, listed))
    src_rows = [row_of(r, len(columns)) for r in cur.fetchall()]
    lake_rows = [row_of(r, len(columns)) for r in side.rows(listed)]
    if key:
        result.diffs, _ = compare_keyed(names, key, src_rows, lake_rows, side.not_evaluable)
    else:
        result.diffs = compare_multiset(names, src_rows, lake_rows)
    # cells not listed (over the cap) stay unexplained; so do listed ones when no row explains them (a side
    # misreading a value): a differing bucket never ends as EQUAL unless keys not evaluable as of S explain it
    result.unexplained_cells = len(cells) - len(listed)
    if not result.diffs and listed and not any(r.ident in side.not_evaluable for r in [*src_rows, *lake_rows]):
        result.unexplained_cells += len(listed)
