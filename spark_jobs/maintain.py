"""The maintenance job: compaction, snapshot expiry, manifest rewrite and orphan-file removal for each table's
changelog `<db>.<t>_changelog`, base `<db>.<t>` and tombstones `<db>.<t>_tombstones`.

Runs in-process from `cdc maintain` or on any Spark cluster:
    spark-submit spark_jobs/maintain.py --catalog lake shop.customers shop.orders
Only needs PySpark and an Iceberg catalog configured in the session (spark.sql.catalog.<name>).

Every step is decided by numbers measured in the table's metadata tables (`data_files`, `delete_files`,
`position_deletes`, `snapshots`, `manifests`, `refs`) against the thresholds, and reported with the numbers
before and after it (files, bytes, snapshots, manifests, seconds):
1. compact: bucket by bucket, `rewrite_data_files` where a bucket holds `min_small_files` data files under 3/4 of
   the target size, or where its position deletes cover `delete_ratio` of its rows (those files are rewritten
   with their deletes applied, and the deletes left dangling are dropped);
2. deletes: `rewrite_position_delete_files` in a bucket with more delete files than live data files they point
   at (dangling deletes, several per data file);
3. manifests: `rewrite_manifests` when the current snapshot has more than `max_manifests` data manifests;
4. expire: `expire_snapshots` older than `snapshot_hours`, keeping the newest `retain_snapshots`, every snapshot
   a branch references (Iceberg does), and, for a lake merged before landing numbers, the changelog snapshot its
   base merged last (see `_keep`); a base's
   bookkeeping summaries are pinned as table properties first (`pin_bookkeeping`);
5. orphans: `remove_orphan_files` older than `orphan_days` (listed first; removed only when there are some).

Safe beside a merge: a merge writes audit branches `audit_<snapshot>_<utc>` on the base and its tombstones and
publishes by fast-forwarding `main`; a compaction or manifest commit on their `main` meanwhile would make that
publish fail ("main moved"). So while an audit branch younger than MERGE_WINDOW exists, the base's and the
tombstones' compaction and manifest rewrite are skipped with the reason (checked again before each bucket).
Expiry and orphan removal commit no snapshot on `main` and keep what branches reference, so they still run.
The changelog is compacted while the consumer lands: its commits retry on conflict, and so do ours.

Every named table runs whatever happens to another; each error is named at the end: exit 3 (worth running
again) or 4 (the highest of the tables'), as `cdc merge`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import SparkSession

try:  # as a package (cdc maintain) or as a file (spark-submit spark_jobs/maintain.py)
    from spark_jobs import gate_sql as g, maintain_sql as m, merge_sql as q
except ImportError:  # pragma: no cover - spark-submit puts the file's folder on the path
    import gate_sql as g  # type: ignore[no-redef,import-not-found]
    import maintain_sql as m  # type: ignore[no-redef,import-not-found]
    import merge_sql as q  # type: ignore[no-redef]
from cdc.errors import CdcError, ServiceError, TransientError  # dependency-free: ship it with --py-files
from cdc.lake.contract import BASE_BOOKKEEPING, CHANGELOG_SUFFIX, MERGED_LANDED, MERGED_UPTO, TOMBSTONES_SUFFIX

log = logging.getLogger("spark_jobs.maintain")

Ident = tuple[str, str, str]
MB = 1024 * 1024
MERGE_WINDOW = timedelta(hours=2)  # an audit branch younger than this belongs to a merge that may still publish
COMMIT_ATTEMPTS = 4  # a procedure whose commit lost a race (landing tables do not retry on their own) runs again

COMPACT, DELETES, MANIFESTS, EXPIRE, ORPHANS = "compact", "deletes", "manifests", "expire", "orphans"
DONE, NOT_NEEDED, SKIPPED, WOULD_RUN, ERROR = "done", "not needed", "skipped", "would run", "error"


@dataclass(frozen=True)
class Thresholds:
    """When each step runs (cdc.config.MaintenanceSettings, without the schedule)."""

    min_small_files: int = 8
    target_file_mb: int = 128
    delete_ratio: float = 0.1
    snapshot_hours: float = 24.0
    retain_snapshots: int = 10
    max_manifests: int = 50
    orphan_days: float = 3.0

    def __post_init__(self) -> None:
        if self.min_small_files < 2 or self.target_file_mb < 1 or not 0 < self.delete_ratio <= 1:
            raise ValueError(f"compaction thresholds out of range: {self}")
        if self.snapshot_hours <= 0 or self.retain_snapshots < 1 or self.max_manifests < 1 or self.orphan_days < 1:
            raise ValueError(f"expiry thresholds out of range: {self}")

    @property
    def target_bytes(self) -> int:
        return self.target_file_mb * MB

    @property
    def small_bytes(self) -> int:
        """Under this a data file is small: Iceberg's bin-packing default (3/4 of the target) picks the same files."""
        return self.target_bytes * 3 // 4


