"""`cdc bootstrap DB.TABLE [--rebuild]`: a consistent snapshot of one source table into its base table.

How the seam stays exact:
1. Note the changelog's current snapshot C (before the source snapshot is taken).
2. `START TRANSACTION WITH CONSISTENT SNAPSHOT`; MariaDB reports the binlog position S the snapshot
   corresponds to (`binlog_snapshot_file/position`).
3. Read the table in primary-key chunks inside that transaction (memory stays bounded) and write
   each chunk to a fresh Iceberg branch of the base table, every row with `_seq` just below S.
4. Point `main` at the branch head in one commit: readers see the old table or the new one.
   The new head records C as merged, so the next merge folds every change landed after C: changes
   at or after S are newer than the snapshot rows and apply; older ones lose the `_seq` comparison.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import resource
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import AlwaysTrue

from cdc import faults
from cdc.bootstrap.keys import check_declared_key, primary_key, resolve_key
from cdc.bootstrap.reshape import reshape
from cdc.bootstrap.source_schema import (
    COLUMNS_QUERY,
    SourceColumn,
    column_type,
    select_expr as source_select_expr,
    source_column,
    table_schema,
    zero_date_condition,
)
from cdc.config import Settings, TableOverride
from cdc.errors import ConfigError, DecodeError
from cdc.events.booleans import strict_bool
from cdc.events.model import ColumnType, Kind, TableId
from cdc.events.position import _ROW_SPAN, STREAM, BinlogPosition, binlog_file_index
from cdc.ingest.capture import CaptureRules, unsupported_name
from cdc.ingest.commit import landed_offsets
from cdc.ingest.landing import anchor_bootstrap, unbucketable_key
from cdc.ingest.watermarks import topic_ids, watermarks
from cdc.lake import bookkeeping, catalog as lake, state
from cdc.lake.contract import BOOTSTRAP_POSITION, BOOTSTRAP_SEQ, MERGED_LANDED, SEQ, SOURCE_TS, reserved_name
from cdc.retry import RetryPolicy, retrying
from cdc.source import connect, quote_ident

log = logging.getLogger(__name__)

ASSUMED_ROWS_PER_SECOND = 5_000  # conservative, for the binlog-retention check


@dataclass
class BootstrapReport:
    table: str
    rows: int
    chunks: int
    seconds: float
    binlog_file: str
    binlog_position: int
    peak_rss_mb: float
    rebuilt: bool

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


# ---- checks before starting ------------------------------------------------------------------


def _source_columns(cur: Any, table: TableId, declared: Sequence[str] | None = None) -> tuple[list[SourceColumn], list[str]]:
    cur.execute(COLUMNS_QUERY, (table.db, table.table))
    columns = [source_column(row) for row in cur.fetchall()]
    if not columns:
        raise ConfigError(f"source table {table} does not exist")
    return columns, resolve_key(table, [c.name for c in columns], primary_key(cur, table), declared)


def check_binlog(variables: dict[str, str], rows_estimate: int) -> None:
    """Pure: the binlog is on, row-based, and kept long enough for the expected duration."""
    if variables.get("log_bin", "OFF").upper() != "ON":
        raise ConfigError("the source has no binlog (log_bin=OFF): changes during the bootstrap would be lost")
    if variables.get("binlog_format", "").upper() != "ROW":
        raise ConfigError(f"binlog_format is {variables.get('binlog_format')}, not ROW")
    seconds = int(variables.get("binlog_expire_logs_seconds", "0") or 0)
    if seconds == 0:
        seconds = int(float(variables.get("expire_logs_days", "0") or 0) * 86_400)
    expected = rows_estimate / ASSUMED_ROWS_PER_SECOND
    if seconds and seconds < 3 * expected + 3_600:
        raise ConfigError(
            f"binlog retention is {seconds} s, but the bootstrap of ~{rows_estimate} rows may take ~{expected:.0f} s: "
            "keep the binlog at least 3x that plus an hour, or the hand-off to streaming could find it purged"
        )


def preflight(settings: Settings, catalog: Catalog, table: TableId, rebuild: bool) -> tuple[list[SourceColumn], list[str]]:
    """Every check that refuses with exit code 2, before anything is written."""
    declared = settings.table_settings(table.db, table.table).key
    conn = connect(settings)
    try:
        cur = conn.cursor()
        columns, key = _source_columns(cur, table, declared)
        columns = value_checks(cur, table, columns, key, settings.table_settings(table.db, table.table).booleans)
        cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                    "('log_bin', 'binlog_format', 'expire_logs_days', 'binlog_expire_logs_seconds')")
        variables = {str(k): str(v) for k, v in cur.fetchall()}
        cur.execute("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (table.db, table.table))
        row = cur.fetchone()
        check_binlog(variables, int(row[0] or 0) if row else 0)
        check_declared_key(settings, cur, table, columns, key)  # again in the snapshot; here before anything is written
    finally:
        conn.close()
    reason = unsupported_name(table)
    if reason:
        raise ConfigError(f"{table} cannot be landed: {reason}")
    clash = [c.name for c in columns if reserved_name(c.name)]
    if clash:
        raise ConfigError(f"{table}: source columns {clash} collide with the lake's own column names (`_op`, `_seq`, "
                          "`_source_ts`, `_ingested_at`, `_kafka_*`, `_cdc_*`, in any letter case): rename them at the source")
    base_exists = catalog.table_exists(lake.base_name(table))
    populated = base_exists and catalog.load_table(lake.base_name(table)).current_snapshot() is not None
    if rebuild and not base_exists:
        raise ConfigError(f"{table} has no lake table to rebuild: run `cdc bootstrap {table}` without --rebuild")
    if not rebuild and populated:
        raise ConfigError(f"{table} is already in the lake: use --rebuild to rebuild it")
    return columns, key


# ---- reading the source ----------------------------------------------------------------------


def select_expr(column: SourceColumn) -> str:
    """Read each type in the form Debezium delivers it (shared with `cdc check`)."""
    return source_select_expr(column)


def _converter(t: ColumnType, column: SourceColumn) -> Callable[[Any], Any]:
    kind = t.kind
    if kind is Kind.BOOLEAN and column.boolean:
        return lambda v: _strict_bool(v, column.name)
    if kind is Kind.BOOLEAN:
        return lambda v: bool(int(v))  # BIT(1), read as its number
    if kind is Kind.DECIMAL:
        return lambda v: Decimal(v)  # also BIT(64) and BIGINT UNSIGNED, read as integers
    if kind is Kind.BIG_DECIMAL:
        return lambda v: format(Decimal(v), "f")
    if kind is Kind.BINARY:
        return lambda v: bytes(v)
    if kind is Kind.STRING:
        return lambda v: v.decode() if isinstance(v, bytes | bytearray) else str(v)
    if kind is Kind.TIMESTAMPTZ:
        return lambda v: v.replace(tzinfo=dt.UTC)
    if kind is Kind.TIME_MICROS:
        return lambda v: (v.days * 86_400 + v.seconds) * 1_000_000 + v.microseconds
    return lambda v: v


def _strict_bool(v: Any, name: str) -> bool:
    try:
        return strict_bool(int(v), name)
    except DecodeError as exc:  # the value changed after the pre-flight check read the table
        raise ConfigError(f"{exc}: fix the source rows or remove the column from the list") from exc


def value_checks(cur: Any, table: TableId, columns: Sequence[SourceColumn], key: Sequence[str],
                 booleans: Sequence[str]) -> list[SourceColumn]:
    """The columns, the ones in `tables.<db.table>.booleans` marked; refuses (ConfigError) a boolean
    column that is no integer or holds a value other than 0/1, and a zero date in a key column."""
    source = f"{quote_ident(table.db)}.{quote_ident(table.table)}"
    by_name = {c.name: c for c in columns}
    unknown = [b for b in booleans if b not in by_name]
    if unknown:
        raise ConfigError(f"tables.{table}.booleans names columns {unknown} that {table} does not have")
    marked: list[SourceColumn] = []
    for c in columns:
        if c.name in booleans:
            if column_type(c.data_type, c.column_type, boolean=True).kind is not Kind.BOOLEAN:
                raise ConfigError(f"tables.{table}.booleans: column {c.name!r} is {c.column_type}, not an integer column")
            q = quote_ident(c.name)
            cur.execute(f"SELECT COUNT(*), MIN({q}), MAX({q}) FROM {source} WHERE {q} NOT IN (0, 1)")  # noqa: S608
            bad, low, high = cur.fetchone()
            if int(bad):
                raise ConfigError(f"{table}: column {c.name!r} is listed in tables.{table}.booleans but {int(bad)} rows hold "
                                  f"values other than 0/1 (from {low} to {high}): fix them at the source or remove the column "
                                  "from the list (it then lands as its exact integer)")
            c = dataclasses.replace(c, boolean=True)
        marked.append(c)
    dated = [by_name[k] for k in key if k in by_name and by_name[k].data_type.lower() in ("date", "datetime", "timestamp")]
    if dated:
        cur.execute(f"SELECT COUNT(*) FROM {source} WHERE "  # noqa: S608 - quoted identifiers
                    + " OR ".join(zero_date_condition(c) for c in dated))
        zeros = int(cur.fetchone()[0])
        if zeros:
            raise ConfigError(f"{table}: {zeros} rows have a zero date in the key columns {[c.name for c in dated]}: "
                              "the lake cannot key them (streaming would land them under the epoch or NULL); fix them at the source")
    return marked


# ENUM sorts by its index and SET by its bitmask, but compared with a string they compare as text:
# a chunk boundary must be carried and compared as the number (`col+0`) to agree with the order.
_NUMERIC_ORDER = frozenset({"enum", "set"})


def key_position_expr(column: SourceColumn) -> str | None:
    """Pure: the extra expression a key part's position is carried in, or None when its value serves."""
    if column.data_type.lower() in _NUMERIC_ORDER:
        return f"{quote_ident(column.name)}+0"
    return None


