"""The merge of a table without a key: fold its changelog into its base table kept as a multiset
(the SQL and its rules: spark_jobs/multiset_sql.py). `spark_jobs.merge.merge_table` sends keyless tables
here (their `cdc.primary-key` property is `[]`).

Exactly-once as for keyed tables: the base commit records the changelog snapshot it folded in (the next run
reads only the snapshots after it) and, beside it, the newest source position it applied; after a bootstrap
that position is the snapshot's (`cdc.bootstrap-position`), so changes the snapshot already holds do not
apply twice. The new content replaces the base in one commit.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession

try:  # as a package (cdc merge) or as files (spark-submit)
    from spark_jobs import gate, gate_publish as wap, gate_sql as g, merge_sql as q, multiset_sql as m
    from spark_jobs.merge import (
        MergeResult,
        _publish,
        bookkeeping,
        complete_through,
        new_changes,
        pin_bookkeeping,
        record_on_branch,
        set_snapshot_properties,
        unset_snapshot_properties,
    )
except ImportError:  # pragma: no cover
    import gate  # type: ignore[no-redef,import-not-found]
    import gate_publish as wap  # type: ignore[no-redef,import-not-found]
    import gate_sql as g  # type: ignore[no-redef,import-not-found]
    import merge_sql as q  # type: ignore[no-redef]
    import multiset_sql as m  # type: ignore[no-redef,import-not-found]
    from merge import (  # type: ignore[no-redef,import-not-found]
        MergeResult,
        _publish,
        bookkeeping,
        complete_through,
        new_changes,
        pin_bookkeeping,
        record_on_branch,
        set_snapshot_properties,
        unset_snapshot_properties,
    )
from cdc.lake.contract import (
    BOOTSTRAP_SEQ,
    CHANGELOG_SUFFIX,
    COLUMN_DEFAULTS,
    COMPLETE_THROUGH,
    FROZEN_COLUMNS,
    MERGED_LANDED,
    MERGED_UPTO,
    SEQ,
    SOURCE_TS,
    SOURCE_VIEW,
)

log = logging.getLogger("spark_jobs.multiset")

FOLD_VIEW = "_cdc_multiset_fold"


def applied_seq(spark: SparkSession, base: tuple[str, str, str]) -> int | None:
    """The newest source position the base holds: recorded by the last fold, or the last bootstrap's."""
    snaps, hist = q.qualified(*base, "snapshots"), q.qualified(*base, "history")
    applied, boot = q._literal(m.APPLIED_SEQ), q._literal(BOOTSTRAP_SEQ)
    rows = spark.sql(
        f"SELECT s.summary[{applied}], s.summary[{boot}] FROM {snaps} s JOIN {hist} h ON s.snapshot_id = h.snapshot_id "
        f"WHERE h.is_current_ancestor AND (s.summary[{applied}] IS NOT NULL OR s.summary[{boot}] IS NOT NULL) "
        "ORDER BY h.made_current_at DESC, s.committed_at DESC LIMIT 1"
    ).collect()
    if not rows:  # maintenance expired every snapshot that recorded it: the pinned property
        pinned = bookkeeping(spark, base, m.APPLIED_SEQ) or bookkeeping(spark, base, BOOTSTRAP_SEQ)
        return int(pinned) if pinned else None
    recorded, position = rows[0][0], rows[0][1]
    return int(recorded) if recorded is not None else int(position)


def _plan(spark: SparkSession, base: tuple[str, str, str], columns: tuple[str, ...], branch: str) -> m.MultisetPlan:
    """The fold's plan on the audit branch, with the schema-change bookkeeping the landing left on the base table."""
    props = {str(r[0]): str(r[1]) for r in spark.sql(f"SHOW TBLPROPERTIES {q.qualified(*base)}").collect()}
    defaults = json.loads(props[COLUMN_DEFAULTS]) if props.get(COLUMN_DEFAULTS) else {}
    frozen = json.loads(props[FROZEN_COLUMNS]) if props.get(FROZEN_COLUMNS) else {}
    return m.MultisetPlan(
        g.on_branch(base, branch), SOURCE_VIEW, columns,
        defaults=tuple(q.Default(c, int(d["below"]), q.default_literal(str(d["type"]), str(d["text"])))
                       for c, d in sorted(defaults.items()) if c in columns),
        frozen=tuple(c for c in sorted(frozen) if c in columns),
    )