@dataclass(frozen=True)
class BucketStats:
    """One bucket's files on `main` (bucket None: the whole table, when it is not partitioned by one bucket)."""

    bucket: int | None
    data_files: int = 0
    data_bytes: int = 0
    data_records: int = 0
    small_files: int = 0
    delete_files: int = 0
    delete_bytes: int = 0
    delete_records: int = 0  # deleted positions
    live_targets: int = 0  # distinct live data files the position deletes point at

    @property
    def delete_share(self) -> float:
        return self.delete_records / self.data_records if self.data_records else 0.0


@dataclass(frozen=True)
class Numbers:
    """A table's size on `main`: live files (data + delete) and bytes, snapshots kept, manifests of the current one."""

    files: int
    bytes: int
    snapshots: int
    manifests: int


@dataclass(frozen=True)
class Compaction:
    bucket: int | None
    deletes: bool  # the bucket's deletes passed the ratio: rewrite the files they hit as well
    reason: str


@dataclass
class StepResult:
    table: str  # the lake table: db.t, db.t_changelog, db.t_tombstones
    step: str
    action: str  # done | not needed | skipped | would run | error
    reason: str
    before: Numbers | None = None
    after: Numbers | None = None
    seconds: float = 0.0


@dataclass
class TableOutcome:
    """One source table's three lake tables; the errors each stopped the rest of one lake table's steps."""

    table: str
    steps: list[StepResult] = field(default_factory=list)
    errors: list[tuple[str, BaseException]] = field(default_factory=list)


class CommitConflict(TransientError):
    """A maintenance commit kept losing to other writers' commits: worth running again."""


class MaintainFailed(CdcError):
    """Some tables' maintenance errored (every table ran; each is named)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---- the decisions (pure) ---------------------------------------------------------------------------------


def plan_compaction(buckets: Iterable[BucketStats], th: Thresholds) -> list[Compaction]:
    """The buckets whose data files need a rewrite: many small files, or deletes over the ratio."""
    plan = []
    for b in buckets:
        if not b.data_files:
            continue
        reasons = []
        if b.small_files >= th.min_small_files:
            reasons.append(f"{b.small_files} small data files")
        deletes = b.delete_records > 0 and b.delete_share >= th.delete_ratio
        if deletes:
            reasons.append(f"deletes on {b.delete_share:.0%} of {b.data_records} rows")
        if reasons:
            plan.append(Compaction(b.bucket, deletes, ", ".join(reasons)))
    return plan


def compaction_options(th: Thresholds, deletes: bool) -> dict[str, str]:
    """Bin-pack the bucket's small files (at least two make a group); with `deletes`, also every file a delete
    hits; drop the delete files the rewrite leaves pointing at nothing."""
    options = {
        "target-file-size-bytes": str(th.target_bytes),
        "min-file-size-bytes": str(th.small_bytes),
        "min-input-files": "2",
        "remove-dangling-deletes": "true",
    }
    if deletes:
        options["delete-file-threshold"] = "1"
    return options


def delete_rewrite_reason(b: BucketStats) -> str | None:
    """Why a bucket's position-delete files need a rewrite: more of them than live data files they point at
    (dangling ones, or several for one data file); None when they are one per live data file or fewer."""
    if b.delete_files > b.live_targets:
        return f"{b.delete_files} delete files for {b.live_targets} live data files"
    return None


def manifests_reason(data_manifests: int, th: Thresholds) -> str | None:
    if data_manifests > th.max_manifests:
        return f"{data_manifests} data manifests > {th.max_manifests}"
    return None


def merge_in_flight(branches: Iterable[str], now: datetime) -> str | None:
    """Why a commit on the base's or the tombstones' `main` must wait: an audit branch young enough to be a merge
    that has not published yet (its fast-forward would be refused). None when there is none."""
    young = sorted(((at, name) for name in branches
                    if (at := m.audit_branch_time(name)) is not None and now - at < MERGE_WINDOW), reverse=True)
    if not young:
        return None
    at, name = young[0]
    age = max((now - at).total_seconds(), 0.0)
    return (f"merge in flight: audit branch {name} made {_human(age)} ago (a commit to main now would make its "
            "publish fail)")


def expiry_cutoff(now: datetime, th: Thresholds, keep: Sequence[tuple[str, datetime | None]]) -> tuple[datetime, str]:
    """Expire snapshots older than this: `snapshot_hours` ago, or older still when a snapshot the bookkeeping reads
    (`keep`: what, its commit time) is older than that. Returns the cutoff and why it is there."""
    cutoff, why = now - timedelta(hours=th.snapshot_hours), f"older than {th.snapshot_hours:g} h"
    for label, at in keep:
        if at is not None and at < cutoff:
            cutoff, why = at, f"older than {label} ({at:%Y-%m-%d %H:%M:%S} UTC)"
    return cutoff, why


def bucket_key(partition: Any, bucketed: bool) -> int | None:
    """The bucket of a metadata table's `partition` struct of a `bucket(N, column)` table (None otherwise)."""
    if not bucketed or partition is None or len(partition) != 1 or partition[0] is None:
        return None
    return int(partition[0])