@dataclass(frozen=True)
class ChunkQuery:
    """Keyset pagination over the primary key: the first chunk, then every chunk after a position."""

    first: str  # no parameters
    next: str  # one parameter per key part: the position of the previous chunk's last row
    width: int  # the columns a row holds, in `columns` order; extra position columns follow
    positions: tuple[int, ...]  # where each key part's position is in a result row


def chunk_query(table: TableId, columns: Sequence[SourceColumn], key: Sequence[str], limit: int) -> ChunkQuery:
    """Pure: the chunk SELECTs.

    Rows are ordered by the key columns themselves (the primary key index gives that order; an ENUM
    or SET column orders by its number, exactly like `col+0`, which could not use the index) and the
    next chunk starts after the previous chunk's last row compared in that same order: ENUM/SET key
    parts as `col+0` against the number carried in an extra column, every other part against the
    value as read (its exact value, e.g. a BIT as its integer, a string with its trailing spaces,
    compared under the column's own collation).
    """
    by_name = {c.name: c for c in columns}
    key_columns = [by_name[k] for k in key]
    extra: list[str] = []
    compared: list[str] = []
    positions: list[int] = []
    for c in key_columns:
        expr = key_position_expr(c)
        if expr is None:
            compared.append(quote_ident(c.name))
            positions.append(columns.index(c))
        else:
            compared.append(expr)
            positions.append(len(columns) + len(extra))
            extra.append(expr)
    select = ", ".join([select_expr(c) for c in columns] + extra)
    source = f"{quote_ident(table.db)}.{quote_ident(table.table)}"
    if not key_columns:  # nothing to page by: one pass (`read_chunks` streams it)
        return ChunkQuery(f"SELECT {select} FROM {source}", "", len(columns), ())  # noqa: S608 - quoted identifiers
    order = ", ".join(quote_ident(c.name) for c in key_columns)
    after = f"({', '.join(compared)}) > ({', '.join(['%s'] * len(key_columns))})"
    tail = f" ORDER BY {order} LIMIT {int(limit)}"
    return ChunkQuery(
        first=f"SELECT {select} FROM {source}{tail}",  # noqa: S608 - quoted identifiers, an int
        next=f"SELECT {select} FROM {source} WHERE {after}{tail}",  # noqa: S608 - values are parameters
        width=len(columns),
        positions=tuple(positions),
    )


