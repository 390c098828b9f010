"""The MERGE job: fold each changelog table's new snapshots into its base table.

Runs in-process from `cdc merge` or on any Spark cluster:
    spark-submit spark_jobs/merge.py --catalog lake shop.customers shop.orders
Only needs PySpark and an Iceberg catalog configured in the session (spark.sql.catalog.<name>).

Exactly-once: every base commit records, in its snapshot summary, the changelog snapshot it
folded in; the next run reads only changelog snapshots after it (an incremental read of appends).
Changes apply only when newer than the row's `_seq`, so a re-run or a replayed change is a no-op.

Write-audit-publish: the run writes audit branches (spark_jobs/gate_publish.py), the gate checks the
base's branch (spark_jobs/gate.py), and only a passing branch is fast-forwarded onto `main`. The base
commit also records the landing's `cdc.complete-through` point (read before the slice) and the truncate
floor, so both publish with it. Every named table is merged whatever happens to another (a failed gate or an
error stops only its own table); after all of them, each table's outcome is printed and each failed gate and
errored table named: exit code 1 when a gate failed, else 3 (worth running again) or 4 when a table errored.

Merge mode and a bucket-aligned MERGE (spark_jobs/base_merge.py): `--merge-mode '{"db.table": "copy-on-write"}'`
brings a table's write-mode properties in line before its MERGE (a table left out keeps what it has; `cdc merge`
passes every table's setting). The MERGE reads only the base buckets its changes touch, joins the base bucket to
bucket without shuffling it (a storage-partitioned join; at most the change set is shuffled), and its plan is
checked and logged before it runs. Under spark-submit pass the confs cdc/spark.py sets (spark_jobs/plan.SPJ_CONFS):
    --conf spark.sql.sources.v2.bucketing.enabled=true
    --conf spark.sql.iceberg.planning.preserve-data-grouping=true
    --conf spark.sql.requireAllClusterKeysForCoPartition=false
    --conf spark.sql.sources.v2.bucketing.pushPartValues.enabled=true
    --conf spark.sql.sources.v2.bucketing.shuffle.enabled=true
Without the last one Spark 4.1 shuffles the whole base on every MERGE (the plan check then says so).

Fault injection (the fault suite): `CDC_FAULT_POINT=<point>` SIGKILLs the driver at one of the
points below, with the Spark JVM when the driver leads its process group (`cdc merge` started by the
tests does). The hook is a few lines of os/signal on purpose: spark-submit ships no `cdc` package.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession, functions as F

try:  # as a package (cdc merge) or as a file (spark-submit spark_jobs/merge.py)
    from spark_jobs import base_merge as bm, gate, gate_publish as wap, gate_sql as g, merge_sql as q
    from spark_jobs.gate import GateReport
except ImportError:  # pragma: no cover - spark-submit puts the file's folder on the path
    import base_merge as bm  # type: ignore[no-redef,import-not-found]
    import gate  # type: ignore[no-redef,import-not-found]
    import gate_publish as wap  # type: ignore[no-redef,import-not-found]
    import gate_sql as g  # type: ignore[no-redef,import-not-found]
    import merge_sql as q  # type: ignore[no-redef]
    from gate import GateReport  # type: ignore[no-redef,import-not-found]
from cdc.errors import CdcError, ServiceError, TransientError  # dependency-free, as gate_publish uses it
from cdc.lake.contract import (  # dependency-free: ship it with --py-files
    BASE_BOOKKEEPING,
    CHANGELOG_ONLY,
    CHANGELOG_SUFFIX,
    COLUMN_DEFAULTS,
    COMPLETE_THROUGH,
    FROZEN_COLUMNS,
    INGESTED_AT,
    LANDED,
    LANDED_COLUMN,
    LANDED_THROUGH_PREFIX,
    LATEST_VIEW,
    MERGED_LANDED,
    MERGED_UPTO,
    PROP_KEY as PRIMARY_KEY,
    SEQ,
    SOURCE_TS,
    SOURCE_VIEW,
    TOMBSTONES_SUFFIX,
    TRUNCATED_BEFORE,
)

log = logging.getLogger("spark_jobs.merge")

STATE_NAMESPACE = "cdc_state"  # = cdc.lake.state.STATE_NAMESPACE (that module needs pyiceberg)
SNAPSHOT_PROPERTY = "spark.sql.iceberg.snapshot-property."  # + key: the session conf that tags the next commits

FAULT_POINT_ENV = "CDC_FAULT_POINT"
AFTER_TOMBSTONES = "merge-after-tombstones"  # tombstones committed on their audit branch, the base MERGE not started
IN_MERGE = "merge-in-merge"  # a Spark job of the base MERGE is running; the MERGE has not committed
# the base commit on the audit branch recorded a truncate floor raised by the slice and deleted the rows below
# it; nothing is published (main holds neither the floor nor the deletion)
AFTER_FLOOR = "merge-after-floor"
AFTER_PUBLISH = "merge-after-publish"  # the base's main fast-forwarded, its tombstones' main not yet


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
    gate: GateReport | None = None
    published: bool = False
    warning: str = ""  # published, but something after the base's publish did not finish (the next run does it)

    @property
    def outcome(self) -> str:
        if self.skipped:
            return "up to date"
        return "published" if self.published else "gate failed"


@dataclass(frozen=True)
class TableOutcome:
    """One table of a run: its result, or the error that stopped it (the other tables still ran)."""

    table: str
    result: MergeResult | None = None
    error: BaseException | None = None

    @property
    def status(self) -> str:
        if self.result is not None:
            return self.result.outcome
        return "main moved: not published" if isinstance(self.error, wap.MainMoved) else "error"


def error_exit_code(exc: BaseException) -> int:
    """3 for an error worth running again (a service away, main moved), else 4 (cdc.cli's mapping, without the
    pyiceberg/SQLAlchemy classes spark-submit does not ship)."""
    return 3 if isinstance(exc, (TransientError, ServiceError, OSError)) else 4


@dataclass(frozen=True)
class RunSummary:
    code: int  # 0, 1 when a gate failed (even if a table also errored), else 3/4 when a table errored
    lines: list[str]  # one per failed gate, then one per errored table
    message: str  # the run's one-line error ("" when code is 0)
    warnings: list[str]  # published tables something after the publish did not finish for


def summarize(outcomes: Sequence[TableOutcome], classify: Callable[[BaseException], int] = error_exit_code) -> RunSummary:
    """Pure: the exit code and what to report once every table ran. A failed gate makes it 1, whatever else
    happened (a failed gate is not transient: a retry would only replace its evidence branch); otherwise an
    errored table makes it 3 (worth running again) or 4 (the highest of its tables')."""
    gates = [(o.table, o.result.gate) for o in outcomes
             if o.result is not None and o.result.gate is not None and not o.result.published]
    errors = [(o.table, o.error) for o in outcomes if o.error is not None]
    lines = [f"gate failed: {t}: {', '.join(r.failed)} (branch {r.branch})" for t, r in gates]
    lines += [f"error: {t}: {_one_line(t, e)}" for t, e in errors]
    parts = []
    if gates:
        parts.append("the quality gate failed for " + ", ".join(
            f"{t} ({', '.join(r.failed)}; main unchanged, evidence branch {r.branch})" for t, r in gates))
    if errors:
        parts.append(f"merge failed for {len(errors)} of {len(outcomes)} tables: {', '.join(t for t, _ in errors)}")
    code = 1 if gates else max((classify(e) for _, e in errors), default=0)
    warnings = [f"warning: {o.table}: published; {o.result.warning}" for o in outcomes if o.result is not None and o.result.warning]
    return RunSummary(code, lines, "; ".join(parts), warnings)


def _one_line(table: str, exc: BaseException) -> str:
    if isinstance(exc, CdcError):  # our own errors say what happened (MainMoved names the table itself)
        return first_line(exc).removeprefix(f"{table}: ")
    return f"{type(exc).__name__}: {first_line(exc)}"


class MergeFailed(CdcError):
    """Some tables of a run errored (every table ran; each is named)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _current_snapshot(spark: SparkSession, ident: tuple[str, str, str]) -> int | None:
    rows = spark.sql(
        f"SELECT snapshot_id FROM {q.qualified(*ident, 'history')} WHERE is_current_ancestor "
        "ORDER BY made_current_at DESC LIMIT 1"
    ).collect()
    return int(rows[0][0]) if rows else None


def bookkeeping(spark: SparkSession, ident: tuple[str, str, str], key: str) -> str | None:
    """A base table's bookkeeping value: the newest summary on `main`'s ancestry that has it, else the table property
    it was pinned to (maintenance expired those snapshots or compacted after them). = cdc.lake.bookkeeping.value."""
    rows = spark.sql(q.merged_upto_sql(ident, key)).collect()
    if rows and rows[0][0] is not None:
        return str(rows[0][0])
    return _table_property(spark, ident, key)


def pin_bookkeeping(spark: SparkSession, ident: tuple[str, str, str]) -> dict[str, str]:
    """Copy the base's newest summary values of its bookkeeping into table properties (one metadata commit, none
    when they are pinned already): snapshot expiry and compaction keep properties. Run after every publish, at the
    start of every merge (a run killed after its publish), and by `cdc maintain` before it expires snapshots."""
    props = {str(r[0]): str(r[1]) for r in spark.sql(f"SHOW TBLPROPERTIES {q.qualified(*ident)}").collect()}
    todo = {}
    for key in BASE_BOOKKEEPING:
        rows = spark.sql(q.merged_upto_sql(ident, key)).collect()
        if rows and rows[0][0] is not None and props.get(key) != str(rows[0][0]):
            todo[key] = str(rows[0][0])
    if todo:
        spark.sql(q.set_properties_sql(ident, todo))
        log.info("%s.%s: bookkeeping pinned as table properties: %s", ident[1], ident[2], todo)
    return todo


def complete_through(spark: SparkSession, catalog: str, db: str, table: str) -> str | None:
    """The landing's complete-through point of the table's changelog (JSON as stored), or None. Read before
    the changelog's current snapshot: every change below it is then in the slice this run reads."""
    key = LANDED_THROUGH_PREFIX + json.dumps([db, table], ensure_ascii=False, separators=(",", ":"))
    try:
        rows = spark.sql(f"DESCRIBE NAMESPACE EXTENDED {q.qualified(catalog, STATE_NAMESPACE)}").collect()
    except AnalysisException:  # no namespace yet: nothing landed a point
        return None
    return g.namespace_property([(str(r[0]), str(r[1])) for r in rows], key)