def combine(data: Iterable[tuple[int | None, int, int, int, int]], deletes: Iterable[tuple[int | None, int, int, int]],
            targets: Iterable[tuple[int | None, int]]) -> list[BucketStats]:
    """Per bucket: (bucket, files, bytes, records, small) data rows, (bucket, files, bytes, records) position-delete
    rows, (bucket, live targets) rows -> one BucketStats each, sorted (None first)."""
    acc: dict[int | None, dict[str, int]] = {}

    def add(bucket: int | None, **values: int) -> None:
        into = acc.setdefault(bucket, {})
        for k, v in values.items():
            into[k] = into.get(k, 0) + int(v)

    for b, files, size, records, small in data:
        add(b, data_files=files, data_bytes=size, data_records=records, small_files=small)
    for b, files, size, records in deletes:
        add(b, delete_files=files, delete_bytes=size, delete_records=records)
    for b, live in targets:
        add(b, live_targets=live)
    return [BucketStats(b, **acc[b]) for b in sorted(acc, key=lambda x: (x is not None, x or 0))]


def error_exit_code(exc: BaseException) -> int:
    """3 for an error worth running again (a service away, a commit race lost), else 4."""
    return 3 if isinstance(exc, (TransientError, ServiceError, OSError)) else 4


@dataclass(frozen=True)
class RunSummary:
    code: int  # 0, else 3 or 4 (the highest of the errored tables')
    lines: list[str]  # one per error
    message: str  # the run's one-line error ("" when code is 0)


def summarize(outcomes: Sequence[TableOutcome], classify: Callable[[BaseException], int] = error_exit_code) -> RunSummary:
    """Pure: the exit code and the lines to report once every table ran."""
    errors = [(o.table, part, e) for o in outcomes for part, e in o.errors]
    lines = [f"error: {part}: {_one_line(e)}" for _, part, e in errors]
    failed = sorted({t for t, _, _ in errors})
    message = f"maintenance failed for {len(failed)} of {len(outcomes)} tables: {', '.join(failed)}" if failed else ""
    return RunSummary(max((classify(e) for _, _, e in errors), default=0), lines, message)


