"""B5 merge vs rebuild: a base bucketed `bucket(16, id)`, a change set of 5 % of its rows (uniform keys and
recent-clustered keys), folded in by the product's MERGE (merge-on-read and copy-on-write) or by rebuilding
the whole table from the same changes (CREATE OR REPLACE ... AS the new state: the daily full reload).

Per repetition and change set, interleaved (the order rotates): MOR merge, COW merge, rebuild. Each merge
is undone afterwards (rollback to the base's snapshot before it, and of the tombstones), so every
repetition starts from the same base. Measured: time (the latest-change view + tombstones MERGE + base MERGE
vs the latest-change view + CREATE OR REPLACE), bytes written (the new snapshots' `added-files-size`: data and
delete files), shuffle bytes, and a full scan (every column, deletes applied) after each: after the MOR merge,
after the COW merge, of the rebuilt table, and after compacting the MOR-merged table (`rewrite_data_files`,
with its time). The scans' row count and hash are compared: merged and rebuilt tables must be equal.
Targets (BENCHMARKS.md): MOR merge <= 0.35x the rebuild's time and <= 0.1x its bytes; later scans <= 1.3x.
"""

from __future__ import annotations

import logging
from typing import Any

from benchmarks import common as c, sparkbench as sb

log = logging.getLogger("benchmarks.b5")

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"rows": 200_000, "fraction": 0.05, "chunks": 4, "distributions": ["uniform", "recent"], "compact": True},
    "medium": {"rows": 2_000_000, "fraction": 0.05, "chunks": 8, "distributions": ["uniform", "recent"], "compact": True},
    "full": {"rows": 20_000_000, "fraction": 0.05, "chunks": 10, "distributions": ["uniform", "recent"], "compact": True},
}
VARIANTS = ("mor", "cow", "rebuild")


def setup(ctx: c.Context, name: str, params: dict[str, Any]) -> tuple[sb.Names, dict[str, sb.ChangeSet], dict[str, Any]]:
    spark = ctx.spark()
    names = sb.create_tables(ctx, name)
    rows = int(params["rows"])
    fill = sb.fill_base(spark, names, rows, int(params["chunks"]))
    changes = {}
    for i, dist in enumerate(params["distributions"]):
        changes[dist] = sb.land_changes(spark, names, rows, float(params["fraction"]), dist, partition=i,
                                        seq_base=10 * rows, version=1 + i)
    info = {"fill_seconds": round(fill, 1), "base_shape": sb.table_shape(spark, names.base),
            "changelog_shape": sb.table_shape(spark, names.changelog),
            "change_sets": {k: vars(v) for k, v in changes.items()}}
    log.info("b5: %s: base of %d rows in %.0f s; changes %s", name, rows, fill, info["change_sets"])
    return names, changes, info