@dataclass(frozen=True)
class Slice:
    """The changes a run folds in: the changelog rows as of snapshot `upto` whose landing number is above the
    base's merged one (view SOURCE_VIEW); `landed`: the highest landing number among them (what the base commit
    records), None when they all predate landing numbers."""

    upto: int | None
    previous: int | None
    changes: Any = None
    landed: int | None = None


def new_changes(spark: SparkSession, base: tuple[str, str, str], changelog: tuple[str, str, str]) -> Slice:
    """The slice (`changes` None when there is nothing new). "Merged" is a row predicate on `_cdc_landed`, which rows
    keep through compaction, so neither a compaction (its snapshot is no append, its files mix old and new rows)
    nor an expiry (the snapshot the base last merged may be gone) changes what the slice holds. A base merged
    before landing numbers existed takes its first slice by snapshot, as before."""
    upto = _current_snapshot(spark, changelog)
    previous_raw = bookkeeping(spark, base, MERGED_UPTO)
    previous = int(previous_raw) if previous_raw else None
    merged_raw = bookkeeping(spark, base, MERGED_LANDED)
    merged = int(merged_raw) if merged_raw else None
    if upto is None or upto == previous:
        return Slice(upto, previous)
    reader = spark.read.format("iceberg")
    name = q.qualified(*changelog)
    if merged is not None:
        landed_now = _table_property(spark, changelog, LANDED)
        if landed_now is not None and int(landed_now) < merged:
            raise CdcError(f"{changelog[1]}.{changelog[2]}: its landing number {landed_now} is below the {merged} the base "
                           "merged up to: the changelog was dropped and made again, and its changes would be skipped; "
                           f"rebuild the table (cdc bootstrap {changelog[1]}.{base[2]} --rebuild)")
        changes = reader.option("versionAsOf", upto).load(name).where(F.col(LANDED_COLUMN) > F.lit(merged))
    elif previous is None:  # never merged: everything
        changes = reader.option("versionAsOf", upto).load(name)
    elif spark.sql(q.snapshot_exists_sql(changelog, previous)).collect():  # merged before landing numbers existed
        changes = reader.option("start-snapshot-id", previous).option("end-snapshot-id", upto).load(name)
    else:
        raise CdcError(f"{changelog[1]}.{changelog[2]}: the changelog snapshot {previous} the base last merged is gone "
                       "(expired) and the base records no landing number (merged by a version before them): rebuild "
                       f"the table (cdc bootstrap {changelog[1]}.{base[2]} --rebuild)")
    has_column = LANDED_COLUMN in changes.columns
    row = changes.agg(F.count(F.lit(1)), F.max(LANDED_COLUMN) if has_column else F.lit(None)).collect()[0]
    if int(row[0]) == 0:
        return Slice(upto, previous)
    changes.createOrReplaceTempView(SOURCE_VIEW)
    landed = max(int(row[1]), merged or 0) if row[1] is not None else merged
    return Slice(upto, previous, changes, landed)


