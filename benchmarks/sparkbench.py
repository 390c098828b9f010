"""Spark helpers of the merge benchmarks: fill a base, land a change set, run the product's MERGE, and measure.

The candidate is the product's own SQL (spark_jobs/merge_sql): the latest change per key
(`latest_changes_sql`, persisted as `merge_table` does), the tombstones MERGE (`tombstones_sql`) and the base
MERGE (`merge_sql`), written to `main` (the write-audit-publish branch and the gate are not part of the
statement cost; B5b runs `merge_table` whole). The baseline rebuilds the table from the same latest view:
CREATE OR REPLACE TABLE ... AS the full new state (what a daily full reload writes).

Measures without listeners: shuffle bytes from the status store's executor totals
(`sc.statusStore().executorList`, the delta over a statement), plans from the SQL status store's executions
(the final adaptive plan), bytes written from the new snapshots' summaries.
"""

# ruff: noqa: S608 - SQL text: identifiers go through spark_jobs.merge_sql.quote, values are numbers or fixed text

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks import common as c
from cdc.lake import catalog as lake
from cdc.lake.contract import LATEST_VIEW, SOURCE_VIEW
from spark_jobs import merge_sql as q

log = logging.getLogger("benchmarks.spark")

MOR = "merge-on-read"
COW = "copy-on-write"
SPJ_CONFS = (  # cdc/spark.py's storage-partitioned-join settings, and the one STACK.md adds
    "spark.sql.sources.v2.bucketing.enabled",
    "spark.sql.iceberg.planning.preserve-data-grouping",
    "spark.sql.requireAllClusterKeysForCoPartition",
    "spark.sql.sources.v2.bucketing.pushPartValues.enabled",
    "spark.sql.sources.v2.bucketing.shuffle.enabled",
)


def mode_props(mode: str) -> dict[str, str]:
    return {"write.merge.mode": mode, "write.update.mode": mode, "write.delete.mode": mode}


@dataclass(frozen=True)
class Names:
    """The three lake tables of one benchmark table, as Spark identifiers."""

    catalog: str
    db: str
    table: str

    @property
    def base(self) -> tuple[str, str, str]:
        return (self.catalog, self.db, self.table)

    @property
    def changelog(self) -> tuple[str, str, str]:
        return (self.catalog, self.db, self.table + lake.CHANGELOG_SUFFIX)

    @property
    def tombstones(self) -> tuple[str, str, str]:
        return (self.catalog, self.db, self.table + lake.TOMBSTONES_SUFFIX)

    def sql(self, ident: tuple[str, ...]) -> str:
        return q.qualified(*ident)


def create_tables(ctx: c.Context, name: str) -> Names:
    """The product's base, changelog and tombstones tables (cdc.lake.catalog.ensure_tables) for the workload."""
    catalog = lake.open_catalog(ctx.settings)
    lake.ensure_tables(catalog, ctx.settings, c.table_id(name), c.WORKLOAD)
    return Names(ctx.settings.catalog.name, c.DB, name)


def columns(spark: Any, ident: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in spark.table(q.qualified(*ident)).schema.fields]


