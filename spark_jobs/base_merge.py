"""The base MERGE of a keyed table: the write mode its settings ask for, only the base buckets its changes touch,
and a check of its own plan before it runs.

- Write mode, per table (`merge-on-read` | `copy-on-write`, Settings.merge_mode_for): the base's
  `write.merge.mode`, `write.update.mode` and `write.delete.mode`. Set when the table is made (cdc/lake/catalog.py)
  and brought in line here, by ALTER TABLE before the MERGE, when the setting changed since. Merge-on-read writes
  position-delete files beside the data files it leaves alone (format version 2, not deletion vectors: see
  cdc/lake/catalog.py), copy-on-write rewrites the data files that hold changed rows; neither writes equality deletes.
- Buckets: the MERGE's ON clause restricts the base to the buckets of the changed keys, which Iceberg pushes down to
  the base's scan, so the files of unchanged buckets are not read (merge_sql.TargetBuckets).
- Plan: before it runs, the MERGE is EXPLAINed and the plan read (spark_jobs/plan.py): an Exchange between the join
  and the base's scan means the base is shuffled (no storage-partitioned join); that is logged with the likely reasons.
- The latest change per key is staged as a cached SQL view (`stage_latest`), not a DataFrame's temp view: Spark 4.1
  cannot plan a copy-on-write MERGE whose source reads an Iceberg table through a DataFrame temp view
  ("No plan for TableReference", apache/spark#56515, SPARK-57539; fixed in Spark 4.2 by SPARK-54873).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession

try:  # as a package (cdc merge) or as files (spark-submit)
    from spark_jobs import gate_sql as g, merge_sql as q, plan as p
except ImportError:  # pragma: no cover
    import gate_sql as g  # type: ignore[no-redef,import-not-found]
    import merge_sql as q  # type: ignore[no-redef]
    import plan as p  # type: ignore[no-redef,import-not-found]
from cdc.lake.contract import LATEST_VIEW

log = logging.getLogger("spark_jobs.merge")

ICEBERG_DEFAULT_MODE = "copy-on-write"  # what Iceberg does when a write-mode property is not set


def bucket_spec(spark: SparkSession, ident: Sequence[str]) -> tuple[int, str] | None:
    """The table's `bucket(N, column)` partition field, from DESCRIBE TABLE (= spark_jobs.merge.bucket_spec)."""
    rows = spark.sql(f"DESCRIBE TABLE {q.qualified(*ident)}").collect()
    return g.bucket_of([str(r[1]) for r in rows if str(r[0]).startswith("Part ")])


def write_modes(spark: SparkSession, base: Sequence[str]) -> dict[str, str]:
    """The base's write-mode properties (Iceberg's default where one is not set)."""
    props = {str(r[0]): str(r[1]) for r in spark.sql(f"SHOW TBLPROPERTIES {q.qualified(*base)}").collect()}
    return {k: props.get(k, ICEBERG_DEFAULT_MODE) for k in q.WRITE_MODE_PROPERTIES}


def align_write_mode(spark: SparkSession, base: Sequence[str], mode: str | None, name: str) -> bool:
    """Bring the base's write-mode properties in line with `mode` (None: leave them as they are); True when set."""
    if mode is None:
        return False
    current = write_modes(spark, base)
    if all(v == mode for v in current.values()):
        return False
    spark.sql(q.write_mode_sql(base, mode))
    was = sorted(set(current.values()))
    log.info("merge %s: write mode %s -> %s (the table's merge mode setting changed; %s set)",
             name, "/".join(was), mode, ", ".join(q.WRITE_MODE_PROPERTIES))
    return True


def stage_latest(spark: SparkSession, latest_sql: str, view: str = LATEST_VIEW) -> int:
    """The latest change per key as the cached temp view `view`; its row count. Drop it with `drop_latest` before
    the views it reads (its SQL is resolved again on every use)."""
    spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {q.quote(view)} AS {latest_sql}")
    spark.sql(f"CACHE TABLE {q.quote(view)}")
    return int(spark.sql(f"SELECT COUNT(*) FROM {q.quote(view)}").collect()[0][0])