def _table_property(spark: SparkSession, ident: tuple[str, str, str], prop: str) -> str | None:
    for row in spark.sql(f"SHOW TBLPROPERTIES {q.qualified(*ident)}").collect():
        if row[0] == prop:
            return str(row[1])
    return None


def set_snapshot_properties(spark: SparkSession, props: dict[str, str]) -> None:
    for k, v in props.items():
        spark.conf.set(SNAPSHOT_PROPERTY + k, v)


def unset_snapshot_properties(spark: SparkSession, props: dict[str, str]) -> None:
    for k in props:
        spark.conf.unset(SNAPSHOT_PROPERTY + k)


def ensure_lake_time(spark: SparkSession, tombstones: tuple[str, str, str]) -> None:
    """Give a tombstones table made before tombstones aged by lake time its `_ingested_at` column (its older
    tombstones read NULL there and age by their source time, as they did)."""
    if INGESTED_AT not in spark.table(q.qualified(*tombstones)).columns:
        spark.sql(q.add_column_sql(tombstones, INGESTED_AT, "TIMESTAMP"))
        log.info("%s.%s: added %s (tombstones now expire by the time they reached the lake)", tombstones[1],
                 tombstones[2], INGESTED_AT)


def record_on_branch(spark: SparkSession, base: tuple[str, str, str], branch: str, upto: int) -> None:
    """When the write changed no row Iceberg made no snapshot: commit an empty append to the branch (it carries
    the session's snapshot properties), so the branch's head records the merge's progress."""
    if wap.head_summary(spark, base, branch, MERGED_UPTO) != str(upto):
        spark.table(q.qualified(*base)).limit(0).writeTo(q.qualified(*g.on_branch(base, branch))).append()