def fill_base(spark: Any, names: Names, rows: int, chunks: int, target: tuple[str, ...] | None = None) -> float:
    """`rows` workload rows (ids 0..rows-1, version 0) in `chunks` appends (so every bucket holds `chunks` files,
    each a range of ids, as a table bootstrapped and then grown would)."""
    ident = target or names.base
    cols = columns(spark, ident)
    exprs = {"_seq": "CAST(id AS DECIMAL(38,0))", "_source_ts": f"timestamp_seconds({c.EPOCH_SECONDS} + id)"}
    select = ", ".join(_expr(n, t, exprs, "id", "0") for n, t in cols)
    started = time.monotonic()
    step = -(-rows // chunks)
    for lo in range(0, rows, step):
        hi = min(rows, lo + step)
        spark.sql(f"INSERT INTO {q.qualified(*ident)} SELECT {select} FROM range({lo}, {hi})")
    return time.monotonic() - started


def _expr(name: str, sql_type: str, extra: dict[str, str], id_expr: str, version: str) -> str:
    if name in c.SPARK_COLUMNS:
        text = c.SPARK_COLUMNS[name].format(id=id_expr, v=version)
    elif name in extra:
        text = extra[name]
    else:
        text = f"CAST(NULL AS {sql_type})"
    return f"{text} AS `{name}`"


@dataclass(frozen=True)
class ChangeSet:
    """One landing of changes (its own Kafka partition number in the changelog, so its slice is a filter)."""

    name: str
    partition: int
    rows: int
    updates: int
    deletes: int
    inserts: int


def land_changes(spark: Any, names: Names, base_rows: int, fraction: float, distribution: str, partition: int,
                 seq_base: int, id_base: int | None = None, version: int = 1, seed: int = 7, recent_share: float = 0.1) -> ChangeSet:
    """Append a change set to the changelog with Spark: `fraction` of the base's rows, 70 % updates, 10 % deletes
    of existing keys and 20 % inserts of new keys (ids from `id_base`, default: after the base's).

    `uniform`: the changed existing keys are spread over every id; `recent`: they are the newest ids (the last
    `recent_share` of the table): each bucket's newest files only."""
    total = max(1, int(round(base_rows * fraction)))
    existing = int(round(total * 0.8))
    inserts = total - existing
    if distribution == "uniform":
        lo, span = 0, base_rows
    elif distribution == "recent":
        span = max(existing, int(base_rows * recent_share))
        lo = base_rows - span
    else:
        raise ValueError(f"unknown distribution {distribution!r}")
    # a deterministic pseudo-random choice of `existing` keys of [lo, lo+span): keep ids whose hash rank is low
    threshold = existing / span
    pick = (f"SELECT id FROM range({lo}, {lo + span}) "
            f"WHERE (pmod(xxhash64(id, {seed}), 1000000000) / 1000000000.0) < {threshold!r}")
    start = base_rows if id_base is None else id_base
    cols = columns(spark, names.changelog)
    meta = {
        "_op": f"CASE WHEN kind = 'i' THEN 'c' WHEN pmod(xxhash64(id, {seed + 1}), 8) = 0 THEN 'd' ELSE 'u' END",
        "_seq": f"CAST({seq_base} + id AS DECIMAL(38,0))",
        "_source_ts": f"timestamp_seconds({c.EPOCH_SECONDS + 100_000_000} + {version} * 60)",
        "_ingested_at": "current_timestamp()",
        "_kafka_topic": "'cdc.bn_bench.orders'",
        "_kafka_partition": f"CAST({partition} AS INT)",
        "_kafka_offset": "id",
    }
    select = ", ".join(_expr(n, t, meta, "id", str(version)) for n, t in cols)
    source = f"(SELECT id, 'x' AS kind FROM ({pick}) UNION ALL SELECT id, 'i' AS kind FROM range({start}, {start + inserts}))"
    spark.sql(f"INSERT INTO {q.qualified(*names.changelog)} SELECT {select} FROM {source}")
    counts = spark.sql(f"SELECT _op, count(*) FROM {q.qualified(*names.changelog)} WHERE _kafka_partition = {partition} "
                       "GROUP BY _op").collect()
    by = {str(r[0]): int(r[1]) for r in counts}
    return ChangeSet(f"{distribution}", partition, sum(by.values()), by.get("u", 0), by.get("d", 0), by.get("c", 0))


# ---------------------------------------------------------------------------------------------- measuring
def shuffle_bytes(spark: Any) -> tuple[int, int]:
    """(shuffle bytes written, read) so far by every executor of this application (the status store's totals)."""
    sc = spark.sparkContext
    executors = sc._jvm.scala.jdk.javaapi.CollectionConverters.asJava(sc._jsc.sc().statusStore().executorList(False))
    return sum(int(e.totalShuffleWrite()) for e in executors), sum(int(e.totalShuffleRead()) for e in executors)


def last_execution(spark: Any) -> int:
    store = spark._jsparkSession.sharedState().statusStore()
    ids = [int(x.executionId()) for x in spark.sparkContext._jvm.scala.jdk.javaapi.CollectionConverters.asJava(store.executionsList())]
    return max(ids, default=-1)


def plans_since(spark: Any, execution: int) -> list[str]:
    """The final (adaptive) physical plans of the SQL executions after `execution`."""
    store = spark._jsparkSession.sharedState().statusStore()
    out = []
    for x in spark.sparkContext._jvm.scala.jdk.javaapi.CollectionConverters.asJava(store.executionsList()):
        if int(x.executionId()) > execution:
            out.append(str(x.physicalPlanDescription()))
    return out


def executions_since(spark: Any, execution: int) -> list[dict[str, Any]]:
    """The SQL executions after `execution`: where they were called from (Spark's description: the caller's
    file and line), how long they took, and the root of their plan (a MERGE is a WriteDelta or ReplaceData)."""
    store = spark._jsparkSession.sharedState().statusStore()
    out = []
    for x in spark.sparkContext._jvm.scala.jdk.javaapi.CollectionConverters.asJava(store.executionsList()):
        if int(x.executionId()) <= execution:
            continue
        done = x.completionTime()
        ms = int(done.get().getTime()) - int(x.submissionTime()) if done.isDefined() else None
        nodes = _tree(str(x.physicalPlanDescription()))
        roots = [t.split(" (")[0] for _, t in nodes[:3]]
        out.append({"id": int(x.executionId()), "called_at": str(x.description())[:160], "ms": ms, "root": roots})
    return out


def _tree(plan: str) -> list[tuple[int, str]]:
    """The node lines of a formatted plan's tree, final adaptive plans only: (depth, node text without the
    whole-stage-codegen star). `== Initial Plan ==` sections are left out."""
    lines = plan.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("== Physical Plan ==")), 0)
    out: list[tuple[int, str]] = []
    skip: int | None = None
    for line in lines[start:]:
        if not line.strip():
            break
        body = line.lstrip(" :|+-")
        depth = len(line) - len(body)
        if skip is not None and depth >= skip:
            continue
        skip = None
        if "== Initial Plan ==" in body:
            skip = depth
            continue
        if "== Final Plan ==" in body:
            continue
        out.append((depth, body.removeprefix("* ").strip()))
    return out


