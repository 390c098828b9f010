"""B7 small files: an hour of landing at a fixed rate with 10 s vs 60 s commits, then the hourly compaction.

Simulated time: `minutes` x 60 s at `rate` events/s is landed as commits of rate x 10 (or x 60) rows through the
consumer's commit path (`append_once` + `ChangelogSink`) into two changelog tables (bucket(16, id)), the two
interleaved minute by minute. The keys are uniform over `key_space` ids, so a commit touches every bucket.
Then, per repetition and table (interleaved; each undone by a rollback afterwards): a full scan, the compaction
(`spark_jobs.maintain.maintain_table`, i.e. `cdc maintain`, with the settings' thresholds: it compacts a bucket
once it holds `min_small_files` small files; expiry and orphan removal find nothing this young), a full scan
after it. Reported: files per commit (data files each commit added, and how many buckets it touched), commit
time (median, and in the first and last tenth of the hour), files before/after compaction, scan before/after, compaction time.
Targets (BENCHMARKS.md): files per commit <= buckets touched; scan before <= 1.5x after; compaction <= 3 min/hour.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from benchmarks import common as c, sparkbench as sb
from cdc.events.model import KafkaCoordinates
from cdc.ingest.commit import append_once
from cdc.ingest.landing import ChangelogSink
from cdc.lake import catalog as lake
from cdc.lake.writer import plain_arrow
from cdc.retry import RetryPolicy

log = logging.getLogger("benchmarks.b7")

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"rate": 200, "minutes": 60, "intervals": [10, 60], "key_space": 2_000_000},
    "medium": {"rate": 2_000, "minutes": 60, "intervals": [10, 60], "key_space": 20_000_000},
    "full": {"rate": 10_000, "minutes": 60, "intervals": [10, 60], "key_space": 20_000_000},
}


def _compactor(ctx: c.Context) -> tuple[str, Any]:
    try:
        from spark_jobs import maintain
    except ImportError:
        return "rewrite_data_files (no spark_jobs/maintain.py)", None
    thresholds = maintain.thresholds_from(ctx.settings.maintenance.model_dump())
    return f"spark_jobs.maintain.maintain_table({thresholds})", lambda spark, cat, db, t: maintain.maintain_table(
        spark, cat, db, t, thresholds)


def run(ctx: c.Context, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    catalog = lake.open_catalog(ctx.settings)
    rate, minutes = int(params["rate"]), int(params["minutes"])
    intervals = [int(s) for s in params["intervals"]]
    tables = {s: c.table_id(f"b7_{s}s") for s in intervals}
    for t in tables.values():
        lake.ensure_tables(catalog, ctx.settings, t, c.WORKLOAD)
    schema = plain_arrow(catalog.load_table(lake.changelog_name(tables[intervals[0]])).schema().as_arrow())
    rng = np.random.default_rng(5)
    policy = RetryPolicy()
    offsets = dict.fromkeys(intervals, 0)
    commit_s: dict[int, list[float]] = {s: [] for s in intervals}
    started = time.monotonic()
    for minute in range(minutes):
        for s in (intervals if minute % 2 == 0 else list(reversed(intervals))):
            for _ in range(60 // s):
                n = rate * s
                ids = rng.integers(0, int(params["key_space"]), n)
                topic = f"cdc.bn_bench.b7_{s}s"
                arrow = c.arrow_rows(schema, ids, minute, c.change_ops(n, rng), seq_start=offsets[s], topic=topic,
                                     offset_start=offsets[s])
                coords = [KafkaCoordinates(topic, 0, o) for o in range(offsets[s], offsets[s] + n)]
                end = offsets[s] + n
                took, _ = c.seconds(lambda s=s, arrow=arrow, coords=coords, end=end, topic=topic: append_once(
                    ChangelogSink(catalog, tables[s]), arrow, coords, {topic: {0: end}}, policy))
                commit_s[s].append(took)
                offsets[s] = end
        if minute % 10 == 9:
            log.info("b7: %d of %d simulated minutes landed (%.0f s)", minute + 1, minutes, time.monotonic() - started)
    spark = ctx.spark()
    per_commit: dict[int, dict[str, Any]] = {}
    idents = {s: (ctx.settings.catalog.name, t.db, t.table + lake.CHANGELOG_SUFFIX) for s, t in tables.items()}
    for s, ident in idents.items():
        snaps = [summary for _, summary in sb.snapshots(spark, ident) if int(summary.get("added-records", 0)) > 0]
        files = [int(x.get("added-data-files", 0)) for x in snaps]
        buckets = [int(x.get("changed-partition-count", 0)) for x in snaps]
        per_commit[s] = {"commits": len(snaps), "rows_per_commit": rate * s,
                         "files_per_commit": c.stats(files), "buckets_touched_per_commit": c.stats(buckets),
                         "files_le_buckets": all(f <= b for f, b in zip(files, buckets, strict=True)),
                         "commit_s": c.stats(commit_s[s]),
                         # the commit time grows with the table's snapshots (B3): the first and the last tenth of the hour
                         "commit_ms_first_tenth": 1000 * float(np.median(commit_s[s][:max(1, len(commit_s[s]) // 10)])),
                         "commit_ms_last_tenth": 1000 * float(np.median(commit_s[s][-max(1, len(commit_s[s]) // 10):]))}
        for k in ("files_per_commit", "buckets_touched_per_commit", "commit_s"):
            per_commit[s][k].pop("samples", None)
    how, compactor = _compactor(ctx)
    shapes_before = {s: sb.table_shape(spark, ident) for s, ident in idents.items()}
    shapes_after: dict[int, dict[str, int]] = {}
    pristine = {s: sb.current_snapshot(spark, ident) for s, ident in idents.items()}
    samples = c.Samples()
    hashes: dict[str, set[tuple[int, int]]] = {}
    for ident in idents.values():
        sb.scan(spark, ident)  # warm-up (JIT, metadata caches): not recorded
    for rep in range(ctx.reps):
        for s in c.rotated(intervals, rep):
            ident, t = idents[s], tables[s]
            scan_s, h = sb.scan(spark, ident)
            samples.add(f"{s}s", "scan_before_s", scan_s)
            hashes.setdefault(f"{s}s", set()).add(h)
            try:
                if compactor is not None:
                    took, _ = c.seconds(lambda t=t: compactor(spark, ctx.settings.catalog.name, t.db, t.table))
                else:
                    took, _ = c.seconds(lambda ident=ident: sb.compact(spark, ident))
                samples.add(f"{s}s", "compaction_s", took)
                sb.refresh(spark, ident)
                shapes_after[s] = sb.table_shape(spark, ident)
                scan_s, h = sb.scan(spark, ident)
                samples.add(f"{s}s", "scan_after_s", scan_s)
                hashes[f"{s}s"].add(h)
            finally:
                sb.rollback(spark, ident, pristine[s])  # type: ignore[arg-type]
                sb.refresh(spark, ident)
        log.info("b7: repetition %d done", rep + 1)
    for key, seen in hashes.items():
        if len(seen) != 1:
            notes.append(f"{key}: the scans before and after compaction differ: {seen}")
    summary = {}
    for s in intervals:
        k = f"{s}s"
        summary[k] = {**per_commit[s], "files_before": shapes_before[s]["data_files"],
                      "files_after": shapes_after.get(s, {}).get("data_files"),
                      "scan_before_s": samples.median(k, "scan_before_s"), "scan_after_s": samples.median(k, "scan_after_s"),
                      "scan_before_vs_after": c.ratio(samples.median(k, "scan_before_s"), samples.median(k, "scan_after_s")),
                      "compaction_s": samples.median(k, "compaction_s"),
                      "compaction_s_per_hour": None if samples.median(k, "compaction_s") is None
                      else samples.median(k, "compaction_s") * 60 / minutes}  # type: ignore[operator]
    results = {"summary": summary, "compaction": how, "rows_per_table": rate * 60 * minutes, "samples": samples.summary(),
               "shapes_before": shapes_before, "shapes_after": shapes_after}
    return results, notes


def report(results: dict[str, Any]) -> list[str]:
    lines = ["| commits every | commits | files/commit (median) | buckets touched | commit ms (first → last tenth) | "
             "files before → after | scan before s | scan after s | before/after | compaction s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for k, s in results["summary"].items():
        lines.append(f"| {k} | {s['commits']} | {c.fmt(s['files_per_commit'].get('median'))} | "
                     f"{c.fmt(s['buckets_touched_per_commit'].get('median'))} | "
                     f"{c.fmt(s.get('commit_ms_first_tenth'))} → {c.fmt(s.get('commit_ms_last_tenth'))} | "
                     f"{s['files_before']} → {s['files_after']} | {c.fmt(s['scan_before_s'])} | {c.fmt(s['scan_after_s'])} | "
                     f"{c.fmt(s['scan_before_vs_after'])} | {c.fmt(s['compaction_s'])} |")
    return lines