def run(ctx: c.Context, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    spark = ctx.spark()
    names, changes, info = setup(ctx, "b5", params)
    buckets = ctx.settings.ingest.buckets
    rebuilt = (names.catalog, names.db, "b5_rebuilt")
    props = sb.base_properties()
    samples = c.Samples()
    mismatches: list[str] = []
    pristine = {ident: sb.current_snapshot(spark, ident) for ident in (names.base, names.tombstones)}
    confs = sb.spark_confs(spark)
    sb.scan(spark, names.base)  # warm-up (JIT, metadata caches): not recorded
    for rep in range(ctx.reps):
        for dist in c.rotated(list(changes), rep):
            where = f"_kafka_partition = {changes[dist].partition}"
            results: dict[str, tuple[int, int]] = {}
            before_scan, results["before"] = sb.scan(spark, names.base)
            samples.add(dist, "scan_before_s", before_scan)
            for variant in c.rotated(VARIANTS, rep):
                tag = f"{dist}/{variant}"
                if variant == "rebuild":
                    before = [s for s, _ in sb.snapshots(spark, rebuilt)] if sb.exists(spark, rebuilt) else []
                    t = sb.rebuild(spark, names, where, rebuilt, buckets, props)
                    samples.add(tag, "seconds", t.total("latest", "rebuild"))
                    samples.add(tag, "statement_s", t.seconds["rebuild"])
                    samples.add(tag, "bytes_written", sb.written(spark, rebuilt, before)["bytes"])
                    samples.add(tag, "shuffle_write_bytes", t.shuffle_write["rebuild"])
                    scan_s, results[variant] = sb.scan(spark, rebuilt)
                    samples.add(tag, "scan_after_s", scan_s)
                    sb.expire_all_but_current(spark, rebuilt)
                    continue
                mode = sb.MOR if variant == "mor" else sb.COW
                sb.set_props(spark, names.base, sb.mode_props(mode))
                before = [s for s, _ in sb.snapshots(spark, names.base)]
                try:
                    t = sb.product_merge(spark, names, where)
                    w = sb.written(spark, names.base, before)
                    samples.add(tag, "seconds", t.total("latest", "tombstones", "merge"))
                    samples.add(tag, "statement_s", t.seconds["merge"])
                    samples.add(tag, "latest_s", t.seconds["latest"])
                    samples.add(tag, "tombstones_s", t.seconds["tombstones"])
                    samples.add(tag, "bytes_written", w["bytes"])
                    samples.add(tag, "files_written", w["data_files"] + w["delete_files"])
                    samples.add(tag, "delete_files_written", w["delete_files"])
                    samples.add(tag, "bytes_removed", w["removed_bytes"])
                    samples.add(tag, "shuffle_write_bytes", t.shuffle_write["merge"])
                    scan_s, results[variant] = sb.scan(spark, names.base)
                    samples.add(tag, "scan_after_s", scan_s)
                    if variant == "mor" and params.get("compact"):
                        compact_s, _ = c.seconds(lambda: sb.compact(spark, names.base, {"delete-file-threshold": "1"}))
                        samples.add(tag, "compaction_s", compact_s)
                        scan_s, results["compacted"] = sb.scan(spark, names.base)
                        samples.add(tag, "scan_after_compaction_s", scan_s)
                finally:
                    sb.rollback(spark, names.base, pristine[names.base])
                    sb.rollback(spark, names.tombstones, pristine[names.tombstones])
                    sb.set_props(spark, names.base, sb.mode_props(sb.MOR))
                    sb.expire_all_but_current(spark, names.base)
                    sb.expire_all_but_current(spark, names.tombstones)
                    sb.refresh(spark, names.base, names.tombstones)
            # every way of applying the changes must end in the same table
            after = {k: v for k, v in results.items() if k != "before"}
            if len(set(after.values())) != 1:
                mismatches.append(f"rep {rep} {dist}: {after}")
                log.error("b5: results differ: rep %d %s: %s", rep, dist, after)
            log.info("b5: repetition %d, %s done", rep + 1, dist)
    summary: dict[str, Any] = {}
    for dist in changes:
        def m(variant: str, metric: str, dist: str = dist) -> float | None:
            return samples.median(f"{dist}/{variant}", metric)

        summary[dist] = {
            "mor_time_ratio": c.ratio(m("mor", "seconds"), m("rebuild", "seconds")),
            "cow_time_ratio": c.ratio(m("cow", "seconds"), m("rebuild", "seconds")),
            "mor_bytes_ratio": c.ratio(m("mor", "bytes_written"), m("rebuild", "bytes_written")),
            "cow_bytes_ratio": c.ratio(m("cow", "bytes_written"), m("rebuild", "bytes_written")),
            "mor_statement_ratio": c.ratio(m("mor", "statement_s"), m("rebuild", "statement_s")),
            "paired": {  # medians of the per-repetition ratios (the same repetition's noise on both sides)
                "mor_time": samples.paired_ratio(f"{dist}/mor", f"{dist}/rebuild", "seconds"),
                "cow_time": samples.paired_ratio(f"{dist}/cow", f"{dist}/rebuild", "seconds"),
                "mor_statement": samples.paired_ratio(f"{dist}/mor", f"{dist}/rebuild", "statement_s"),
                "mor_bytes": samples.paired_ratio(f"{dist}/mor", f"{dist}/rebuild", "bytes_written"),
                "scan_after_mor_vs_rebuilt": samples.paired_ratio(f"{dist}/mor", f"{dist}/rebuild", "scan_after_s"),
                "scan_after_cow_vs_rebuilt": samples.paired_ratio(f"{dist}/cow", f"{dist}/rebuild", "scan_after_s"),
            },
            "scan_after_mor_vs_rebuilt": c.ratio(m("mor", "scan_after_s"), m("rebuild", "scan_after_s")),
            "scan_after_cow_vs_rebuilt": c.ratio(m("cow", "scan_after_s"), m("rebuild", "scan_after_s")),
            "scan_after_mor_vs_compacted": c.ratio(m("mor", "scan_after_s"), m("mor", "scan_after_compaction_s")),
            "medians": {v: {k: samples.median(f"{dist}/{v}", k) for k in samples.data.get(f"{dist}/{v}", {})} for v in VARIANTS},
            "scan_before_s": samples.median(dist, "scan_before_s"),
        }
        summary[dist]["targets_met"] = {
            "mor_time_le_0.35x": _le(summary[dist]["paired"]["mor_time"], 0.35),
            "mor_bytes_le_0.1x": _le(summary[dist]["mor_bytes_ratio"], 0.1),
            "scan_after_mor_le_1.3x": _le(summary[dist]["paired"]["scan_after_mor_vs_rebuilt"], 1.3),
        }
    notes = [f"results differ: {m}" for m in mismatches]
    results_out = {"setup": info, "summary": summary, "samples": samples.summary(), "spark_confs": confs,
                   "equal_results": not mismatches}
    return results_out, notes


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def report(results: dict[str, Any]) -> list[str]:
    lines = ["| keys | MOR time | COW time | rebuild time | MOR/rebuild time (paired) | MOR statement/CTAS (paired) | "
             "COW/rebuild time (paired) | MOR/rebuild bytes | COW/rebuild bytes | scan after MOR / rebuilt (paired) | "
             "scan after MOR / compacted |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dist, s in results["summary"].items():
        med = s["medians"]
        lines.append(f"| {dist} | {c.fmt(med['mor'].get('seconds'), ' s')} | {c.fmt(med['cow'].get('seconds'), ' s')} | "
                     f"{c.fmt(med['rebuild'].get('seconds'), ' s')} | {c.fmt(s['paired']['mor_time'])} | "
                     f"{c.fmt(s['paired']['mor_statement'])} | {c.fmt(s['paired']['cow_time'])} | {c.fmt(s['mor_bytes_ratio'])} | "
                     f"{c.fmt(s['cow_bytes_ratio'])} | {c.fmt(s['paired']['scan_after_mor_vs_rebuilt'])} | "
                     f"{c.fmt(s['scan_after_mor_vs_compacted'])} |")
    return lines
