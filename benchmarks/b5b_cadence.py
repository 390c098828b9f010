"""B5b cadence: the 15-minute schedule. Runs in a row of land -> merge (-> maintain every 4th run) on one table,
0.05 % of its rows changed per run; each run's merge next to rebuilding the table from the same changes.

- landing: the consumer's commit path (`cdc.ingest.commit.append_once` + `ChangelogSink`), with the run's
  changes built as Arrow rows (70 % updates, 10 % deletes of live keys, 20 % inserts of new keys). MariaDB,
  Debezium and Kafka are not in the loop (B2 measures them): the Kafka offsets are simulated.
- merge: the product's job, `spark_jobs.merge.merge_table` (slice selection, tombstones, MERGE on an audit
  branch, quality gate, publish), timed whole.
- rebuild (baseline, same run, order alternating): CREATE OR REPLACE of the whole table from the base and
  the run's latest changes.
- maintenance every `maintain_every` runs: `spark_jobs.maintain.maintain_table` (`cdc maintain`) with the
  settings' thresholds, except `snapshot_hours` (default 0.01 h here: the runs are minutes apart, not 15
  minutes, and a 24 h window would expire nothing within the benchmark). Pluggable: `maintenance=none`
  turns it off; without spark_jobs/maintain.py nothing runs and the record says so.
Reported: per run the merge and rebuild seconds and the table shapes (data files, delete files, snapshots,
manifests of the base, changelog and tombstones); the merge/rebuild ratio (median), and the trend (least-squares
slope of merge seconds per run, relative to the median). Targets: <= 0.1x, no upward trend.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import common as c, sparkbench as sb
from cdc.events.model import KafkaCoordinates
from cdc.ingest.commit import append_once
from cdc.ingest.landing import ChangelogSink
from cdc.lake import catalog as lake
from cdc.lake.writer import plain_arrow
from cdc.retry import RetryPolicy

log = logging.getLogger("benchmarks.b5b")

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"rows": 200_000, "fraction": 0.0005, "runs": 6, "chunks": 4, "maintain_every": 4, "maintenance": "cdc",
              "snapshot_hours": 0.01},
    "medium": {"rows": 2_000_000, "fraction": 0.0005, "runs": 10, "chunks": 8, "maintain_every": 4, "maintenance": "cdc",
               "snapshot_hours": 0.01},
    # the run: 24 cycles on a 2,000,000-row table, maintenance every 4th
    "full": {"rows": 2_000_000, "fraction": 0.0005, "runs": 24, "chunks": 8, "maintain_every": 4, "maintenance": "cdc",
             "snapshot_hours": 0.01},
}
TOPIC = "cdc.bn_bench.b5b"


def maintenance_step(ctx: c.Context, params: dict[str, Any]) -> tuple[str, Callable[[Any, str, str, str], Any] | None]:
    """The maintenance call (name, fn(spark, catalog, db, table)), or None when there is none to run."""
    if params.get("maintenance") in (None, "none", False):
        return "none", None
    try:
        from spark_jobs import maintain
    except ImportError:
        return "unavailable (no spark_jobs/maintain.py)", None
    values = ctx.settings.maintenance.model_dump()
    values["snapshot_hours"] = float(params.get("snapshot_hours", values["snapshot_hours"]))
    thresholds = maintain.thresholds_from(values)
    accepted = inspect.signature(maintain.maintain_table).parameters

    def run(spark: Any, catalog: str, db: str, table: str) -> Any:
        args: dict[str, Any] = {"th": thresholds} if "th" in accepted else {}
        return maintain.maintain_table(spark, catalog, db, table, **args)

    return f"spark_jobs.maintain.maintain_table({thresholds})", run


def run(ctx: c.Context, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    from spark_jobs.merge import merge_table

    spark = ctx.spark()
    notes: list[str] = []
    rows = int(params["rows"])
    names = sb.create_tables(ctx, "b5b")
    fill = sb.fill_base(spark, names, rows, int(params["chunks"]))
    catalog = lake.open_catalog(ctx.settings)
    table = c.table_id("b5b")
    schema = plain_arrow(catalog.load_table(lake.changelog_name(table)).schema().as_arrow())
    rebuilt = (names.catalog, names.db, "b5b_rebuilt")
    step_name, step = maintenance_step(ctx, params)
    if step is None:
        notes.append(f"maintenance: {step_name}")
    rng = np.random.default_rng(11)
    live = np.ones(rows, dtype=bool)
    next_id, offset, seq = rows, 0, 10 * rows
    per_run = max(1, int(round(rows * float(params["fraction"]))))
    policy = RetryPolicy()
    runs: list[dict[str, Any]] = []
    # the first merge of a table pays for the session's first gate (great-expectations import, its context) and the
    # JIT: one warm-up cycle, not recorded
    for i in range(-1, int(params["runs"])):
        record: dict[str, Any] = {"run": i}
        # ---- land: 70 % updates and 10 % deletes of live keys, 20 % inserts
        n_existing = int(round(per_run * 0.8))
        keys = rng.choice(np.flatnonzero(live), size=n_existing, replace=False)
        n_new = per_run - n_existing
        ids = np.concatenate([keys, np.arange(next_id, next_id + n_new)])
        ops = np.concatenate([np.where(rng.random(n_existing) < 0.125, "d", "u"), np.full(n_new, "c")])
        live = np.concatenate([live, np.ones(n_new, dtype=bool)])
        live[keys[ops[:n_existing] == "d"]] = False
        next_id += n_new
        arrow = c.arrow_rows(schema, ids, i + 2, ops, seq_start=seq, topic=TOPIC, offset_start=offset)
        coords = [KafkaCoordinates(TOPIC, 0, o) for o in range(offset, offset + len(ids))]
        end = offset + len(ids)
        record["land_s"], landed = c.seconds(lambda arrow=arrow, coords=coords, end=end: append_once(
            ChangelogSink(catalog, table), arrow, coords, {TOPIC: {0: end}}, policy))
        where = f"_kafka_offset >= {offset} AND _kafka_offset < {offset + len(ids)}"
        offset += len(ids)
        seq += len(ids)
        record["changes"] = int(landed)
        # ---- merge and rebuild, alternating which goes first
        order = ["merge", "rebuild"] if i % 2 == 0 else ["rebuild", "merge"]
        for what in order:
            if what == "merge":
                mark = sb.last_execution(spark)
                started = time.perf_counter()
                result = merge_table(spark, names.catalog, names.db, names.table)
                record["merge_s"] = time.perf_counter() - started
                record.update(_breakdown(sb.executions_since(spark, mark)))
                record["merged_changes"] = result.changes
                record["outcome"] = result.outcome
            else:
                before = [s for s, _ in sb.snapshots(spark, rebuilt)] if sb.exists(spark, rebuilt) else []
                t = sb.rebuild(spark, names, where, rebuilt, ctx.settings.ingest.buckets, sb.base_properties())
                record["rebuild_s"] = t.total("latest", "rebuild")
                record["rebuild_bytes"] = sb.written(spark, rebuilt, before)["bytes"]
                sb.expire_all_but_current(spark, rebuilt)
        if step is not None and i >= 0 and (i + 1) % int(params["maintain_every"]) == 0:
            record["maintain_s"], outcome = c.seconds(lambda: step(spark, names.catalog, names.db, names.table))
            record["maintenance"] = _steps(outcome)
        record["base"] = sb.table_shape(spark, names.base)
        record["changelog"] = sb.table_shape(spark, names.changelog)
        record["tombstones"] = sb.table_shape(spark, names.tombstones)
        log.info("b5b: run %d: merge %.1f s (%s, %s changes), rebuild %.1f s%s; base %s", i, record["merge_s"],
                 record["outcome"], record["merged_changes"], record["rebuild_s"],
                 f", maintenance {record['maintain_s']:.1f} s" if "maintain_s" in record else "", record["base"])
        if i >= 0:
            runs.append(record)
    # the result must equal the rebuild (merged in the same run from the same changes)
    _, merged_hash = sb.scan(spark, names.base)
    _, rebuilt_hash = sb.scan(spark, rebuilt)
    if merged_hash != rebuilt_hash:
        notes.append(f"the merged base differs from the rebuilt table: {merged_hash} vs {rebuilt_hash}")
    merge_s = [r["merge_s"] for r in runs]
    rebuild_s = [r["rebuild_s"] for r in runs]
    med_merge = float(np.median(merge_s)) if merge_s else None
    slope = c.slope(merge_s)
    third = max(1, len(merge_s) // 3)
    summary = {
        "merge_s": c.stats(merge_s), "rebuild_s": c.stats(rebuild_s),
        "merge_vs_rebuild": c.ratio(med_merge, float(np.median(rebuild_s)) if rebuild_s else None),
        "merge_vs_rebuild_paired": round(float(np.median([m / r for m, r in zip(merge_s, rebuild_s, strict=True)])), 4)
        if runs else None,
        "merge_sql_s": c.stats([r["sql_s"] for r in runs]),
        "merge_sql_executions": c.stats([r["sql_executions"] for r in runs]),
        "merge_write_statements_s": c.stats([sum(r["write_statements_s"]) for r in runs]),
        "merge_slope_s_per_run": slope,
        "merge_slope_relative_per_run": None if slope is None or not med_merge else slope / med_merge,
        "last_third_vs_first_third": c.ratio(float(np.median(merge_s[-third:])), float(np.median(merge_s[:third]))) if merge_s else None,
        "maintenance": step_name,
        "gate_outcomes": sorted({str(r["outcome"]) for r in runs}),
        "base_files_first_last": [runs[0]["base"]["data_files"], runs[-1]["base"]["data_files"]] if runs else None,
        "base_snapshots_first_last": [runs[0]["base"]["snapshots"], runs[-1]["base"]["snapshots"]] if runs else None,
        "changelog_files_first_last": [runs[0]["changelog"]["data_files"], runs[-1]["changelog"]["data_files"]] if runs else None,
        "changelog_snapshots_first_last": [runs[0]["changelog"]["snapshots"], runs[-1]["changelog"]["snapshots"]] if runs else None,
        "equal_to_rebuild": merged_hash == rebuilt_hash,
    }
    return {"setup": {"fill_seconds": round(fill, 1), "changes_per_run": per_run}, "summary": summary, "runs": runs}, notes


def _breakdown(executions: list[dict[str, Any]]) -> dict[str, Any]:
    """Where merge_table's time went: its Spark SQL executions grouped by the line that ran them (the rest of the
    wall time is the driver's own: planning, catalog calls, great-expectations, py4j). A command's execution may
    include a nested one's time, so the sum is an upper bound of the time in Spark SQL."""
    by: dict[str, list[float]] = {}
    for x in executions:
        if x["ms"] is not None:  # an eager spark.sql statement has no call site: name it by its plan's root
            where = x["called_at"] if "<unknown>" not in x["called_at"] else "spark.sql: " + " > ".join(x["root"][:2])
            by.setdefault(where, []).append(x["ms"] / 1000)
    top = sorted(by.items(), key=lambda kv: -sum(kv[1]))
    writes = [x["ms"] / 1000 for x in executions if x["ms"] is not None and any(
        r.startswith(("WriteDelta", "ReplaceData", "AppendData", "OverwriteByExpression")) for r in x["root"])]
    return {"sql_s": sum(sum(v) for v in by.values()), "sql_executions": len(executions), "write_statements_s": writes,
            "sql_by_caller": [{"called_at": k, "n": len(v), "s": round(sum(v), 3)} for k, v in top[:10]]}