def merge_table(spark: SparkSession, catalog: str, db: str, table: str, tombstone_days: int = 7,
                expectations: Sequence[Mapping[str, Any]] = (), quality_home: str | None = None,
                merge_mode: str | None = None) -> MergeResult:
    """Merge one table through write-audit-publish; a no-op (nothing written) when the changelog has nothing new.

    The tombstones MERGE and the base MERGE write audit branches of the same name; the gate checks the
    branch; only a passing branch is published (base first, then its tombstones). A failing one leaves
    `main` as it was and keeps the base branch as evidence; the next run redoes the slice from `main`.
    Every step is idempotent, so a run killed anywhere is repaired by running it again.
    `merge_mode` ("merge-on-read" | "copy-on-write"): the base's write mode, set before its MERGE when it differs
    (None: the table keeps the one it has).
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
        bm.align_write_mode(spark, base, merge_mode, f"{db}.{table}")  # for its other writers: the fold replaces the base
        return merge_multiset(spark, catalog, db, table, expectations, quality_home)
    ensure_lake_time(spark, tombstones)
    wap.repair_tombstones(spark, base, tombstones, key)
    pin_bookkeeping(spark, base)  # a run killed between its publish and its pin (an error here: nothing is written yet)
    through = complete_through(spark, catalog, db, table)
    found = new_changes(spark, base, changelog)
    upto, previous, changes = found.upto, found.previous, found.changes
    if changes is None or upto is None:
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
    dropped = wap.drop_stale(spark, base, tombstones)
    if dropped:
        log.info("merge %s.%s: dropped the audit branches of earlier runs %s", db, table, dropped)
    branch = g.branch_name(upto, datetime.now(UTC))
    wap.create(spark, base, branch)
    wap.create(spark, tombstones, branch)
    plan = _plan(spark, base, tombstones, key, base_cols, branch)
    floor, raised, purge = _truncate_floor(spark, base, f"{db}.{table}")
    pending = q.pending_defaults_sql(plan)
    backfill = pending is not None and bool(spark.sql(pending).collect())
    props = {MERGED_UPTO: str(upto)}
    if found.landed is not None:
        props[MERGED_LANDED] = str(found.landed)
    if through is not None:
        props[COMPLETE_THROUGH] = through
    if floor is not None:  # the floor publishes with the base commit that deletes below it
        props[TRUNCATED_BEFORE] = str(floor)
    try:
        n_changes = bm.stage_latest(spark, q.latest_changes_sql(plan, floor))
        spark.sql(q.tombstones_sql(plan))
        _fault(AFTER_TOMBSTONES)
        merge = bm.prepare(spark, plan, base, changelog, f"{db}.{table}", merge_mode, floor if purge else None, backfill)
        set_snapshot_properties(spark, props)
        log.info("merge %s.%s: MERGE started on the audit branch %s (changelog snapshot %s)%s", db, table, branch, upto,
                 f", deleting the rows below the truncate floor {floor}" if purge else "")
        with _KillInMerge(spark):
            spark.sql(merge)
        record_on_branch(spark, base, branch, upto)
        unset_snapshot_properties(spark, props)
        if raised:
            log.info("merge %s.%s: truncate floor recorded at _seq %d on the audit branch", db, table, floor)
            _fault(AFTER_FLOOR)
        gplan = g.GatePlan(base, branch, tombstones, LATEST_VIEW, key, bucket_spec(spark, base),
                           floor if purge else None)
        report = _gate(spark, f"{db}.{table}", gplan, changelog, plan, expectations, quality_home)
    finally:
        unset_snapshot_properties(spark, props)
        bm.drop_latest(spark)  # before the view its SQL reads
        spark.catalog.dropTempView(SOURCE_VIEW)
    published, warning = _publish(spark, catalog, report, base, tombstones, key)
    if published and not warning:
        spark.sql(q.expire_tombstones_sql(plan_main(plan, base, tombstones), tombstone_days))
    rows_after = spark.table(q.qualified(*base)).count()
    result = MergeResult(f"{db}.{table}", upto, previous, n_changes, rows_after, time.monotonic() - started,
                         gate=report, published=published, warning=warning)
    log.info("merge %s: %s, %d keys changed from changelog snapshot %s, %d rows on main, %.1f s",
             result.table, result.outcome, n_changes, upto, rows_after, result.seconds)
    return result


def plan_main(plan: q.MergePlan, base: tuple[str, str, str], tombstones: tuple[str, str, str]) -> q.MergePlan:
    """The plan on `main` (for maintenance that runs after the publish)."""
    return dataclasses.replace(plan, target=base, tombstones=tombstones)


def _gate(spark: SparkSession, name: str, gplan: g.GatePlan, changelog: tuple[str, str, str], plan: q.MergePlan,
          expectations: Sequence[Mapping[str, Any]], quality_home: str | None) -> GateReport:
    """Every check of a keyed table on the audit branch (the merge's views still in place)."""
    report = GateReport(name, gplan.branch, uuid.uuid4().hex)
    frozen = json.loads(_table_property(spark, gplan.base, FROZEN_COLUMNS) or "{}")
    checks, report.docs = gate.run_expectations(spark, name, gplan.base, gplan.branch,
                                                 [*gate.key_expectations(gplan.key), *expectations], quality_home)
    report.checks = [*checks, *gate.keyed_checks(spark, gplan),
                     gate.schema_check(gate.columns_of(spark, g.on_branch(gplan.base, gplan.branch)),
                                       gate.columns_of(spark, changelog), sorted(frozen))]
    return report


def _publish(spark: SparkSession, catalog: str, report: GateReport, base: tuple[str, str, str],
             tombstones: tuple[str, str, str] | None, key: Sequence[str] = ()) -> tuple[bool, str]:
    """Publish a passing branch (base, then its tombstones, then drop both); keep a failing one as evidence.
    (published, warning). The results are written either way; MainMoved when the base's `main` moved meanwhile
    (nothing published). Once the base's `main` is fast-forwarded the table is published: a tombstones publish
    that fails then is a warning, both branches stay, and the next run applies them first (`repair_tombstones`)."""
    branch = report.branch
    if not report.passed:
        if tombstones is not None:
            wap.drop(spark, tombstones, branch)
        log.error("merge %s: the gate failed (%s); main is unchanged, the audit branch %s is kept",
                  report.table, ", ".join(report.failed), branch)
        gate.write_results(spark, catalog, report, published=False)
        return False, ""
    try:
        wap.publish(spark, base, branch)
    except wap.MainMoved:
        wap.drop(spark, base, branch)
        if tombstones is not None:
            wap.drop(spark, tombstones, branch)
        gate.write_results(spark, catalog, report, published=False)
        raise
    _fault(AFTER_PUBLISH)
    warning = ""
    if tombstones is not None:
        try:  # a fast-forward, or a MERGE into a tombstones main that moved
            wap.publish_tombstones(spark, tombstones, branch, key)
        except Exception as exc:  # noqa: BLE001 - the base is published: say so, and leave the rest to the repair
            warning = (f"its tombstones are not published yet ({type(exc).__name__}: {first_line(exc)}); "
                       "the next merge of the table publishes them first")
            log.warning("merge %s: published; %s", report.table, warning, exc_info=log.isEnabledFor(logging.DEBUG))
    if not warning:  # the repair needs the base branch to know its tombstones belong to a published base
        wap.drop(spark, base, branch)
    try:
        pin_bookkeeping(spark, base)
    except Exception as exc:  # noqa: BLE001 - published: the summaries hold it, and the next run pins it
        warning = warning or f"its bookkeeping is not pinned as table properties yet ({first_line(exc)}); the next merge does it"
        log.warning("merge %s: published; %s", report.table, warning)
    gate.write_results(spark, catalog, report, published=True)
    return True, warning


def first_line(exc: BaseException) -> str:
    """The first line of the error that says something (py4j's "An error occurred while calling oNN.sql." is
    followed by the Java exception's own line)."""
    lines = [line.strip().removeprefix(": ") for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("An error occurred while calling"):
        return lines[1]
    return lines[0] if lines else ""


def bucket_spec(spark: SparkSession, base: tuple[str, ...]) -> tuple[int, str] | None:
    """The base's `bucket(N, column)` partition field, from DESCRIBE TABLE."""
    rows = spark.sql(f"DESCRIBE TABLE {q.qualified(*base)}").collect()
    return g.bucket_of([str(r[1]) for r in rows if str(r[0]).startswith("Part ")])


def _plan(spark: SparkSession, base: tuple[str, str, str], tombstones: tuple[str, str, str], key: tuple[str, ...],
          columns: list[str], branch: str) -> q.MergePlan:
    """The merge plan on the audit branch, with the schema-change bookkeeping the landing left on the base table."""
    defaults_json = _table_property(spark, base, COLUMN_DEFAULTS)
    frozen_json = _table_property(spark, base, FROZEN_COLUMNS)
    defaults = json.loads(defaults_json) if defaults_json else {}
    frozen = json.loads(frozen_json) if frozen_json else {}
    return q.MergePlan(
        g.on_branch(base, branch), g.on_branch(tombstones, branch), SOURCE_VIEW, key, tuple(columns),
        defaults=tuple(q.Default(c, int(d["below"]), q.default_literal(str(d["type"]), str(d["text"])))
                       for c, d in sorted(defaults.items()) if c in columns),
        frozen=tuple((c, int(s)) for c, s in sorted(frozen.items()) if c in columns),
    )


def recorded_floor(spark: SparkSession, base: tuple[str, str, str]) -> int | None:
    """The truncate floor `main` holds: in its newest base commit that records one (the table property of lakes
    merged before write-audit-publish is read as well)."""
    rows = spark.sql(q.merged_upto_sql(base, TRUNCATED_BEFORE)).collect()
    legacy = _table_property(spark, base, TRUNCATED_BEFORE)
    found = [int(v) for v in (rows[0][0] if rows else None, legacy) if v is not None]
    return max(found) if found else None


def _truncate_floor(spark: SparkSession, base: tuple[str, str, str], name: str) -> tuple[int | None, bool, bool]:
    """(the newest truncate's position, whether this slice raised it, whether base rows below it remain: the
    MERGE then deletes them in its own commit, which records the floor in its summary and publishes with it).

    Checked on every run while a floor stands (one probe, pruned by the files' `_seq` bounds).
    """
    floor = recorded_floor(spark, base)
    truncated = spark.sql(q.truncate_seq_sql(SOURCE_VIEW)).collect()[0][0]
    raised = truncated is not None and (floor is None or int(truncated) > floor)
    if raised:
        floor = int(truncated)
        log.info("merge %s: a truncate in the slice raises the floor to _seq %d", name, floor)
    purge = floor is not None and bool(spark.sql(q.below_floor_sql(base, floor)).collect())
    return floor, raised, purge


def _merge_modes(text: str) -> dict[str, str]:
    """--merge-mode: a JSON object of DB.TABLE -> one of merge_sql.MERGE_MODES."""
    try:
        modes = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(modes, dict) or any(not isinstance(k, str) or v not in q.MERGE_MODES for k, v in modes.items()):
        raise argparse.ArgumentTypeError(f'expected {{"db.table": "{q.MERGE_MODES[0]}" | "{q.MERGE_MODES[1]}"}}, got {text}')
    return modes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fold cdc changelog tables into their base tables.")
    parser.add_argument("--catalog", default="lake", help="Iceberg catalog name configured in the session")
    parser.add_argument("--tombstone-days", type=int, default=7, help="how long deletes block late, older changes")
    parser.add_argument("--expectations", default="{}",
                        help='declared expectations per table, JSON: {"db.table": [{"type": ..., "kwargs": {...}}]}')
    parser.add_argument("--quality-home", default=None, help="folder of the GX project (Data Docs); none: not rendered")
    parser.add_argument("--merge-mode", default="{}", type=_merge_modes,
                        help='write mode per table, JSON: {"db.table": "merge-on-read" | "copy-on-write"}; '
                             "a table left out keeps the mode it has")
    parser.add_argument("tables", nargs="+", help="DB.TABLE names")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    declared = json.loads(args.expectations)
    spark = SparkSession.builder.appName("cdc-merge").getOrCreate()
    outcomes = []
    for name in args.tables:  # every table runs; the outcomes are reported and the exit code taken after
        db, _, table = name.partition(".")
        try:
            result = merge_table(spark, args.catalog, db, table, args.tombstone_days, declared.get(name, ()), args.quality_home,
                                 args.merge_mode.get(name))
        except Exception as exc:  # noqa: BLE001 - reported with the others below
            log.exception("merge %s failed", name)
            outcomes.append(TableOutcome(name, error=exc))
        else:
            outcomes.append(TableOutcome(name, result=result))
    summary = summarize(outcomes)
    for o in outcomes:
        print(f"{o.table}: {o.status}")
    for line in [*summary.warnings, *summary.lines]:
        print(line, file=sys.stderr)
    return summary.code

if __name__ == "__main__":
    sys.exit(main())
