"""B6 bucket join: B5's merge-on-read MERGE (uniform 5 % change set) with the storage-partitioned join on vs
off, and into an unbucketed copy of the base.

Variants, interleaved (the order rotates every repetition), each undone afterwards (rollback):
- `spj`: the storage-partitioned-join settings of cdc/spark.py plus
  `spark.sql.sources.v2.bucketing.shuffle.enabled=true` (STACK.md: without it Spark 4.1 still shuffles the base);
- `spj_no_shuffle_flag`: the same without `spark.sql.sources.v2.bucketing.shuffle.enabled` (false): the four
  settings cdc/spark.py had before that one was added;
- `no_spj`: `spark.sql.sources.v2.bucketing.enabled=false` (a plain shuffle join);
- `unbucketed`: the same MERGE into an unpartitioned copy of the base (settings as `spj`).
The session's own settings (cdc/spark.py at the time of the run) are recorded, and which variant they equal.
Measured: the base MERGE statement's time, its shuffle bytes (written and read: the status store's executor
totals before and after), and whether its final plan reaches the base's scan through an Exchange (the SQL
status store's plan of the statement). Target (BENCHMARKS.md): `no_spj` / `spj` >= 1.3x (stretch 1.8x).
"""

# ruff: noqa: S608 - SQL text: identifiers go through spark_jobs.merge_sql.quote, values are numbers or fixed text

from __future__ import annotations

import logging
from typing import Any

from benchmarks import common as c, sparkbench as sb
from spark_jobs import merge_sql as q

log = logging.getLogger("benchmarks.b6")

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"rows": 200_000, "fraction": 0.05, "chunks": 4, "mode": sb.MOR},
    "medium": {"rows": 2_000_000, "fraction": 0.05, "chunks": 8, "mode": sb.MOR},
    "full": {"rows": 20_000_000, "fraction": 0.05, "chunks": 10, "mode": sb.MOR},
}
SPJ_ON = {
    "spark.sql.sources.v2.bucketing.enabled": "true",
    "spark.sql.iceberg.planning.preserve-data-grouping": "true",
    "spark.sql.requireAllClusterKeysForCoPartition": "false",
    "spark.sql.sources.v2.bucketing.pushPartValues.enabled": "true",
    "spark.sql.sources.v2.bucketing.shuffle.enabled": "true",
}
VARIANTS: dict[str, dict[str, str]] = {
    "spj": SPJ_ON,
    "spj_no_shuffle_flag": {**SPJ_ON, "spark.sql.sources.v2.bucketing.shuffle.enabled": "false"},
    "no_spj": {"spark.sql.sources.v2.bucketing.enabled": "false"},
    "unbucketed": SPJ_ON,
}


def _tree_only(plan: str) -> str:
    """Only the tree of a formatted plan (its node details left out)."""
    lines = plan.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("== Physical Plan ==")), 0)
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def _with_confs(spark: Any, confs: dict[str, str]) -> dict[str, str | None]:
    old = sb.spark_confs(spark, list(confs))
    for k, v in confs.items():
        spark.conf.set(k, v)
    return old


def _restore(spark: Any, old: dict[str, str | None]) -> None:
    for k, v in old.items():
        if v is None:
            spark.conf.unset(k)
        else:
            spark.conf.set(k, v)


