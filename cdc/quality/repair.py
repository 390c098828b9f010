"""`cdc repair DB.TABLE`: land the keys `cdc check` finds differing, re-read from the source, as changes.

The check runs first (its consistent snapshot at S finds the keys). Then, in a new consistent snapshot at
S2, exactly those keys are read with the bootstrap's reading of every type; each key present lands as an
`r` change with its full row, each absent one as a `d` change (key columns only), every one at `_seq` =
seq(S2): a change streamed after S2 is newer and wins, one before it loses, as for any change. The
changelog commit records no Kafka offsets (`cdc.kafka-offsets`), so the landing's offset bookkeeping,
which reads the newest commit that has them, passes it over: nothing is landed again or skipped. Its rows
carry Kafka coordinates no real message has (topic `cdc-repair`, partition -1). The next `cdc merge`
applies them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog

from cdc.bootstrap.snapshot import _converter
from cdc.bootstrap.source_schema import COLUMNS_QUERY, SourceColumn, column_type, source_column
from cdc.config import Settings
from cdc.errors import CdcError, ConfigError
from cdc.events.model import TableId
from cdc.lake import bookkeeping, catalog as lake
from cdc.lake.contract import INGESTED_AT, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC, OP, SEQ, SOURCE_TS
from cdc.quality import checksum_sql as cs
from cdc.quality.drill import KeyDiff
from cdc.quality.reconcile import Reconciliation, check_table, open_snapshot, snapshot_seq
from cdc.retry import RetryPolicy, retrying
from cdc.source import connect

log = logging.getLogger(__name__)

MAX_KEYS = 1_000_000
READ_CHUNK = 5_000  # key texts per source query
REPAIR_TOPIC = "cdc-repair"
REPAIR_PARTITION = -1
REPAIR_SEQ = "cdc.repair-seq"  # changelog snapshot summary: the `_seq` a repair landed its rows at


@dataclass
class RepairReport:
    table: str
    check: Reconciliation
    position: str = ""  # S2
    seq: int = 0
    present: int = 0  # keys landed with their row
    absent: int = 0  # keys landed as deletes
    seconds: float = 0.0


def repair_table(settings: Settings, catalog: Catalog, table: TableId, wait_seconds: float = 300.0) -> RepairReport:
    """Check, then land the differing keys as read in a new consistent snapshot (see the module doc)."""
    started = time.monotonic()
    result = check_table(settings, catalog, table, wait_seconds, max_cells=1 << 30)
    report = RepairReport(str(table), result)
    if result.not_comparable:
        raise CdcError(f"{table}: not compared ({result.not_comparable}), nothing repaired")
    if result.columns_differ:
        raise ConfigError(f"{table}: the columns differ ({'; '.join(result.columns_differ)}): rebuild instead: "
                          f"cdc bootstrap {table} --rebuild")
    if result.unexplained_cells:
        raise CdcError(f"{table}: {result.unexplained_cells} differing cells name no key: rebuild instead: "
                       f"cdc bootstrap {table} --rebuild")
    if not result.diffs:
        report.seconds = time.monotonic() - started
        return report
    base = catalog.load_table(lake.base_name(table))
    key = [str(k) for k in json.loads(base.properties[lake.PROP_KEY])]
    if not key:
        raise ConfigError(f"{table} has no key: a repair lands keys; rebuild instead: cdc bootstrap {table} --rebuild")
    if len(result.diffs) > MAX_KEYS:
        raise ConfigError(f"{table}: {len(result.diffs)} keys differ (more than {MAX_KEYS}): rebuild instead: "
                          f"cdc bootstrap {table} --rebuild")
    rows, report.position, report.seq = _read(settings, table, key, result.diffs)
    report.present = sum(1 for op, _ in rows if op == "r")
    report.absent = len(rows) - report.present

    def attempt() -> None:  # a landing commit: the next landing number, the offsets as they stand
        fresh = bookkeeping.with_landed_column(lake.landing_table(catalog.load_table(lake.changelog_name(table))))
        before = bookkeeping.landing(fresh)
        rows_now = _changes(fresh.schema().as_arrow(), rows, report.seq)
        bookkeeping.commit(fresh, rows_now, dataclasses.replace(before, landed=before.landed + 1),
                           summary={REPAIR_SEQ: str(report.seq)})

    retrying(f"{table}: land the repair", RetryPolicy(deadline_seconds=settings.ingest.commit_timeout_seconds), attempt)
    log.info("%s: repaired %d keys (%d rows, %d deletes) at %s", table, len(rows), report.present, report.absent, report.position)
    report.seconds = time.monotonic() - started
    return report


def repair_seq(binlog_file: str, position: int) -> int:
    """The `_seq` a repair's rows carry: just below its snapshot's position, like a bootstrap's rows. Every change
    before the snapshot is older, every later one newer, and a check at the same position (a quiet source) counts
    the repair as before it. At the position itself a later check saw the repair as after it: it read the value
    from before the repair, and reported the key again."""
    return snapshot_seq(binlog_file, position) - 1


def _read(settings: Settings, table: TableId, key: Sequence[str], diffs: Sequence[KeyDiff]
          ) -> tuple[list[tuple[str, dict[str, Any]]], str, int]:
    """(op, lake-typed values by column) per differing key, read in a new consistent snapshot; its position."""
    booleans = set(settings.table_settings(table.db, table.table).booleans)
    left_out = settings.excluded_columns(table.db, table.table)
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(COLUMNS_QUERY, (table.db, table.table))
        columns = [dataclasses.replace(c, boolean=c.name in booleans)
                   for c in map(source_column, cur.fetchall()) if c.name not in left_out]
        convert = {c.name: _converter(column_type(c.data_type, c.column_type, c.boolean), c) for c in columns}
        by_name = {c.name: c for c in columns}
        key_cols = [_compared(by_name[k]) for k in key]
        binlog_file, pos = open_snapshot(cur)
        seq = repair_seq(binlog_file, pos)
        wanted = {cs.encode_texts([d.key[k] for k in key]): d for d in diffs}
        found: dict[str, dict[str, Any]] = {}
        texts = sorted(wanted)
        for i in range(0, len(texts), READ_CHUNK):
            chunk = texts[i:i + READ_CHUNK]
            cur.execute(cs.source_keys_sql(cs.source_table(table.db, table.table), columns, key_cols, len(chunk)), chunk)
            for row in cur.fetchall():
                found[str(row[0])] = {c.name: None if v is None else convert[c.name](v) for c, v in zip(columns, row[1:], strict=True)}
        conn.rollback()
    finally:
        conn.close()
    out: list[tuple[str, dict[str, Any]]] = []
    for text, diff in wanted.items():
        if text in found:
            out.append(("r", found[text]))
        else:
            values = diff.values if diff.kind == "extra" else tuple(
                None if v is None else convert[k](v) for k, v in zip(key, diff.values, strict=True))
            out.append(("d", dict(zip(key, values, strict=True))))
    return out, f"{binlog_file}:{pos}", seq


def _compared(c: SourceColumn) -> cs.Compared:
    from cdc.lake.schema import iceberg_type

    return cs.Compared(c.name, cs.family(iceberg_type(column_type(c.data_type, c.column_type, c.boolean)), c), c)


def _changes(schema: pa.Schema, rows: Sequence[tuple[str, dict[str, Any]]], seq: int) -> pa.Table:
    """Pure: the changelog rows of a repair (columns the rows lack are NULL)."""
    now = dt.datetime.now(dt.UTC)
    meta: dict[str, list[Any]] = {
        OP: [op for op, _ in rows], SEQ: [Decimal(seq)] * len(rows), SOURCE_TS: [now] * len(rows),
        INGESTED_AT: [now] * len(rows), KAFKA_TOPIC: [REPAIR_TOPIC] * len(rows),
        KAFKA_PARTITION: [REPAIR_PARTITION] * len(rows), KAFKA_OFFSET: list(range(len(rows))),
    }
    arrays = [pa.array(meta[f.name] if f.name in meta else [values.get(f.name) for _, values in rows], type=f.type)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)