def drop_latest(spark: SparkSession, view: str = LATEST_VIEW) -> None:
    spark.catalog.dropTempView(view)  # uncaches it too


def target_buckets(spark: SparkSession, plan: q.MergePlan, spec: tuple[int, str] | None,
                   latest_view: str = LATEST_VIEW) -> q.TargetBuckets | None:
    """The base buckets the changes touch, None when there is nothing to leave out (an unbucketed base, a bucket
    on a column outside the key, every bucket changed, no change)."""
    if spec is None:
        return None
    count, column = spec
    if column not in plan.key:  # an update can move a row between buckets of a non-key column
        return None
    catalog = plan.target[0]
    rows = spark.sql(q.changed_buckets_sql(catalog, count, column, latest_view)).collect()
    values = tuple(sorted(int(r[0]) for r in rows if r[0] is not None))
    if not values or len(values) >= count:
        return None
    return q.TargetBuckets(catalog, count, column, values)


def spj_confs(spark: SparkSession) -> dict[str, str | None]:
    return {k: spark.conf.get(k, None) for k in p.SPJ_CONFS}


def check_plan(spark: SparkSession, sql: str, base: Sequence[str], changelog: Sequence[str], name: str,
               base_spec: tuple[int, str] | None) -> p.PlanCheck:
    """EXPLAIN the MERGE and log whether the base side has an Exchange (a warning with the likely reasons when it
    does). Never raises for the plan's sake: the MERGE itself reports a statement that cannot run."""
    try:
        text = str(spark.sql("EXPLAIN " + sql).collect()[0][0])
    except Exception as exc:  # noqa: BLE001 - the MERGE itself reports what is wrong with it
        text = f"{p.PLANNING_FAILED}: {type(exc).__name__}: {exc}"
    log.debug("merge %s: the MERGE's plan:\n%s", name, text)
    check = p.check_merge_plan(text, ".".join(base[:3]))
    if not check.planned or not check.base_scan:
        log.warning("merge %s: plan check: %s; the MERGE runs unchecked", name, check.summary())
    elif check.base_shuffled:
        has_files = bool(check.grouped_by) or bool(spark.sql(f"SELECT 1 FROM {q.qualified(*base[:3], 'files')} LIMIT 1").collect())
        reasons = p.why_base_shuffled(check, spj_confs(spark), base_spec, bucket_spec(spark, changelog), has_files)
        log.log(logging.WARNING if has_files else logging.INFO,
                "merge %s: plan check: an exchange on the base side, the base is shuffled (%s); likely because %s",
                name, check.summary(), "; ".join(reasons))
    else:
        log.info("merge %s: plan check: no exchange on the base side (%s)", name, check.summary())
    return check


def _some(values: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", … ({len(values) - limit} more)" if len(values) > limit else "")


def prepare(spark: SparkSession, plan: q.MergePlan, base: Sequence[str], changelog: Sequence[str], name: str,
            mode: str | None, purge_below: int | None = None, backfill: bool = False,
            latest_view: str = LATEST_VIEW) -> str:
    """The base MERGE to run: the write mode brought in line, the base restricted to the changed buckets (unless
    the MERGE purges or backfills, which reads every row), and its plan checked and logged."""
    align_write_mode(spark, base, mode, name)
    spec = bucket_spec(spark, base)
    buckets = None if purge_below is not None or backfill else target_buckets(spark, plan, spec, latest_view)
    if buckets is not None:
        log.info("merge %s: the changes touch %d of %d buckets: the MERGE reads only those of the base (%s)",
                 name, len(buckets.values), buckets.count, _some(buckets.values))
    sql = q.merge_sql(plan, latest_view, purge_below=purge_below, backfill=backfill, buckets=buckets)
    check_plan(spark, sql, base, changelog, name, spec)
    return sql
