"""The maintenance job's decisions, as pure functions: which bucket is compacted and why, when a delete-file
rewrite, a manifest rewrite or expiry runs, what a merge in flight blocks, and how a run's outcomes become an
exit code and printed rows."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from cdc.cli import main
from cdc.config import MaintenanceSettings, load_settings
from cdc.errors import ServiceError
from spark_jobs import maintain as mt
from spark_jobs.maintain import BucketStats, Numbers, StepResult, TableOutcome, Thresholds

TH = Thresholds(min_small_files=8, target_file_mb=128, delete_ratio=0.1, snapshot_hours=24, retain_snapshots=10,
                max_manifests=50, orphan_days=3)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_thresholds_follow_the_settings() -> None:
    th = mt.thresholds_from(MaintenanceSettings().model_dump())
    assert th == TH
    assert th.small_bytes == 96 * 1024 * 1024  # Iceberg's bin-packing picks files under 3/4 of the target
    with pytest.raises(ValueError, match="compaction thresholds"):
        Thresholds(min_small_files=1)
    with pytest.raises(ValueError, match="expiry thresholds"):
        Thresholds(retain_snapshots=0)


def test_a_bucket_with_enough_small_files_is_compacted_and_only_it() -> None:
    plan = mt.plan_compaction([BucketStats(0, data_files=9, small_files=8, data_records=90),
                               BucketStats(1, data_files=7, small_files=7, data_records=70),
                               BucketStats(2, data_files=40, small_files=0, data_records=10**6)], TH)
    assert plan == [mt.Compaction(0, deletes=False, reason="8 small data files")]


def test_deletes_over_the_ratio_compact_the_bucket_with_them() -> None:
    plan = mt.plan_compaction([BucketStats(3, data_files=1, data_records=1000, delete_files=1, delete_records=100),
                               BucketStats(4, data_files=1, data_records=1000, delete_files=1, delete_records=99)], TH)
    assert plan == [mt.Compaction(3, deletes=True, reason="deletes on 10% of 1000 rows")]
    both = mt.plan_compaction([BucketStats(None, data_files=10, small_files=10, data_records=10, delete_records=5)], TH)
    assert both == [mt.Compaction(None, deletes=True, reason="10 small data files, deletes on 50% of 10 rows")]


def test_a_bucket_with_only_delete_files_is_not_a_data_compaction() -> None:
    assert mt.plan_compaction([BucketStats(0, delete_files=3, delete_records=30)], TH) == []


def test_compaction_options() -> None:
    assert mt.compaction_options(TH, deletes=False) == {
        "target-file-size-bytes": str(128 * 1024 * 1024), "min-file-size-bytes": str(96 * 1024 * 1024),
        "min-input-files": "2", "remove-dangling-deletes": "true"}
    assert mt.compaction_options(TH, deletes=True)["delete-file-threshold"] == "1"


@pytest.mark.parametrize(("stats", "reason"), [
    (BucketStats(0, delete_files=3, live_targets=3), None),  # one per data file: nothing to merge
    (BucketStats(0, delete_files=1, live_targets=4), None),  # a partition-scoped file covering several
    (BucketStats(0, delete_files=3, live_targets=1), "3 delete files for 1 live data files"),
    (BucketStats(0, delete_files=2, live_targets=0), "2 delete files for 0 live data files"),  # dangling
    (BucketStats(0), None),
])
def test_delete_files_are_rewritten_when_dangling_or_doubled(stats: BucketStats, reason: str | None) -> None:
    assert mt.delete_rewrite_reason(stats) == reason


def test_manifests() -> None:
    assert mt.manifests_reason(50, TH) is None
    assert mt.manifests_reason(51, TH) == "51 data manifests > 50"


def test_a_young_audit_branch_is_a_merge_in_flight() -> None:
    young = "audit_7_20261126113000"  # 30 min before NOW
    old = "audit_6_20261126090000"  # 3 h: evidence of a failed gate, not a merge in flight
    assert mt.merge_in_flight([old, "main", "other"], NOW) is None
    reason = mt.merge_in_flight([old, young], NOW)
    assert reason is not None
    assert reason.startswith(f"merge in flight: audit branch {young} made 30.0 min ago")
    assert "publish fail" in reason
    newer = "audit_8_20261126115930"
    assert f"audit branch {newer} made 30 s ago" in (mt.merge_in_flight([young, newer], NOW) or "")
    # a branch stamped a little ahead of this clock is still in flight
    assert mt.merge_in_flight(["audit_9_20261126120100"], NOW) is not None


def test_expiry_cutoff_keeps_what_the_bookkeeping_reads() -> None:
    assert mt.expiry_cutoff(NOW, TH, []) == (NOW - timedelta(hours=24), "older than 24 h")
    merged = NOW - timedelta(hours=30)
    landed = NOW - timedelta(hours=2)
    cutoff, why = mt.expiry_cutoff(NOW, TH, [("the changelog snapshot the base merged last", merged),
                                             ("the newest landing commit", landed), ("nothing", None)])
    assert cutoff == merged
    assert why == "older than the changelog snapshot the base merged last (2026-11-25 06:00:00 UTC)"
    tiny = Thresholds(snapshot_hours=0.001, retain_snapshots=1)
    assert mt.expiry_cutoff(NOW, tiny, [("the newest landing commit", landed)])[0] == landed


def test_bucket_keys_and_combined_stats() -> None:
    assert mt.bucket_key((5,), bucketed=True) == 5
    assert mt.bucket_key((5,), bucketed=False) is None
    assert mt.bucket_key((5, 1), bucketed=True) is None
    assert mt.bucket_key(None, bucketed=True) is None
    stats = mt.combine([(1, 3, 300, 30, 3), (0, 2, 200, 20, 1), (0, 1, 100, 10, 1)], [(1, 2, 50, 5)], [(1, 1)])
    assert stats == [BucketStats(0, 3, 300, 30, 2), BucketStats(1, 3, 300, 30, 3, 2, 50, 5, 1)]
    assert stats[1].delete_share == pytest.approx(5 / 30)
    assert BucketStats(None).delete_share == 0.0


@pytest.mark.parametrize(("text", "kind"), [
    ("An error occurred while calling o1.sql.\n: org.apache.iceberg.exceptions.CommitFailedException: Cannot commit "
     "lake.shop.a_changelog: metadata location changed", "conflict"),
    ("org.apache.iceberg.exceptions.ValidationException: Cannot commit, found new position delete for replaced data file",
     "changed"),
    ("org.apache.iceberg.exceptions.ValidationException: Cannot find snapshot 5", None),
    ("java.lang.OutOfMemoryError", None),
])
def test_commit_errors(text: str, kind: str | None) -> None:
    assert mt.commit_error(text) == kind


class _Spark:
    """Fails the first `failures` calls with `error`, then answers."""

    def __init__(self, error: str, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def sql(self, _: str) -> _Spark:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(self.error)
        return self

    def collect(self) -> list[int]:
        return [1]


LOST = "org.apache.iceberg.exceptions.CommitFailedException: metadata location changed"


def test_a_lost_commit_runs_again_unless_a_merge_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mt.time, "sleep", lambda _: None)
    spark = _Spark(LOST, failures=2)
    assert mt._call(spark, "CALL x", "t compact") == [1]  # type: ignore[arg-type]
    assert spark.calls == 3
    with pytest.raises(mt.CommitConflict, match="lost to other writers 4 times"):
        mt._call(_Spark(LOST, failures=9), "CALL x", "t compact")  # type: ignore[arg-type]
    blocked = _Spark(LOST, failures=1)
    with pytest.raises(mt.CommitConflict, match="1 times, and now merge in flight"):
        mt._call(blocked, "CALL x", "t compact", lambda: "merge in flight")  # type: ignore[arg-type]
    assert blocked.calls == 1
    changed = _Spark("ValidationException: Cannot commit, found new position delete for replaced data file", failures=1)
    with pytest.raises(mt.CommitConflict, match="another writer changed the files it replaces"):
        mt._call(changed, "CALL x", "t compact")  # type: ignore[arg-type]
    assert changed.calls == 1
    with pytest.raises(RuntimeError, match="boom"):
        mt._call(_Spark("boom", failures=1), "CALL x", "t compact")  # type: ignore[arg-type]
    assert mt.error_exit_code(mt.CommitConflict("x")) == 3


def _step(table: str, action: str, before: Numbers | None = None, after: Numbers | None = None) -> StepResult:
    return StepResult(table, mt.COMPACT, action, "why", before, after, 1.25)


def test_rows_show_before_and_after() -> None:
    a, b = Numbers(12, 1000, 5, 4), Numbers(2, 900, 6, 5)
    outcome = TableOutcome("shop.a", [_step("shop.a_changelog", mt.DONE, a, b), _step("shop.a", mt.WOULD_RUN, a),
                                      _step("shop.a_tombstones", mt.ERROR)])
    assert mt.rows([outcome]) == [
        ("shop.a_changelog", "compact", "done", "why", "12 -> 2", "1000 -> 900", "5 -> 6", "4 -> 5", "1.2"),
        ("shop.a", "compact", "would run", "why", "12", "1000", "5", "4", "1.2"),
        ("shop.a_tombstones", "compact", "error", "why", "", "", "", "", "1.2"),
    ]
    assert len(mt.COLUMNS) == len(mt.rows([outcome])[0])


def test_every_error_is_named_and_the_code_is_the_highest() -> None:
    ok = TableOutcome("shop.ok", [_step("shop.ok", mt.DONE)])
    conflict = TableOutcome("shop.c", errors=[("shop.c_changelog", mt.CommitConflict("shop.c_changelog compact bucket 1: lost"))])
    bug = TableOutcome("shop.b", errors=[("shop.b", RuntimeError("An error occurred while calling o9.sql.\n: java.lang.X: boom"))])
    down = TableOutcome("shop.d", errors=[("shop.d", ServiceError("catalog did not answer"))])
    assert mt.summarize([ok]) == mt.RunSummary(0, [], "")
    s = mt.summarize([conflict, ok, down])
    assert s.code == 3
    assert s.lines == ["error: shop.c_changelog: shop.c_changelog compact bucket 1: lost", "error: shop.d: catalog did not answer"]
    assert s.message == "maintenance failed for 2 of 3 tables: shop.c, shop.d"
    s = mt.summarize([bug, conflict])
    assert s.code == 4
    assert s.lines[0] == "error: shop.b: RuntimeError: java.lang.X: boom"


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, []
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    finally:
        root.handlers = handlers
    return int(exit_info.value.code or 0), capfd.readouterr().err


def test_cdc_maintain_usage_is_checked_before_spark(home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from cdc.lake import catalog as lake

    assert _run(["maintain"], capfd) == (2, "error: name tables as DB.TABLE, or pass --all (not both)\n")
    code, err = _run(["maintain", "--all", "--dry-run"], capfd)
    assert code == 1
    assert err.startswith("error: no tables in the lake to maintain (catalog lake at sqlite:///")
    catalog = lake.open_catalog(load_settings())
    catalog.create_namespace("shop")
    catalog.create_table(("shop", "orders_changelog"), schema=pa.schema([pa.field("id", pa.int64())]))
    code, err = _run(["maintain", "shop.orders", "shop.nothing"], capfd)
    assert code == 2
    assert err.strip().endswith("): shop.nothing")
    assert len(err.strip().splitlines()) == 1