def read_chunks(cur: Any, query: ChunkQuery, limit: int) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in chunks of at most `limit`, in the caller's transaction.

    Keyed: one SELECT per chunk, after the previous chunk's last key. Without a key there is nothing to
    page by: one SELECT whose rows the unbuffered cursor hands over `limit` at a time as they arrive from
    the server, so memory stays bounded (the connection is busy with it until the last row is read).
    """
    if not query.positions:
        cur.execute(query.first)
        while rows := cur.fetchmany(limit):
            yield rows
        return
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            cur.execute(query.first)
        else:
            cur.execute(query.next, last)
        rows = cur.fetchall()
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][i] for i in query.positions)


def bootstrap(
    settings: Settings,
    table: TableId,
    buckets: int | None = None,
    rebuild: bool = False,
    chunk_rows: int = 100_000,
    on_progress: Callable[[int, int], None] | None = None,
) -> BootstrapReport:
    """Snapshot `table` into its lake base table (see the module doc for the seam)."""
    started = time.monotonic()
    catalog = lake.open_catalog(settings)
    columns, key = preflight(settings, catalog, table, rebuild)
    left_out = settings.excluded_columns(table.db, table.table)
    if left_out & set(key):
        raise ConfigError(f"{table}: key columns {sorted(left_out & set(key))} are in tables.{table}.exclude_columns: "
                          "a key cannot be left out")
    columns = [c for c in columns if c.name not in left_out]  # excluded columns are never read
    _ensure_captured(settings, catalog, table)
    schema = table_schema(columns, key)
    unbucketable = unbucketable_key(schema)
    if unbucketable:
        raise ConfigError(f"{table}: {unbucketable}; declare a primary key that starts with another column")
    if buckets is not None:
        settings = settings.model_copy(deep=True)
        settings.tables[str(table)] = TableOverride(buckets=buckets)
    changelog = lake.ensure_tables(catalog, settings, table, schema)
    landed_before = changelog.current_snapshot()
    landed_number = bookkeeping.landing(changelog).landed  # every changelog row numbered up to it is older
    # the seam in Kafka: every message at or after these offsets was written after the snapshot's
    # position or is older than it (and loses to the snapshot rows); read before the snapshot is taken
    rules = CaptureRules.from_settings(settings)
    anchor = _shared_topic_floor(settings, catalog, rules, table,
                                 {p: high for p, (_, high) in watermarks(settings, rules.topic(table)).items()})
    converters = [_converter(c.type, src) for c, src in zip(schema.columns, columns, strict=True)]
    query = chunk_query(table, columns, key, chunk_rows)
    branch = f"cdc-bootstrap-{uuid.uuid4().hex[:12]}"
    conn = connect(settings)
    rows_done = chunks = 0
    reshaped = False
    try:
        try:
            cur = conn.cursor()
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = {str(k): str(v) for k, v in cur.fetchall()}
            binlog_file, position = status["Binlog_snapshot_file"], int(status["Binlog_snapshot_position"])
            # just below the first event after the snapshot: later changes are newer, earlier ones older
            seq = Decimal(BinlogPosition(STREAM, binlog_file_index(binlog_file), position - 1, _ROW_SPAN - 1).pack())
            cur.execute(f"SELECT COUNT(*) FROM {quote_ident(table.db)}.{quote_ident(table.table)}")  # noqa: S608
            total = int(cur.fetchone()[0])
            check_declared_key(settings, cur, table, columns, key)  # as this snapshot reads the table
            # the lake takes the source's schema and key as this snapshot reads them, by name; a rebuild holds
            # the table from here until it publishes (a rebuild killed in between leaves it held, and says so)
            reshaped = True
            if rebuild:
                state.record_halt(catalog, state.halt_record(
                    table, f"rebuilding from the source snapshot at {binlog_file}:{position} (if no `cdc bootstrap --rebuild` "
                    "runs any more, it was stopped before it published)", f"cdc bootstrap {table} --rebuild", None, None))
            reshape(catalog, table, schema, settings.buckets_for(table.db, table.table), int(seq))
            faults.point(faults.AFTER_RESHAPE)
            base, arrow_schema = _target(catalog, table, columns)
            log.info("bootstrapping %s: %d rows at %s:%d", table, total, binlog_file, position)
            properties = {BOOTSTRAP_POSITION: f"{binlog_file}:{position}", BOOTSTRAP_SEQ: str(seq)}
            if landed_before is not None:
                properties[lake.MERGED_UPTO] = str(landed_before.snapshot_id)
                properties[MERGED_LANDED] = str(landed_number)
            source_ts = dt.datetime.now(dt.UTC)
            for rows in read_chunks(cur, query, chunk_rows):
                values = list(zip(*rows, strict=True))[: query.width]
                data = {c.name: [None if v is None else conv(v) for v in col]
                        for c, col, conv in zip(columns, values, converters, strict=True)}
                data[SEQ] = [seq] * len(rows)
                data[SOURCE_TS] = [source_ts] * len(rows)
                arrow = pa.Table.from_arrays([pa.array(data[f.name], type=f.type) for f in arrow_schema], schema=arrow_schema)
                base.append(arrow, snapshot_properties=properties, branch=branch)
                rows_done += len(rows)
                chunks += 1
                if on_progress is not None:
                    on_progress(rows_done, total)
            conn.rollback()
        finally:
            conn.close()
        policy = RetryPolicy(deadline_seconds=settings.ingest.commit_timeout_seconds)
        _publish(catalog, table, branch, properties, rows_done, policy)
        high_now = {p: high for p, (_, high) in watermarks(settings, rules.topic(table)).items()}
        topic = rules.topic(table)
        anchor_bootstrap(catalog, rules, table, anchor, high_now, topic_ids(settings, [topic]).get(topic), policy)
    except BaseException as exc:
        if reshaped and rebuild:  # the lake tables may have the source's schema but not its rows: nothing may land
            _halt_unfinished(catalog, table, exc)
        raise
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return BootstrapReport(str(table), rows_done, chunks, time.monotonic() - started, binlog_file, position, peak, rebuild)


def _halt_unfinished(catalog: Catalog, table: TableId, exc: BaseException) -> None:
    """A bootstrap that failed after reshaping the lake tables halts the table until it is run again."""
    reason = f"a bootstrap stopped after it reshaped the lake tables, before it published ({type(exc).__name__}: {exc})"
    try:
        state.record_halt(catalog, state.halt_record(table, reason, f"cdc bootstrap {table} --rebuild", None, None))
    except Exception:  # noqa: BLE001 - the original failure is what the operator must see
        log.exception("%s: could not record the halt", table)


def _target(catalog: Catalog, table: TableId, columns: Sequence[SourceColumn]) -> tuple[Any, pa.Schema]:
    """The base table and the Arrow schema the snapshot's rows are written in (by column name)."""
    base = catalog.load_table(lake.base_name(table))
    arrow_schema = pa.schema([pa.field(f.name, f.type, nullable=True) for f in base.schema().as_arrow()])
    names = set(arrow_schema.names)
    missing = [c.name for c in columns if c.name not in names]
    extra = [n for n in names if n not in {c.name for c in columns} and n not in (SEQ, SOURCE_TS)]
    if missing or extra:
        raise ConfigError(f"{table}: the lake table's columns differ from the source's (missing {missing}, not at the source "
                          f"{extra}): rebuild it with `cdc bootstrap {table} --rebuild`")
    if base.current_snapshot() is None:
        base.append(arrow_schema.empty_table())  # a branch needs a table with a first snapshot
        base = catalog.load_table(lake.base_name(table))
    return base, arrow_schema