def _steps(outcome: Any) -> list[dict[str, Any]]:
    """The maintenance outcome's steps as plain data (whatever shape they have)."""
    out = []
    for s in getattr(outcome, "steps", []) or []:
        if hasattr(s, "__dataclass_fields__"):
            out.append({k: getattr(s, k) for k in s.__dataclass_fields__})
        else:
            out.append({"step": str(s)})
    return out


def report(results: dict[str, Any]) -> list[str]:
    s = results["summary"]
    lines = ["| run | changes | merge s | rebuild s | maintenance s | base files (data/delete) | base snapshots | "
             "changelog files | changelog snapshots |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        b, cl = r["base"], r["changelog"]
        lines.append(f"| {r['run']} | {r['merged_changes']} | {c.fmt(r['merge_s'])} | {c.fmt(r['rebuild_s'])} | "
                     f"{c.fmt(r.get('maintain_s'))} | {b['data_files']}/{b['delete_files']} | {b['snapshots']} | "
                     f"{cl['data_files']} | {cl['snapshots']} |")
    lines.append(f"\nmedian merge / rebuild: {c.fmt(s['merge_vs_rebuild'])} (per-run ratios: {c.fmt(s.get('merge_vs_rebuild_paired'))}); "
                 f"merge trend {c.fmt(s['merge_slope_s_per_run'])} s per run "
                 f"({c.fmt(s['merge_slope_relative_per_run'])} of the median); last third / first third "
                 f"{c.fmt(s['last_third_vs_first_third'])}; maintenance: {s['maintenance']}")
    return lines