def join_side_exchange(plans: Iterable[str], table: str) -> bool | None:
    """Whether the scan of `table` (catalog.db.table) reaches its join through a shuffle (Exchange,
    ShuffleQueryStage) in the plans given; None when no plan scans it under a join."""
    pattern = re.compile(r"^BatchScan " + re.escape(table) + r"(\[| |\(|$)")
    found: bool | None = None
    for plan in plans:
        nodes = _tree(plan)
        for i, (depth, text) in enumerate(nodes):
            if not pattern.match(text):
                continue
            # walk up: the nearest ancestors (each shallower than the last) until a join
            shuffled, level = False, depth
            for d, up in reversed(nodes[:i]):
                if d >= level:
                    continue
                level = d
                if up.startswith(("Exchange", "ShuffleQueryStage", "AQEShuffleRead")):
                    shuffled = True
                if "Join" in up.split(" ")[0]:
                    found = bool(found) or shuffled
                    break
    return found


def snapshots(spark: Any, ident: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    rows = spark.sql(f"SELECT snapshot_id, summary FROM {q.qualified(*ident, 'snapshots')} ORDER BY committed_at").collect()
    return [(int(r[0]), dict(r[1] or {})) for r in rows]


def exists(spark: Any, ident: tuple[str, str, str]) -> bool:
    rows = spark.sql(f"SHOW TABLES IN {q.qualified(*ident[:2])} LIKE '{ident[2]}'").collect()
    return bool(rows)


def current_snapshot(spark: Any, ident: tuple[str, ...]) -> int | None:
    rows = spark.sql(f"SELECT snapshot_id FROM {q.qualified(*ident, 'history')} WHERE is_current_ancestor "
                     "ORDER BY made_current_at DESC LIMIT 1").collect()
    return int(rows[0][0]) if rows else None


def written(spark: Any, ident: tuple[str, ...], before: Iterable[int]) -> dict[str, int]:
    """What the snapshots committed since (not in `before`) added: bytes and files (data and delete)."""
    known = set(before)
    out = {"bytes": 0, "data_files": 0, "delete_files": 0, "removed_bytes": 0, "snapshots": 0}
    for sid, summary in snapshots(spark, ident):
        if sid in known:
            continue
        out["snapshots"] += 1
        out["bytes"] += int(summary.get("added-files-size", 0))
        out["removed_bytes"] += int(summary.get("removed-files-size", 0))
        out["data_files"] += int(summary.get("added-data-files", 0))
        out["delete_files"] += int(summary.get("added-delete-files", 0))
    return out


def table_shape(spark: Any, ident: tuple[str, ...]) -> dict[str, int]:
    """Live data files, delete files and bytes of the current snapshot."""
    rows = spark.sql(f"SELECT content, count(*), coalesce(sum(file_size_in_bytes), 0) FROM {q.qualified(*ident, 'files')} "
                     "GROUP BY content").collect()
    by = {int(r[0]): (int(r[1]), int(r[2])) for r in rows}
    data = by.get(0, (0, 0))
    deletes = (by.get(1, (0, 0))[0] + by.get(2, (0, 0))[0], by.get(1, (0, 0))[1] + by.get(2, (0, 0))[1])
    snaps = spark.sql(f"SELECT count(*) FROM {q.qualified(*ident, 'snapshots')}").collect()[0][0]
    manifests = spark.sql(f"SELECT count(*) FROM {q.qualified(*ident, 'manifests')}").collect()[0][0]
    return {"data_files": data[0], "data_bytes": data[1], "delete_files": deletes[0], "delete_bytes": deletes[1],
            "snapshots": int(snaps), "manifests": int(manifests)}


def _name(ident: tuple[str, ...]) -> str:
    """A procedure's table argument: catalog-qualified (a bare `db.table` is first looked up as catalog `db`)."""
    return ".".join(ident)


def compact(spark: Any, ident: tuple[str, str, str], options: dict[str, str] | None = None) -> list[Any]:
    """`rewrite_data_files` (Iceberg's compaction procedure) with `options`."""
    opts = ", ".join(f"'{k}', '{v}'" for k, v in sorted((options or {}).items()))
    arg = f", options => map({opts})" if opts else ""
    return spark.sql(f"CALL {q.quote(ident[0])}.system.rewrite_data_files(table => '{_name(ident)}'{arg})").collect()


def rollback(spark: Any, ident: tuple[str, str, str], snapshot_id: int | None) -> None:
    if snapshot_id is None:
        return
    if current_snapshot(spark, ident) != snapshot_id:
        spark.sql(f"CALL {q.quote(ident[0])}.system.rollback_to_snapshot('{_name(ident)}', {int(snapshot_id)})")


def expire_all_but_current(spark: Any, ident: tuple[str, str, str]) -> None:
    """Drop every snapshot but the current one and delete the files only they held (keeps the disk in check)."""
    spark.sql(f"CALL {q.quote(ident[0])}.system.expire_snapshots(table => '{_name(ident)}', "
              "older_than => TIMESTAMP '9999-12-31 00:00:00', retain_last => 1)")


def set_props(spark: Any, ident: tuple[str, ...], props: dict[str, str]) -> None:
    pairs = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(props.items()))
    spark.sql(f"ALTER TABLE {q.qualified(*ident)} SET TBLPROPERTIES ({pairs})")