def rows(outcomes: Sequence[TableOutcome]) -> list[tuple[str, str, str, str, str, str, str, str, str]]:
    """One printable row per step: table, step, result, why, files, bytes, snapshots, manifests, seconds."""
    def change(get: Callable[[Numbers], int], s: StepResult) -> str:
        if s.before is None:
            return ""
        if s.after is None:
            return str(get(s.before))
        return f"{get(s.before)} -> {get(s.after)}"

    return [(s.table, s.step, s.action, s.reason, change(lambda n: n.files, s), change(lambda n: n.bytes, s),
             change(lambda n: n.snapshots, s), change(lambda n: n.manifests, s), f"{s.seconds:.1f}")
            for o in outcomes for s in o.steps]


COLUMNS = ["table", "step", "result", "why", "files", "bytes", "snapshots", "manifests", "seconds"]


def _human(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _one_line(exc: BaseException) -> str:
    text = first_line(exc)
    return text if isinstance(exc, CdcError) else f"{type(exc).__name__}: {text}"


def first_line(exc: BaseException) -> str:
    """The first line that says something (py4j's "An error occurred while calling oNN.sql." comes first)."""
    lines = [line.strip().removeprefix(": ") for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("An error occurred while calling"):
        return lines[1]
    return lines[0] if lines else type(exc).__name__


# ---- measuring and running (Spark) ------------------------------------------------------------------------


def _exists(spark: SparkSession, ident: Ident) -> bool:
    """Whether the table exists (refreshed: other processes commit to it); asked of the catalog, so a missing
    table logs no analysis error."""
    if not spark.catalog.tableExists(q.qualified(*ident)):
        return False
    spark.sql(f"REFRESH TABLE {q.qualified(*ident)}")
    return True


def _partitioning(spark: SparkSession, ident: Ident) -> tuple[bool, tuple[int, str] | None]:
    """(partitioned at all, (N, column) when partitioned by `bucket(N, column)` alone: compacted bucket by bucket)."""
    parts = [str(r[1]) for r in spark.sql(f"DESCRIBE TABLE {q.qualified(*ident)}").collect() if str(r[0]).startswith("Part ")]
    return bool(parts), g.bucket_of(parts) if len(parts) == 1 else None


def measure(spark: SparkSession, ident: Ident, th: Thresholds, partitioning: tuple[bool, tuple[int, str] | None]
            ) -> tuple[list[BucketStats], Numbers]:
    """Per bucket stats and the table's numbers, from the metadata tables of `main`."""
    partitioned, spec = partitioning
    bucketed = spec is not None
    data = [(bucket_key(r[0], bucketed), int(r[1]), int(r[2]), int(r[3]), int(r[4]))
            for r in spark.sql(m.data_files_sql(ident, th.small_bytes, partitioned)).collect()]
    deletes = [(bucket_key(r[0], bucketed), int(r[1]), int(r[2]), int(r[3]))
               for r in spark.sql(m.delete_files_sql(ident, partitioned)).collect()]
    targets = [(bucket_key(r[0], bucketed), int(r[1]))
               for r in spark.sql(m.delete_targets_sql(ident, partitioned)).collect()] if deletes else []
    buckets = combine(data, deletes, targets)
    snapshots = int(spark.sql(m.snapshots_sql(ident)).collect()[0][0])
    manifests = spark.sql(m.data_manifests_sql(ident)).collect()[0]
    numbers = Numbers(sum(b.data_files + b.delete_files for b in buckets), sum(b.data_bytes + b.delete_bytes for b in buckets),
                      snapshots, int(manifests[0]) + int(manifests[1]))
    return buckets, numbers


def _data_manifests(spark: SparkSession, ident: Ident) -> int:
    return int(spark.sql(m.data_manifests_sql(ident)).collect()[0][0])


def commit_error(text: str) -> str | None:
    """Pure: how a failed procedure lost to another writer, from its error text: "conflict" (the commit lost a race:
    run it again on fresh metadata), "changed" (another writer changed the files it replaces, e.g. a merge published
    deletes against them: not now, the next run plans again), or None (anything else)."""
    if "CommitFailedException" in text:
        return "conflict"
    if "ValidationException" in text and ("Cannot commit" in text or "found new" in text):
        return "changed"
    return None


def _call(spark: SparkSession, sql: str, what: str, blocked: Callable[[], str | None] = lambda: None) -> list[Any]:
    """Run a procedure; one whose commit lost a race with another writer runs again (fresh metadata), unless
    `blocked` gives a reason not to any more (a merge started meanwhile)."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return spark.sql(sql).collect()
        except Exception as exc:
            kind = commit_error(str(exc))
            if kind is None:
                raise
            if kind == "changed":
                raise CommitConflict(f"{what}: another writer changed the files it replaces ({first_line(exc)}); "
                                     "nothing was committed, run maintenance again") from exc
            reason = blocked()
            if attempt == COMMIT_ATTEMPTS or reason:
                raise CommitConflict(f"{what}: the commit lost to other writers {attempt} times"
                                     + (f", and now {reason}" if reason else "") + f": {first_line(exc)}") from exc
            log.warning("%s: the commit lost a race with another writer (%s); running it again", what, first_line(exc))
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _audit_branches(spark: SparkSession, tables: Sequence[Ident]) -> list[str]:
    found = []
    for t in tables:
        if spark.catalog.tableExists(q.qualified(*t)):
            found += [str(r[0]) for r in spark.sql(g.refs_sql(t)).collect() if str(r[0]).startswith(g.AUDIT_PREFIX)]
    return found


def _millis_time(spark: SparkSession, sql: str) -> datetime | None:
    found = spark.sql(sql).collect()
    return None if not found or found[0][0] is None else datetime.fromtimestamp(int(found[0][0]) / 1000, UTC)


def _keep(spark: SparkSession, role: str, ident: Ident, base: Ident) -> list[tuple[str, datetime | None]]:
    """The snapshots expiry must keep (and everything after them) for the bookkeeping. None, where the base records a
    landing number: a merge takes the changelog rows numbered above it (rows keep their number through compaction),
    the landing's offsets are table properties as well, and the base's own values are pinned as properties before
    its expiry. A base merged before landing numbers existed takes its next slice from the changelog snapshot it
    merged last: that one is kept until a merge records a landing number."""
    if role != "changelog" or not _exists(spark, base):
        return []
    if spark.sql(q.merged_upto_sql(base, MERGED_LANDED)).collect() or MERGED_LANDED in _properties(spark, base):
        return []
    merged = spark.sql(q.merged_upto_sql(base, MERGED_UPTO)).collect()
    at = _millis_time(spark, m.snapshot_time_sql(ident, int(merged[0][0]))) if merged and merged[0][0] else None
    return [("the changelog snapshot the base merged last (merged before landing numbers)", at)]


def _properties(spark: SparkSession, ident: Ident) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in spark.sql(f"SHOW TBLPROPERTIES {q.qualified(*ident)}").collect()}


@dataclass
class _Part:
    """One lake table being maintained."""

    spark: SparkSession
    ident: Ident
    role: str  # changelog | base | tombstones
    th: Thresholds
    dry_run: bool
    now: datetime
    guarded: tuple[Ident, ...]  # tables whose audit branches stop compaction here (none for the changelog)
    partitioning: tuple[bool, tuple[int, str] | None] = (False, None)
    out: list[StepResult] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.ident[1]}.{self.ident[2]}"

    def where(self, bucket: int | None) -> str | None:
        spec = self.partitioning[1]
        if bucket is None or spec is None:
            return None
        return m.bucket_predicate(self.ident, spec[0], spec[1], bucket)

    def in_flight(self) -> str | None:
        return merge_in_flight(_audit_branches(self.spark, self.guarded), self.now) if self.guarded else None

    def report(self, step: str, action: str, reason: str, before: Numbers | None, after: Numbers | None = None,
               started: float | None = None) -> None:
        r = StepResult(self.name, step, action, reason, before, after, time.monotonic() - started if started else 0.0)
        self.out.append(r)
        numbers = "" if before is None else (
            f" (files {before.files}, bytes {before.bytes}, snapshots {before.snapshots}, manifests {before.manifests}"
            + ("" if after is None else f" -> files {after.files}, bytes {after.bytes}, snapshots {after.snapshots}, "
               f"manifests {after.manifests}") + f", {r.seconds:.1f} s)")
        log.info("maintain %s: %s: %s: %s%s", self.name, step, action, reason, numbers)


def _buckets(plan: Sequence[Compaction | BucketStats]) -> str:
    named = [str(c.bucket) for c in plan if c.bucket is not None]
    return f"buckets {', '.join(named)}" if named else "the table"


def _compact(p: _Part, buckets: list[BucketStats], before: Numbers) -> tuple[list[BucketStats], Numbers, set[int | None]]:
    plan = plan_compaction(buckets, p.th)
    if not plan:
        most_small = max((b.small_files for b in buckets), default=0)
        most_deleted = max((b.delete_share for b in buckets), default=0.0)
        p.report(COMPACT, NOT_NEEDED, f"no bucket has {p.th.min_small_files} small data files (most: {most_small}) or "
                 f"deletes on {p.th.delete_ratio:.0%} of its rows (most: {most_deleted:.0%})", before)
        return buckets, before, set()
    why = "; ".join(f"bucket {c.bucket}: {c.reason}" if c.bucket is not None else c.reason for c in plan)
    blocked = p.in_flight()
    if blocked:
        p.report(COMPACT, SKIPPED, f"{blocked}; needed: {why}", before)
        return buckets, before, set()
    if p.dry_run:
        p.report(COMPACT, WOULD_RUN, f"rewrite_data_files in {_buckets(plan)}: {why}", before)
        return buckets, before, {c.bucket for c in plan}
    started = time.monotonic()
    done: list[Compaction] = []
    rewritten = added = 0
    # one commit for every bucket that needs the same options (a commit per bucket made a snapshot per bucket, more
    # than the same run's expiry can take: they are younger than its cutoff)
    for deletes in sorted({c.deletes for c in plan}):
        group = [c for c in plan if c.deletes == deletes]
        if done and (blocked := p.in_flight()):  # a merge started meanwhile: leave its main alone
            break
        wheres = [p.where(c.bucket) for c in group]
        where = None if any(w is None for w in wheres) else " OR ".join(f"({w})" for w in wheres)
        result = _call(p.spark, m.rewrite_data_files_sql(p.ident, where, compaction_options(p.th, deletes)),
                       f"{p.name} compact {_buckets(group)}", p.in_flight)
        if result:
            rewritten, added = rewritten + int(result[0][0]), added + int(result[0][1])
        done.extend(group)
    buckets, after = measure(p.spark, p.ident, p.th, p.partitioning)
    reason = f"rewrote {rewritten} data files into {added} in {_buckets(done)}: {why}"
    if blocked:
        reason += f"; stopped before the other buckets: {blocked}"
    p.report(COMPACT, DONE, reason, before, after, started)
    return buckets, after, {c.bucket for c in done}


def _rewrite_deletes(p: _Part, buckets: list[BucketStats], before: Numbers,
                     compacted: set[int | None]) -> tuple[list[BucketStats], Numbers]:
    # in a dry run the buckets planned for compaction would lose their dangling deletes there
    plan = [(b, r) for b in buckets if (r := delete_rewrite_reason(b)) and not (p.dry_run and b.bucket in compacted)]
    if not plan:
        total = sum(b.delete_files for b in buckets)
        p.report(DELETES, NOT_NEEDED, f"{total} position-delete files, none dangling or doubled", before)
        return buckets, before
    why = "; ".join(f"bucket {b.bucket}: {r}" if b.bucket is not None else r for b, r in plan)
    blocked = p.in_flight()
    if blocked:
        p.report(DELETES, SKIPPED, f"{blocked}; needed: {why}", before)
        return buckets, before
    if p.dry_run:
        p.report(DELETES, WOULD_RUN, f"rewrite_position_delete_files in {_buckets([b for b, _ in plan])}: {why}", before)
        return buckets, before
    started = time.monotonic()
    removed = added = 0
    for b, _ in plan:
        result = _call(p.spark, m.rewrite_position_deletes_sql(p.ident, p.where(b.bucket)), f"{p.name} deletes bucket {b.bucket}",
                       p.in_flight)
        if result:
            removed, added = removed + int(result[0][0]), added + int(result[0][1])
    buckets, after = measure(p.spark, p.ident, p.th, p.partitioning)
    p.report(DELETES, DONE, f"rewrote {removed} delete files into {added}: {why}", before, after, started)
    return buckets, after


def _rewrite_manifests(p: _Part, before: Numbers) -> Numbers:
    reason = manifests_reason(_data_manifests(p.spark, p.ident), p.th)
    if reason is None:
        p.report(MANIFESTS, NOT_NEEDED, f"at most {p.th.max_manifests} data manifests", before)
        return before
    blocked = p.in_flight()
    if blocked:
        p.report(MANIFESTS, SKIPPED, f"{blocked}; needed: {reason}", before)
        return before
    if p.dry_run:
        p.report(MANIFESTS, WOULD_RUN, f"rewrite_manifests: {reason}", before)
        return before
    started = time.monotonic()
    _call(p.spark, m.rewrite_manifests_sql(p.ident), f"{p.name} rewrite manifests", p.in_flight)
    _, after = measure(p.spark, p.ident, p.th, p.partitioning)
    p.report(MANIFESTS, DONE, f"rewrote the manifests: {reason}", before, after, started)
    return after


def pin_bookkeeping(spark: SparkSession, base: Ident) -> dict[str, str]:
    """Copy the base's newest summary values of its bookkeeping (cdc.lake.contract.BASE_BOOKKEEPING) into table
    properties, which neither expiry nor compaction touch (one metadata commit, none when pinned already; it moves
    no snapshot, so a merge in flight still publishes)."""
    props = {str(r[0]): str(r[1]) for r in spark.sql(f"SHOW TBLPROPERTIES {q.qualified(*base)}").collect()}
    todo = {}
    for key in BASE_BOOKKEEPING:
        found = spark.sql(q.merged_upto_sql(base, key)).collect()
        if found and found[0][0] is not None and props.get(key) != str(found[0][0]):
            todo[key] = str(found[0][0])
    if todo:
        _call(spark, m.set_properties_sql(base, todo), f"{base[1]}.{base[2]} pin the bookkeeping")
    return todo


def _expire(p: _Part, before: Numbers, base: Ident) -> Numbers:
    cutoff, why = expiry_cutoff(p.now, p.th, _keep(p.spark, p.role, p.ident, base))
    n = int(p.spark.sql(m.expirable_sql(p.ident, cutoff, p.th.retain_snapshots)).collect()[0][0])
    if not n:
        p.report(EXPIRE, NOT_NEEDED, f"no snapshot {why} beyond the newest {p.th.retain_snapshots} and branch heads", before)
        return before
    if p.dry_run:
        p.report(EXPIRE, WOULD_RUN, f"expire_snapshots: up to {n} snapshots {why}", before)
        return before
    started = time.monotonic()
    pinned = pin_bookkeeping(p.spark, p.ident) if p.role == "base" else {}
    if pinned:
        why += f" (bookkeeping pinned as table properties first: {', '.join(sorted(pinned))})"
    result = _call(p.spark, m.expire_snapshots_sql(p.ident, cutoff, p.th.retain_snapshots), f"{p.name} expire snapshots")
    _, after = measure(p.spark, p.ident, p.th, p.partitioning)
    deleted = result[0].asDict() if result else {}
    files = ", ".join(f"{v} {k.removeprefix('deleted_').removesuffix('_count').replace('_', ' ')}"
                      for k, v in deleted.items() if v)
    p.report(EXPIRE, DONE, f"expired {before.snapshots - after.snapshots} snapshots {why}" + (f"; deleted {files}" if files else ""),
             before, after, started)
    return after


def _remove_orphans(p: _Part, before: Numbers) -> None:
    older = p.now - timedelta(days=p.th.orphan_days)
    started = time.monotonic()
    found = [str(r[0]) for r in p.spark.sql(m.remove_orphans_sql(p.ident, older, dry_run=True)).collect()]
    why = f"files no snapshot references, older than {p.th.orphan_days:g} days"
    if not found:
        p.report(ORPHANS, NOT_NEEDED, f"no {why}", before)
        return
    if p.dry_run:
        p.report(ORPHANS, WOULD_RUN, f"remove_orphan_files: {len(found)} {why}, e.g. {found[0]}", before)
        return
    removed = p.spark.sql(m.remove_orphans_sql(p.ident, older, dry_run=False)).collect()
    _, after = measure(p.spark, p.ident, p.th, p.partitioning)
    p.report(ORPHANS, DONE, f"removed {len(removed)} {why}, e.g. {found[0]}", before, after, started)


def _maintain_part(p: _Part, base: Ident) -> None:
    p.partitioning = _partitioning(p.spark, p.ident)
    buckets, numbers = measure(p.spark, p.ident, p.th, p.partitioning)
    buckets, numbers, compacted = _compact(p, buckets, numbers)
    buckets, numbers = _rewrite_deletes(p, buckets, numbers, compacted)
    numbers = _rewrite_manifests(p, numbers)
    numbers = _expire(p, numbers, base)
    _remove_orphans(p, numbers)


def maintain_table(spark: SparkSession, catalog: str, db: str, table: str, th: Thresholds, dry_run: bool = False,
                   now: datetime | None = None) -> TableOutcome:
    """Maintain the changelog, the base and the tombstones of one table; an error stops only the rest of its own
    lake table's steps (it is recorded in the outcome, the other lake tables still run)."""
    now = now or datetime.now(UTC)
    base = (catalog, db, table)
    changelog = (catalog, db, table + CHANGELOG_SUFFIX)
    tombstones = (catalog, db, table + TOMBSTONES_SUFFIX)
    outcome = TableOutcome(f"{db}.{table}")
    for ident, role in ((changelog, "changelog"), (base, "base"), (tombstones, "tombstones")):
        guarded = () if role == "changelog" else (base, tombstones)
        part = _Part(spark, ident, role, th, dry_run, now, guarded, out=outcome.steps)
        try:
            if not _exists(spark, ident):
                part.report("-", NOT_NEEDED, "no such table", None)
                continue
            _maintain_part(part, base)
        except Exception as exc:  # noqa: BLE001 - recorded; the other lake tables and tables go on
            log.error("maintain %s failed: %s", part.name, first_line(exc),  # noqa: TRY400 - the trace only when verbose
                      exc_info=log.isEnabledFor(logging.DEBUG))
            part.report("-", ERROR, _one_line(exc), None)
            outcome.errors.append((part.name, exc))
    return outcome


def thresholds_from(values: Mapping[str, Any]) -> Thresholds:
    """Thresholds from a settings mapping (extra keys such as the schedule's `interval` are ignored)."""
    names = Thresholds.__dataclass_fields__
    return Thresholds(**{k: v for k, v in values.items() if k in names})


def main(argv: list[str] | None = None) -> int:
    defaults = Thresholds()
    parser = argparse.ArgumentParser(description="Compact, expire and clean cdc changelog, base and tombstones tables.")
    parser.add_argument("--catalog", default="lake", help="Iceberg catalog name configured in the session")
    parser.add_argument("--dry-run", action="store_true", help="measure and print what would run; change nothing")
    parser.add_argument("--min-small-files", type=int, default=defaults.min_small_files)
    parser.add_argument("--target-file-mb", type=int, default=defaults.target_file_mb)
    parser.add_argument("--delete-ratio", type=float, default=defaults.delete_ratio)
    parser.add_argument("--snapshot-hours", type=float, default=defaults.snapshot_hours)
    parser.add_argument("--retain-snapshots", type=int, default=defaults.retain_snapshots)
    parser.add_argument("--max-manifests", type=int, default=defaults.max_manifests)
    parser.add_argument("--orphan-days", type=float, default=defaults.orphan_days)
    parser.add_argument("tables", nargs="+", help="DB.TABLE names")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    th = Thresholds(args.min_small_files, args.target_file_mb, args.delete_ratio, args.snapshot_hours,
                    args.retain_snapshots, args.max_manifests, args.orphan_days)
    spark = SparkSession.builder.appName("cdc-maintain").getOrCreate()
    outcomes = []
    for name in args.tables:  # every table runs; the errors are reported and the exit code taken after
        db, _, table = name.partition(".")
        outcomes.append(maintain_table(spark, args.catalog, db, table, th, args.dry_run))
    for row in rows(outcomes):
        print(" | ".join(row))
    summary = summarize(outcomes)
    for line in summary.lines:
        print(line, file=sys.stderr)
    return summary.code


if __name__ == "__main__":
    sys.exit(main())
