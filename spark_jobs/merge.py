"""The MERGE job: fold each changelog table's new snapshots into its base table.

Runs in-process from `cdc merge` or on any Spark cluster:
    spark-submit spark_jobs/merge.py --catalog lake shop.customers shop.orders
Only needs PySpark and an Iceberg catalog configured in the session (spark.sql.catalog.<name>).

Exactly-once: every base commit records, in its snapshot summary, the changelog snapshot it
folded in; the next run reads only changelog snapshots after it (an incremental read of appends).
Changes apply only when newer than the row's `_seq`, so a re-run or a replayed change is a no-op.

Fault injection (the fault suite): `CDC_FAULT_POINT=<point>` SIGKILLs the driver at one of the
points below, with the Spark JVM when the driver leads its process group (`cdc merge` started by the
tests does). The hook is a few lines of os/signal on purpose: spark-submit ships no `cdc` package.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

try:  # as a package (cdc merge) or as a file (spark-submit spark_jobs/merge.py)
    from spark_jobs import merge_sql as q
except ImportError:  # pragma: no cover - spark-submit puts the file's folder on the path
    import merge_sql as q  # type: ignore[no-redef]
from cdc.lake.contract import (  # dependency-free: ship it with --py-files
    CHANGELOG_ONLY,
    CHANGELOG_SUFFIX,
    COLUMN_DEFAULTS,
    FROZEN_COLUMNS,
    LATEST_VIEW,
    MERGED_UPTO,
    PROP_KEY as PRIMARY_KEY,
    SEQ,
    SOURCE_TS,
    SOURCE_VIEW,
    TOMBSTONES_SUFFIX,
    TRUNCATED_BEFORE,
)

log = logging.getLogger("spark_jobs.merge")

FAULT_POINT_ENV = "CDC_FAULT_POINT"
AFTER_FLOOR = "merge-after-floor"  # the truncate floor property is committed; the MERGE that deletes below it has not run
AFTER_TOMBSTONES = "merge-after-tombstones"  # tombstones committed, the base MERGE not started
IN_MERGE = "merge-in-merge"  # a Spark job of the base MERGE is running; the MERGE has not committed


def _fault_armed(point: str) -> bool:
    return os.environ.get(FAULT_POINT_ENV) == point


def _die(point: str, why: str) -> None:
    """SIGKILL this driver, and its process group (the Spark JVM) when it leads one."""
    print(f"fault point {point}: SIGKILL {why}", file=sys.stderr, flush=True)
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _fault(point: str) -> None:
    if _fault_armed(point):
        _die(point, "(driver and JVM)")


class _KillInMerge:
    """Armed with IN_MERGE: kills the process group as soon as a Spark job of the statement runs."""

    def __init__(self, spark: SparkSession) -> None:
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if _fault_armed(IN_MERGE):
            self._thread = threading.Thread(target=self._watch, args=(spark.sparkContext.statusTracker(),), daemon=True)

    def _watch(self, tracker: Any) -> None:
        while not self._done.is_set():
            running = tracker.getActiveJobsIds()
            if running and not self._done.is_set():  # the MERGE commits only after its jobs end
                _die(IN_MERGE, f"while Spark job(s) {running} of the MERGE run (not committed)")
            time.sleep(0.005)

    def __enter__(self) -> None:
        if self._thread is not None:
            self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class MergeResult:
    table: str
    changelog_snapshot: int | None
    previous: int | None
    changes: int
    rows_after: int
    seconds: float
    skipped: bool = False


def _current_snapshot(spark: SparkSession, ident: tuple[str, str, str]) -> int | None:
    rows = spark.sql(
        f"SELECT snapshot_id FROM {q.qualified(*ident, 'history')} WHERE is_current_ancestor "
        "ORDER BY made_current_at DESC LIMIT 1"
    ).collect()
    return int(rows[0][0]) if rows else None


def _merged_upto(spark: SparkSession, base: tuple[str, str, str]) -> int | None:
    rows = spark.sql(q.merged_upto_sql(base, MERGED_UPTO)).collect()
    return int(rows[0][0]) if rows else None


def new_changes(spark: SparkSession, base: tuple[str, str, str], changelog: tuple[str, str, str]) -> tuple[int | None, int | None, Any]:
    """(the changelog's current snapshot, the one the base last folded in, the changes between them as the
    view SOURCE_VIEW); no changes (None) when there is nothing new."""
    upto = _current_snapshot(spark, changelog)
    previous = _merged_upto(spark, base)
    if upto is None or upto == previous:
        return upto, previous, None
    reader = spark.read.format("iceberg")
    if previous is None:
        changes = reader.option("versionAsOf", upto).load(q.qualified(*changelog))
    else:
        changes = reader.option("start-snapshot-id", previous).option("end-snapshot-id", upto).load(q.qualified(*changelog))
    changes.createOrReplaceTempView(SOURCE_VIEW)
    return upto, previous, changes


def _table_property(spark: SparkSession, ident: tuple[str, str, str], prop: str) -> str | None:
    for row in spark.sql(f"SHOW TBLPROPERTIES {q.qualified(*ident)}").collect():
        if row[0] == prop:
            return str(row[1])
    return None


def merge_table(spark: SparkSession, catalog: str, db: str, table: str, tombstone_days: int = 7) -> MergeResult:
    """Merge one table; a no-op when the changelog has nothing new.

    Order matters for crash safety: tombstones first, then the base MERGE that records progress.
    Every step is idempotent, so a run killed anywhere is repaired by running it again.
    """
    started = time.monotonic()
    base = (catalog, db, table)
    changelog = (catalog, db, table + CHANGELOG_SUFFIX)
    tombstones = (catalog, db, table + TOMBSTONES_SUFFIX)
    # the landing consumer commits to these tables from another process: never trust a cached table
    for ident in (base, changelog, tombstones):
        spark.sql(f"REFRESH TABLE {q.qualified(*ident)}")
    key_json = _table_property(spark, base, PRIMARY_KEY)
    if not key_json:
        raise ValueError(f"{db}.{table} has no {PRIMARY_KEY} property: not a cdc base table")
    key = tuple(json.loads(key_json))
    if not key:  # a table without a key: its base is a multiset
        try:
            from spark_jobs.multiset import merge_multiset
        except ImportError:  # pragma: no cover - spark-submit
            from multiset import merge_multiset  # type: ignore[no-redef,import-not-found]
        return merge_multiset(spark, catalog, db, table)
    upto, previous, changes = new_changes(spark, base, changelog)
    if changes is None:
        return MergeResult(f"{db}.{table}", upto, previous, 0, -1, time.monotonic() - started, skipped=True)
    # the landing evolves the base before the changelog, so a slice never carries a column the base lacks,
    # unless this run read a base schema older than the slice: then stop rather than leave the column NULL
    spark.sql(f"REFRESH TABLE {q.qualified(*base)}")
    base_fields = [f.name for f in spark.table(q.qualified(*base)).schema.fields]
    behind = sorted(set(changes.columns) - set(base_fields) - set(CHANGELOG_ONLY))
    if behind:
        raise RuntimeError(f"{db}.{table}: the changes carry columns {behind} the base table does not have yet "
                           "(its schema changed while this merge started): run the merge again")
    carried = set(changes.columns)
    base_cols = [n for n in base_fields if n not in (SEQ, SOURCE_TS) and n in carried]
    plan = _plan(spark, base, tombstones, key, base_cols)
    floor, purge = _truncate_floor(spark, base, f"{db}.{table}")
    pending = q.pending_defaults_sql(plan)
    backfill = pending is not None and bool(spark.sql(pending).collect())
    latest = spark.sql(q.latest_changes_sql(plan, floor)).persist()
    conf_key = f"spark.sql.iceberg.snapshot-property.{MERGED_UPTO}"
    try:
        n_changes = latest.count()
        latest.createOrReplaceTempView(LATEST_VIEW)
        spark.sql(q.tombstones_sql(plan))
        _fault(AFTER_TOMBSTONES)
        spark.conf.set(conf_key, str(upto))
        log.info("merge %s.%s: MERGE started (changelog snapshot %s)%s", db, table, upto,
                 f", deleting the rows below the truncate floor {floor}" if purge else "")
        with _KillInMerge(spark):
            spark.sql(q.merge_sql(plan, purge_below=floor if purge else None, backfill=backfill))
        if _merged_upto(spark, base) != upto:
            # the MERGE changed no row, so Iceberg made no snapshot: record progress with an empty commit
            spark.sql(f"DELETE FROM {q.qualified(*base)} WHERE false")
    finally:
        spark.conf.unset(conf_key)
        spark.catalog.dropTempView(SOURCE_VIEW)
        spark.catalog.dropTempView(LATEST_VIEW)
        latest.unpersist()
    spark.sql(q.expire_tombstones_sql(plan, tombstone_days))
    rows_after = spark.table(q.qualified(*base)).count()
    result = MergeResult(f"{db}.{table}", upto, previous, n_changes, rows_after, time.monotonic() - started)
    log.info("merged %s: %d keys changed from changelog snapshot %s, %d rows, %.1f s",
             result.table, n_changes, upto, rows_after, result.seconds)
    return result


def _plan(spark: SparkSession, base: tuple[str, str, str], tombstones: tuple[str, str, str], key: tuple[str, ...],
          columns: list[str]) -> q.MergePlan:
    """The merge plan, with the schema-change bookkeeping the landing left on the base table."""
    defaults_json = _table_property(spark, base, COLUMN_DEFAULTS)
    frozen_json = _table_property(spark, base, FROZEN_COLUMNS)
    defaults = json.loads(defaults_json) if defaults_json else {}
    frozen = json.loads(frozen_json) if frozen_json else {}
    return q.MergePlan(
        base, tombstones, SOURCE_VIEW, key, tuple(columns),
        defaults=tuple(q.Default(c, int(d["below"]), q.default_literal(str(d["type"]), str(d["text"])))
                       for c, d in sorted(defaults.items()) if c in columns),
        frozen=tuple((c, int(s)) for c, s in sorted(frozen.items()) if c in columns),
    )


def _truncate_floor(spark: SparkSession, base: tuple[str, str, str], name: str) -> tuple[int | None, bool]:
    """The newest truncate's position (persisted on the table, raised by a truncate in this slice), and
    whether base rows below it remain: the MERGE then deletes them in its own commit.

    Checked on every run while a floor stands (one probe, pruned by the files' `_seq` bounds): a run
    killed after recording the floor leaves the rows, and the next run finds the floor already recorded.
    """
    recorded = _table_property(spark, base, TRUNCATED_BEFORE)
    floor = int(recorded) if recorded else None
    truncated = spark.sql(q.truncate_seq_sql(SOURCE_VIEW)).collect()[0][0]
    if truncated is not None and (floor is None or int(truncated) > floor):
        floor = int(truncated)
        spark.sql(q.set_property_sql(base, TRUNCATED_BEFORE, str(floor)))
        log.info("merge %s: truncate floor recorded at _seq %d", name, floor)
        _fault(AFTER_FLOOR)
    purge = floor is not None and bool(spark.sql(q.below_floor_sql(base, floor)).collect())
    return floor, purge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fold cdc changelog tables into their base tables.")
    parser.add_argument("--catalog", default="lake", help="Iceberg catalog name configured in the session")
    parser.add_argument("--tombstone-days", type=int, default=7, help="how long deletes block late, older changes")
    parser.add_argument("tables", nargs="+", help="DB.TABLE names")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spark = SparkSession.builder.appName("cdc-merge").getOrCreate()
    for name in args.tables:
        db, _, table = name.partition(".")
        merge_table(spark, args.catalog, db, table, args.tombstone_days)
    return 0


if __name__ == "__main__":
    sys.exit(main())