def run(ctx: c.Context, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    spark = ctx.spark()
    product_confs = sb.spark_confs(spark)
    names = sb.create_tables(ctx, "b6")
    rows = int(params["rows"])
    fill = sb.fill_base(spark, names, rows, int(params["chunks"]))
    changes = sb.land_changes(spark, names, rows, float(params["fraction"]), "uniform", partition=0, seq_base=10 * rows)
    flat = (names.catalog, names.db, "b6_flat")
    props = {**sb.base_properties(), **sb.mode_props(params["mode"])}
    pairs = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(props.items()))
    spark.sql(f"CREATE OR REPLACE TABLE {q.qualified(*flat)} USING iceberg TBLPROPERTIES ({pairs}) "
              f"AS SELECT * FROM {q.qualified(*names.base)}")
    sb.set_props(spark, names.base, sb.mode_props(params["mode"]))
    pristine = {ident: sb.current_snapshot(spark, ident) for ident in (names.base, names.tombstones, flat)}
    info = {"fill_seconds": round(fill, 1), "change_set": vars(changes), "base_shape": sb.table_shape(spark, names.base),
            "flat_shape": sb.table_shape(spark, flat), "product_confs": product_confs}
    log.info("b6: base of %d rows; %s", rows, info["change_set"])
    samples = c.Samples()
    exchange: dict[str, list[bool | None]] = {}
    hashes: dict[str, tuple[int, int]] = {}
    where = f"_kafka_partition = {changes.partition}"
    for rep in range(ctx.reps):
        for variant in c.rotated(list(VARIANTS), rep):
            target = flat if variant == "unbucketed" else names.base
            old = _with_confs(spark, VARIANTS[variant])
            try:
                t = sb.product_merge(spark, names, where, target=target, keep_plans=True)
            finally:
                _restore(spark, old)
            samples.add(variant, "merge_s", t.seconds["merge"])
            samples.add(variant, "total_s", t.total("latest", "tombstones", "merge"))
            samples.add(variant, "shuffle_write_bytes", t.shuffle_write["merge"])
            samples.add(variant, "shuffle_read_bytes", t.shuffle_read["merge"])
            exchange.setdefault(variant, []).append(sb.join_side_exchange(t.plans, ".".join(target)))
            if rep == 0:
                _, hashes[variant] = sb.scan(spark, target)
                info.setdefault("plans", {})[variant] = [_tree_only(p) for p in t.plans if "BatchScan" in p][:1]
            for ident in (target, names.tombstones):
                sb.rollback(spark, ident, pristine[ident])  # type: ignore[arg-type]
                sb.expire_all_but_current(spark, ident)  # type: ignore[arg-type]
            sb.refresh(spark, target, names.tombstones)
        log.info("b6: repetition %d done", rep + 1)
    spj = samples.median("spj", "merge_s")
    summary = {
        v: {"merge_s": samples.median(v, "merge_s"), "total_s": samples.median(v, "total_s"),
            "shuffle_write_bytes": samples.median(v, "shuffle_write_bytes"),
            "shuffle_read_bytes": samples.median(v, "shuffle_read_bytes"),
            "base_side_exchange": sorted({str(x) for x in exchange.get(v, [])}),
            "time_vs_spj": c.ratio(samples.median(v, "merge_s"), spj),
            "time_vs_spj_paired": samples.paired_ratio(v, "spj", "merge_s")}
        for v in VARIANTS
    }
    speedup = samples.paired_ratio("no_spj", "spj", "merge_s")
    notes = []
    if len(set(hashes.values())) > 1:
        notes.append(f"results differ between variants: {hashes}")
    product = {k: v for k, v in product_confs.items() if v is not None}
    info["product_is"] = next((v for v in ("spj", "spj_no_shuffle_flag") if all(
        product.get(k, "false" if k.endswith("shuffle.enabled") else None) == val for k, val in VARIANTS[v].items())), "other")
    results = {"setup": info, "summary": summary, "speedup_no_spj_over_spj": speedup,
               "target_met_1.3x": None if speedup is None else speedup >= 1.3, "samples": samples.summary(),
               "equal_results": len(set(hashes.values())) <= 1}
    return results, notes


def report(results: dict[str, Any]) -> list[str]:
    lines = ["| variant | MERGE s | vs spj (paired) | shuffle written | shuffle read | Exchange on base side |",
             "|---|---|---|---|---|---|"]
    for v, s in results["summary"].items():
        written, read = (None if s[k] is None else s[k] / 1e6 for k in ("shuffle_write_bytes", "shuffle_read_bytes"))
        lines.append(f"| {v} | {c.fmt(s['merge_s'])} | {c.fmt(s.get('time_vs_spj_paired'))} | {c.fmt(written, ' MB')} | "
                     f"{c.fmt(read, ' MB')} | "
                     f"{', '.join(s['base_side_exchange'])} |")
    lines.append(f"\nno_spj / spj (speedup of the storage-partitioned join, median of the per-repetition ratios): "
                 f"{c.fmt(results['speedup_no_spj_over_spj'])}")
    return lines