def _shared_topic_floor(settings: Settings, catalog: Catalog, rules: CaptureRules, table: TableId,
                        anchor: dict[int, int]) -> dict[int, int]:
    """The anchor, lowered where the topic is shared: Debezium's topic names merge tables whose names
    differ only in characters it replaces (`a b`, `a_b`), and the anchor must not skip the other
    tables' messages that are not landed yet."""
    topic = rules.topic(table)
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'")
        siblings = [TableId(str(d), str(t)) for d, t in cur.fetchall()]
    finally:
        conn.close()
    siblings = [t for t in siblings if t != table and rules.topic(t) == topic and rules.captured(t)]
    if not siblings:
        return anchor
    floor = dict(anchor)
    for sibling in siblings:
        recorded: dict[int, int] = {}
        if catalog.table_exists(lake.changelog_name(sibling)):
            recorded = landed_offsets(catalog.load_table(lake.changelog_name(sibling))).get(topic, {})
        for p in floor:
            floor[p] = min(floor[p], recorded.get(p, 0))  # nothing recorded: from the topic's start
    log.info("%s shares its topic with %s: streaming takes over at %s, not %s", table, siblings, floor, anchor)
    return floor


def _ensure_captured(settings: Settings, catalog: Catalog, table: TableId) -> None:
    """A table outside the include list joins capture first; the snapshot is taken after that.

    Only the connector's include list changes: Debezium keeps its offsets, so no other table is
    snapshotted again, and streaming of the new table starts before the snapshot position.
    """
    include = settings.connect.include_databases
    if not include or table.db in include or table.db in lake.captured_namespaces(catalog):
        return
    from cdc import connectors

    log.info("adding %s to capture (connector include list)", table.db)
    lake.mark_captured(catalog, table.db)
    connectors.apply(settings)
    connectors.wait_captured(settings)  # the connector now streams with the new list


def _publish(catalog: Catalog, table: TableId, branch: str, properties: dict[str, str], rows: int, policy: RetryPolicy) -> None:
    """Point main at the finished branch in one commit (retried under the policy: a merge may commit meanwhile)."""

    def attempt() -> None:
        base = catalog.load_table(lake.base_name(table))
        if rows == 0:  # an empty source table: empty the lake table in one commit
            with warnings.catch_warnings():
                # pyiceberg deletes copy-on-write even where Spark's setting says merge-on-read: fine here
                warnings.filterwarnings("ignore", "Merge on read is not yet supported", UserWarning)
                warnings.filterwarnings("ignore", "Delete operation did not match any records", UserWarning)
                base.delete(AlwaysTrue(), snapshot_properties=properties)
            return
        if branch not in base.metadata.refs:
            return  # an earlier attempt went through (its answer was lost): main is the branch head already
        with base.manage_snapshots() as ms:
            ms.set_current_snapshot(ref_name=branch)
            ms.remove_branch(branch)

    retrying(f"{table}: publish the bootstrap branch {branch}", policy, attempt)
    retrying(f"{table}: pin the bootstrap's bookkeeping", policy,
             lambda: bookkeeping.pin(catalog.load_table(lake.base_name(table)), exact=True))
