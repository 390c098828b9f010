"""`cdc merge` and the spark-submit entry point merge every table and then report every table's outcome: the
exit code and the error lines come from one pure function over the outcomes."""

from __future__ import annotations

import pytest

from cdc.errors import ServiceError
from spark_jobs.gate import CheckResult, GateReport
from spark_jobs.gate_publish import MainMoved
from spark_jobs.merge import MergeResult, TableOutcome, summarize


def _result(table: str, *, published: bool, failed: tuple[str, ...] = ()) -> MergeResult:
    report = GateReport(table, "audit_42_20261126070000", "r1",
                        [CheckResult(c, False, "x") for c in failed] or [CheckResult("schema", True, "")])
    return MergeResult(table, 42, 41, 5, 3, 1.0, gate=report, published=published)


OK = TableOutcome("shop.a", result=_result("shop.a", published=True))
UP_TO_DATE = TableOutcome("shop.u", result=MergeResult("shop.u", 1, 1, 0, -1, 0.1, skipped=True))
GATE = TableOutcome("shop.g", result=_result("shop.g", published=False, failed=("conservation", "schema")))
MOVED = TableOutcome("shop.m", error=MainMoved("shop.m: main moved while the audit branch audit_1_20261126070000 was "
                                               "written (another writer committed to it); nothing was published"))
BUG = TableOutcome("shop.b", error=RuntimeError("An error occurred while calling o9.sql.\n: java.lang.X: boom\n\tat y"))
DOWN = TableOutcome("shop.d", error=ServiceError("catalog did not answer"))


def test_all_published_or_up_to_date() -> None:
    s = summarize([OK, UP_TO_DATE])
    assert (s.code, s.lines, s.message) == (0, [], "")
    assert [o.status for o in (OK, UP_TO_DATE)] == ["published", "up to date"]


def test_a_gate_failure_after_every_table_ran() -> None:
    s = summarize([GATE, OK])
    assert s.code == 1
    assert s.lines == ["gate failed: shop.g: conservation, schema (branch audit_42_20261126070000)"]
    assert s.message == ("the quality gate failed for shop.g (conservation, schema; main unchanged, "
                         "evidence branch audit_42_20261126070000)")


def test_errors_name_each_table_with_one_line() -> None:
    s = summarize([MOVED, OK, DOWN])
    assert s.code == 3  # a transient error and a service error: worth running again
    assert s.lines == ["error: shop.m: main moved while the audit branch audit_1_20261126070000 was written "
                       "(another writer committed to it); nothing was published",
                       "error: shop.d: catalog did not answer"]
    assert s.message == "merge failed for 2 of 3 tables: shop.m, shop.d"
    assert MOVED.status == "main moved: not published"
    assert DOWN.status == "error"


def test_an_unexpected_error_is_exit_4() -> None:
    s = summarize([BUG, MOVED])
    assert s.code == 4
    assert s.lines[0] == "error: shop.b: RuntimeError: java.lang.X: boom"


@pytest.mark.parametrize("errors", [[MOVED], [BUG], [BUG, DOWN]])
def test_a_failed_gate_wins_over_errors(errors: list[TableOutcome]) -> None:
    """Exit 1 (not retryable: retrying would replace the evidence branch) whenever a gate failed; every error is
    still named."""
    s = summarize([*errors, GATE])
    assert s.code == 1
    assert len(s.lines) == len(errors) + 1
    assert s.message.startswith("the quality gate failed for shop.g (")
    assert s.message.endswith(f"; merge failed for {len(errors)} of {len(errors) + 1} tables: "
                              f"{', '.join(e.table for e in errors)}")


def test_the_caller_classifies_errors() -> None:
    assert summarize([BUG], classify=lambda exc: 3).code == 3


def test_a_published_table_with_a_warning_is_reported() -> None:
    r = _result("shop.w", published=True)
    r.warning = "its tombstones are not published yet (X: y); the next merge of the table publishes them first"
    s = summarize([TableOutcome("shop.w", result=r)])
    assert s.code == 0
    assert s.warnings == [f"warning: shop.w: published; {r.warning}"]


def test_the_spark_submit_entry_point_merges_every_table_then_reports(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace
    from typing import Any

    from spark_jobs import merge

    session = SimpleNamespace(getOrCreate=lambda: object())
    monkeypatch.setattr(merge, "SparkSession", SimpleNamespace(builder=SimpleNamespace(appName=lambda name: session)))
    merged: list[str] = []

    def merge_table(spark: Any, catalog: str, db: str, table: str, *args: Any) -> MergeResult:
        merged.append(f"{db}.{table}")
        if table == "b":
            raise RuntimeError("boom")
        return _result(f"{db}.{table}", published=table != "g", failed=("schema",) if table == "g" else ())

    monkeypatch.setattr(merge, "merge_table", merge_table)
    assert merge.main(["shop.b", "shop.a"]) == 4
    assert merged == ["shop.b", "shop.a"]
    out, err = capsys.readouterr()
    assert out.splitlines() == ["shop.b: error", "shop.a: published"]
    assert "error: shop.b: RuntimeError: boom" in err.splitlines()
    assert merge.main(["shop.b", "shop.g", "shop.a"]) == 1
    assert merged[2:] == ["shop.b", "shop.g", "shop.a"]
    err = capsys.readouterr().err.splitlines()
    assert "gate failed: shop.g: schema (branch audit_42_20261126070000)" in err
    assert "error: shop.b: RuntimeError: boom" in err


def test_cdc_merge_all_goes_on_after_an_error_and_names_it(
        home: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from typing import Any

    import pyarrow as pa

    import cdc.spark
    import spark_jobs.merge
    from cdc.cli import main
    from cdc.config import load_settings
    from cdc.lake import catalog as lake

    catalog = lake.open_catalog(load_settings())
    catalog.create_namespace("shop")
    for name in ("a", "b", "c"):
        catalog.create_table(("shop", name + lake.CHANGELOG_SUFFIX), schema=pa.schema([pa.field("id", pa.int64())]))
        catalog.create_table(("shop", name), schema=pa.schema([pa.field("id", pa.int64())]))
    merged: list[str] = []

    def merge_table(spark: Any, catalog: str, db: str, table: str, *args: Any) -> MergeResult:
        merged.append(table)
        if table == "a":
            raise MainMoved(f"{db}.{table}: main moved while the audit branch audit_1_20261126070000 was written")
        if table == "b":
            raise ValueError("boom\nsecond line")
        return _result(f"{db}.{table}", published=True)

    monkeypatch.setattr(cdc.spark, "session", lambda s: object())
    monkeypatch.setattr(spark_jobs.merge, "merge_table", merge_table)
    with pytest.raises(SystemExit) as exit_info:
        main(["merge", "--all"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 4
    assert sorted(merged) == ["a", "b", "c"]
    assert "main moved: not published" in out
    assert "  error: shop.a: main moved while the audit branch audit_1_20261126070000 was written" in out
    assert "  error: shop.b: ValueError: boom" in out
    assert err.strip() == "error: merge failed for 2 of 3 tables: shop.a, shop.b"