def scan(spark: Any, ident: tuple[str, ...]) -> tuple[float, tuple[int, int]]:
    """A full scan that reads every column and applies every delete: (seconds, (rows, xor of row hashes))."""
    cols = ", ".join(q.quote(n) for n, _ in columns(spark, ident))
    started = time.perf_counter()
    row = spark.sql(f"SELECT count(*), bit_xor(xxhash64({cols})) FROM {q.qualified(*ident)}").collect()[0]
    return time.perf_counter() - started, (int(row[0]), int(row[1] or 0))


def refresh(spark: Any, *idents: tuple[str, ...]) -> None:
    for ident in idents:
        spark.sql(f"REFRESH TABLE {q.qualified(*ident)}")


# ---------------------------------------------------------------------------------------------- the product's merge
def plan_for(names: Names, target: tuple[str, ...] | None = None) -> q.MergePlan:
    return q.MergePlan(target=target or names.base, tombstones=names.tombstones, source_view=SOURCE_VIEW, key=c.WORKLOAD.key,
                       columns=c.SOURCE_COLUMNS)


@dataclass
class Timed:
    seconds: dict[str, float] = field(default_factory=dict)
    shuffle_write: dict[str, int] = field(default_factory=dict)
    shuffle_read: dict[str, int] = field(default_factory=dict)
    plans: list[str] = field(default_factory=list)

    def total(self, *parts: str) -> float:
        return sum(self.seconds[p] for p in parts)