def merge_multiset(spark: SparkSession, catalog: str, db: str, table: str,
                   expectations: Sequence[Mapping[str, Any]] = (), quality_home: str | None = None) -> MergeResult:
    """Fold the new changelog snapshots of a keyless table into an audit branch of its base, check it, publish it
    when the gate passes; a no-op (nothing written) when there is nothing new."""
    started = time.monotonic()
    name = f"{db}.{table}"
    base, changelog = (catalog, db, table), (catalog, db, table + CHANGELOG_SUFFIX)
    pin_bookkeeping(spark, base)  # a run killed between its publish and its pin
    through = complete_through(spark, catalog, db, table)
    found = new_changes(spark, base, changelog)
    upto, previous, changes = found.upto, found.previous, found.changes
    if changes is None or upto is None:
        return MergeResult(name, upto, previous, 0, -1, time.monotonic() - started, skipped=True)
    order = [f.name for f in spark.table(q.qualified(*base)).schema.fields]
    columns = tuple(n for n in order if n not in (SEQ, SOURCE_TS))
    wap.drop_stale(spark, base, base)
    branch = g.branch_name(upto, datetime.now(UTC))
    wap.create(spark, base, branch)
    plan = _plan(spark, base, columns, branch)
    props: dict[str, str] = {MERGED_UPTO: str(upto)}
    if found.landed is not None:
        props[MERGED_LANDED] = str(found.landed)
    if through is not None:
        props[COMPLETE_THROUGH] = through
    try:
        if int(spark.sql(m.partitions_sql(SOURCE_VIEW)).collect()[0][0]) > 1:
            raise ValueError(f"{name} has no key and its changes come from several Kafka partitions: their order "
                             "is lost; give its topic one partition (or the table a key) and rebuild it")
        applied = applied_seq(spark, base)
        found = spark.sql(m.truncate_seq_sql(SOURCE_VIEW)).collect()[0][0]
        truncated = int(found) if found is not None else None
        spark.sql(m.slice_sql(plan, applied, truncated)).createOrReplaceTempView(m.SLICE_VIEW)
        newest = spark.sql(m.newest_seq_sql()).collect()[0][0]
        n_changes = int(spark.sql(f"SELECT COUNT(*) FROM {q.quote(m.SLICE_VIEW)}").collect()[0][0])
        keep_base = truncated is None or (applied is not None and truncated <= applied)
        now_applied = max((int(v) for v in (applied, truncated, newest) if v is not None), default=None)
        # the new content, computed from the base as it stands, is materialized before it replaces the branch's
        fold = spark.sql(m.fold_sql(plan, keep_base)).localCheckpoint()
        fold.createOrReplaceTempView(FOLD_VIEW)
        if now_applied is not None:
            props[m.APPLIED_SEQ] = str(now_applied)
        set_snapshot_properties(spark, props)
        spark.sql(m.overwrite_sql(plan, FOLD_VIEW, order))
        record_on_branch(spark, base, branch, upto)
        unset_snapshot_properties(spark, props)
        report = gate.GateReport(name, branch, uuid.uuid4().hex)
        checks, report.docs = gate.run_expectations(spark, name, base, branch, list(expectations), quality_home) \
            if expectations else ([], None)
        frozen = [c for c in plan.frozen]
        report.checks = [*checks, *gate.multiset_checks(spark, base, branch, m.SLICE_VIEW, keep_base),
                         gate.schema_check(gate.columns_of(spark, g.on_branch(base, branch)),
                                           gate.columns_of(spark, changelog), frozen)]
    finally:
        unset_snapshot_properties(spark, props)
        for view in (SOURCE_VIEW, m.SLICE_VIEW, FOLD_VIEW):
            spark.catalog.dropTempView(view)
    published, _ = _publish(spark, catalog, report, base, None)
    rows_after = spark.table(q.qualified(*base)).count()
    result = MergeResult(name, upto, previous, n_changes, rows_after, time.monotonic() - started,
                         gate=report, published=published)
    log.info("merge %s (no key, as a multiset): %s, %d changes from changelog snapshot %s, %d rows on main, %.1f s",
             name, result.outcome, n_changes, upto, rows_after, result.seconds)
    return result
