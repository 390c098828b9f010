"""Audit branches of write-audit-publish: create, publish (fast-forward `main`), drop, and repair leftovers.

Order of a publish (the bookkeeping never runs ahead of the base):
  1. fast-forward the base's `main` to the audit branch (one atomic metadata commit);
  2. bring the tombstones' `main` to their audit branch of the same name: a fast-forward, or, when that `main`
     moved meanwhile, a MERGE of the branch's tombstones into it (a tombstone only moves forward: idempotent);
  3. drop both branches.
Once 1 is done the table is published, whatever 2 does. A run that dies, or fails, between 1 and 3 leaves a
tombstones branch whose base branch is on `main`: the next run applies it first (`repair_tombstones`), the same
way as 2. A tombstones branch whose base was never published is dropped."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession

try:  # as a package (cdc merge) or as a file (spark-submit spark_jobs/merge.py)
    from spark_jobs import gate_sql as g
except ImportError:  # pragma: no cover - spark-submit puts the file's folder on the path
    import gate_sql as g  # type: ignore[no-redef,import-not-found]
from cdc.errors import TransientError
from cdc.lake.contract import MERGED_UPTO

log = logging.getLogger("spark_jobs.gate_publish")

Ident = tuple[str, str, str]


class MainMoved(TransientError):
    """`main` moved while the audit branch was being written and checked: nothing was published."""


def audit_branches(spark: SparkSession, table: Ident) -> dict[str, int]:
    """The table's audit branches and their head snapshots."""
    return {str(r[0]): int(r[1]) for r in spark.sql(g.refs_sql(table)).collect() if str(r[0]).startswith(g.AUDIT_PREFIX)}


def create(spark: SparkSession, table: Ident, branch: str) -> None:
    spark.sql(g.create_branch_sql(table, branch))


def drop(spark: SparkSession, table: Ident, branch: str) -> None:
    spark.sql(g.drop_branch_sql(table, branch))


def head_summary(spark: SparkSession, table: Ident, branch: str, prop: str) -> str | None:
    rows = spark.sql(g.head_summary_sql(table, branch, prop)).collect()
    return None if not rows or rows[0][0] is None else str(rows[0][0])


def publish(spark: SparkSession, table: Ident, branch: str) -> None:
    """Fast-forward `main` to the branch; MainMoved when `main` is no longer the branch's ancestor."""
    try:
        spark.sql(g.fast_forward_sql(table, branch))
    except Exception as exc:
        if "is not an ancestor" in str(exc):
            raise MainMoved(f"{table[1]}.{table[2]}: main moved while the audit branch {branch} was written "
                            "(another writer committed to it); nothing was published, run the merge again") from exc
        raise


def publish_tombstones(spark: SparkSession, tombstones: Ident, branch: str, key: Sequence[str]) -> None:
    """Bring the tombstones' `main` up to their audit branch and drop the branch: a fast-forward, or a MERGE of
    the branch's rows when `main` moved since the branch was made (idempotent: a tombstone only moves forward)."""
    try:
        publish(spark, tombstones, branch)
    except MainMoved:
        log.warning("%s.%s: main moved since the audit branch %s was made: merging its tombstones into main",
                    tombstones[1], tombstones[2], branch)
        spark.sql(g.merge_tombstones_sql(tombstones, branch, key))
    drop(spark, tombstones, branch)


def repair_tombstones(spark: SparkSession, base: Ident, tombstones: Ident, key: Sequence[str]) -> None:
    """Apply a tombstones audit branch whose base branch reached `main` (a run died or failed between the two
    publishes), by fast-forward or MERGE (`publish_tombstones`); drop one whose base did not (its slice is redone
    from `main`'s merged position)."""
    base_heads = audit_branches(spark, base)
    for branch in audit_branches(spark, tombstones):
        head = base_heads.get(branch)
        # the base branch's head is its own merge commit (it records the slice the name gives), and is on main
        merged = head is not None and head_summary(spark, base, branch, MERGED_UPTO) == str(g.branch_slice(branch))
        if merged and head is not None and spark.sql(g.in_main_ancestry_sql(base, head)).collect():
            log.warning("%s.%s: the base of %s is published, its tombstones are not: publishing them now",
                        base[1], base[2], branch)
            publish_tombstones(spark, tombstones, branch, key)
            drop(spark, base, branch)
        drop(spark, tombstones, branch)


def drop_stale(spark: SparkSession, base: Ident, tombstones: Ident) -> list[str]:
    """Drop what earlier runs left (a failed gate's evidence is kept until the next merge of the table)."""
    left = sorted(audit_branches(spark, base))
    for branch in left:
        drop(spark, base, branch)
    for branch in audit_branches(spark, tombstones):
        drop(spark, tombstones, branch)
    return left