def _timed(spark: Any, out: Timed, part: str, sql: str, keep_plans: bool = False) -> None:
    w0, r0 = shuffle_bytes(spark)
    mark = last_execution(spark) if keep_plans else 0
    started = time.perf_counter()
    spark.sql(sql).collect()
    out.seconds[part] = time.perf_counter() - started
    w1, r1 = shuffle_bytes(spark)
    out.shuffle_write[part] = w1 - w0
    out.shuffle_read[part] = r1 - r0
    if keep_plans:
        out.plans.extend(plans_since(spark, mark))


def latest(spark: Any, names: Names, slice_filter: str, out: Timed) -> Any:
    """The merge's source: the slice as SOURCE_VIEW, the latest change per key persisted as LATEST_VIEW (as
    merge_table does); timed as `latest`."""
    started = time.perf_counter()
    # read as merge_table reads it: pinned to the changelog's current snapshot. (A view over a plain
    # `SELECT * FROM changelog` makes Spark 4.1's planner fail on the Iceberg MERGE: "No plan for TableReference".)
    snapshot = current_snapshot(spark, names.changelog)
    reader = spark.read.format("iceberg").option("versionAsOf", snapshot)
    reader.load(q.qualified(*names.changelog)).where(slice_filter).createOrReplaceTempView(SOURCE_VIEW)
    view = spark.sql(q.latest_changes_sql(plan_for(names))).persist()
    view.count()
    view.createOrReplaceTempView(LATEST_VIEW)
    out.seconds["latest"] = time.perf_counter() - started
    return view


def drop_latest(spark: Any, view: Any) -> None:
    spark.catalog.dropTempView(SOURCE_VIEW)
    spark.catalog.dropTempView(LATEST_VIEW)
    view.unpersist(blocking=True)


def product_merge(spark: Any, names: Names, slice_filter: str, target: tuple[str, ...] | None = None,
                  keep_plans: bool = False) -> Timed:
    """latest -> tombstones MERGE -> base MERGE, the statements merge_table runs (into `main`)."""
    out = Timed()
    plan = plan_for(names, target)
    view = latest(spark, names, slice_filter, out)
    try:
        _timed(spark, out, "tombstones", q.tombstones_sql(plan))
        _timed(spark, out, "merge", q.merge_sql(plan), keep_plans)
    finally:
        drop_latest(spark, view)
    return out


def new_state_sql(names: Names, base: tuple[str, ...] | None = None) -> str:
    """The table's full new state from the base and LATEST_VIEW (every change here is newer than its row)."""
    cols = [*c.SOURCE_COLUMNS, "_seq", "_source_ts"]
    pick = ", ".join(q.quote(n) for n in cols)
    on = " AND ".join(f"t.{q.quote(k)} = s.{q.quote(k)}" for k in c.WORKLOAD.key)
    return (f"SELECT {pick} FROM {q.qualified(*(base or names.base))} t LEFT ANTI JOIN {q.quote(LATEST_VIEW)} s ON {on} "
            f"UNION ALL SELECT {pick} FROM {q.quote(LATEST_VIEW)} WHERE `_op` <> 'd'")


def rebuild(spark: Any, names: Names, slice_filter: str, into: tuple[str, str, str], buckets: int,
            props: dict[str, str]) -> Timed:
    """The baseline: CREATE OR REPLACE the whole table from the base and the same latest view."""
    out = Timed()
    view = latest(spark, names, slice_filter, out)
    pairs = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(props.items()))
    try:
        _timed(spark, out, "rebuild", f"CREATE OR REPLACE TABLE {q.qualified(*into)} USING iceberg "
                                      f"PARTITIONED BY (bucket({buckets}, {q.quote(c.WORKLOAD.key[0])})) "
                                      f"TBLPROPERTIES ({pairs}) AS {new_state_sql(names)}")
    finally:
        drop_latest(spark, view)
    return out


def base_properties() -> dict[str, str]:
    return dict(lake.BASE_PROPERTIES)


def spark_confs(spark: Any, keys: Sequence[str] = SPJ_CONFS) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for k in keys:
        try:
            out[k] = spark.conf.get(k)
        except Exception:  # noqa: BLE001 - unset and no default
            out[k] = None
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
