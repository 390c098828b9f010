"""`--version`, `-h`, `-v` after the sub-command, and `--output json` on every command that prints a table."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from cdc.cli import main
from cdc.config import load_settings
from cdc.events.model import TableId
from cdc.lake import catalog as lake, state


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.fixture
def orders(home: Path) -> Any:
    catalog = lake.open_catalog(load_settings())
    catalog.create_namespace("shop")
    schema = pa.schema([pa.field("id", pa.int64())])
    catalog.create_table(("shop", "orders" + lake.CHANGELOG_SUFFIX), schema=schema)
    catalog.create_table(("shop", "orders"), schema=schema)
    return catalog


def test_version(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.strip() == "cdc 0.1.0"


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["status", "-h"], ["dlq", "list", "-h"]])
def test_help(home: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, _ = run(args, capsys)
    assert code == 0
    assert out.startswith("Usage: ")


@pytest.mark.parametrize("args", [["status", "-v"], ["status", "--verbose"], ["-v", "status"], ["dlq", "list", "-v"]])
def test_verbose_before_or_after_the_sub_command(home: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = run(args, capsys)
    assert code == 0, err


def test_verbose_after_the_sub_command_shows_the_traceback(home: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_CATALOG__URI", "postgresql+psycopg2://cdc@127.0.0.1:1/iceberg")
    code, _, err = run(["status", "-v"], capsys)
    assert code == 3
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("error: the catalog lake is not reachable")


def test_status_json(orders: Any, capsys: pytest.CaptureFixture[str]) -> None:
    state.record_halt(orders, state.halt_record(TableId("shop", "orders"), "a [bold]reason", "cdc bootstrap shop.orders --rebuild",
                                                None, None))
    code, out, err = run(["status", "--output", "json"], capsys)
    assert code == 1
    doc = json.loads(out)
    assert [t["table"] for t in doc["tables"]] == ["shop.orders"]
    assert doc["tables"][0]["state"] == "halted"
    assert doc["dead_letters"] == 0
    assert doc["halted"][0]["reason"] == "a [bold]reason"
    assert err.strip().splitlines()[-1].startswith("error: 1 table(s) halted")
    code, out2, _ = run(["--output", "json", "status"], capsys)
    assert json.loads(out2) == doc


def test_status_text_keeps_its_content(orders: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status"], capsys)
    assert code == 0
    assert "shop.orders" in out
    assert "streaming" in out
    assert "dead letters: 0" in out


def test_dlq_list_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["dlq", "list", "--output", "json"], capsys)
    assert code == 0
    assert json.loads(out) == {"dead_letters": []}


def test_stack_status_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["stack", "status", "--output", "json"], capsys)
    assert code == 0, err
    services = json.loads(out)["services"]
    assert [s["service"] for s in services] == ["mariadb", "kafka", "connect"]
    assert set(services[0]) == {"service", "state", "pid", "address", "version", "log"}


def _reconciliation(table: str, equal: bool) -> Any:
    from cdc.quality.drill import KeyDiff
    from cdc.quality.reconcile import Reconciliation

    r = Reconciliation(table, "mysql-bin.000003:4242", 0, buckets=1, differing_buckets=0 if equal else 1, source_rows=3,
                       lake_rows=3 if equal else 2, seconds=0.25)
    if not equal:
        r.diffs = [KeyDiff("missing", {"id": "7"}, source={"id": "7", "n": "1"})]
    return r


def test_check_json_and_text(orders: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import cdc.quality.reconcile

    monkeypatch.setattr(cdc.quality.reconcile, "check_tables",
                        lambda s, c, tables, wait: [_reconciliation(str(t), equal=False) for t in tables])
    code, out, err = run(["check", "shop.orders", "--output", "json"], capsys)
    assert code == 1
    doc = json.loads(out)
    assert doc["reconciliation"] == [{"table": "shop.orders", "result": "DIFFERENT", "source position": "mysql-bin.000003:4242",
                                      "source rows": 3, "lake rows": 2, "buckets": 1, "differing buckets": 1, "missing": 1,
                                      "extra": 0, "different": 0, "not compared": 0, "seconds": "0.2"}]
    assert doc["differences"] == [{"table": "shop.orders", "kind": "missing", "key": {"id": "7"}, "columns": [],
                                   "source": {"id": "7", "n": "1"}, "lake": None}]
    assert err.strip().splitlines() == ["error: the lake differs from the source"]
    code, out, _ = run(["check", "--all"], capsys)
    assert code == 1
    assert "source vs lake" in out
    assert "shop.orders: id=7: missing in the lake" in out


def test_merge_json(orders: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import cdc.spark
    import spark_jobs.merge
    from spark_jobs.gate import CheckResult, GateReport

    report = GateReport("shop.orders", "audit_42_20261126070000", "r1", [CheckResult("schema", True, "1 source columns match")],
                        docs="/home/q/gx/uncommitted/data_docs/local_site/index.html")
    monkeypatch.setattr(cdc.spark, "session", lambda s: object())
    monkeypatch.setattr(spark_jobs.merge, "merge_table", lambda spark, catalog, db, table, days, expectations, home, mode=None:
                        spark_jobs.merge.MergeResult(f"{db}.{table}", 42, 41, 5, 3, 1.25, gate=report, published=True))
    code, out, err = run(["merge", "--all", "--output", "json"], capsys)
    assert code == 0, err
    assert json.loads(out) == {
        "merge": [{"table": "shop.orders", "result": "published", "changes": 5, "changelog snapshot": 42, "rows": 3,
                   "evidence branch": "", "seconds": "1.2"}],
        "messages": ["Data Docs: /home/q/gx/uncommitted/data_docs/local_site/index.html"]}


def test_merge_exits_1_naming_each_failed_check_and_the_evidence_branch(
        orders: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import cdc.spark
    import spark_jobs.merge
    from spark_jobs.gate import CheckResult, GateReport

    report = GateReport("shop.orders", "audit_42_20261126070000", "r1", [
        CheckResult("expect_column_values_to_be_between(amount)", False, "1 unexpected of 5, e.g. [-5]"),
        CheckResult("conservation", False, "bucket 3: expected 5, found 6"), CheckResult("schema", True, "")])
    monkeypatch.setattr(cdc.spark, "session", lambda s: object())
    monkeypatch.setattr(spark_jobs.merge, "merge_table", lambda spark, catalog, db, table, days, expectations, home, mode=None:
                        spark_jobs.merge.MergeResult(f"{db}.{table}", 42, 41, 5, 3, 1.25, gate=report, published=False))
    code, out, err = run(["merge", "shop.orders"], capsys)
    assert code == 1, err
    assert "gate failed" in out
    assert "audit_42_20261126070000" in out
    assert "shop.orders: gate check expect_column_values_to_be_between(amount) failed: 1 unexpected of 5, e.g. [-5]" in out
    assert "shop.orders: gate check conservation failed: bucket 3: expected 5, found 6" in out
    assert err.strip() == ("error: the quality gate failed for shop.orders (expect_column_values_to_be_between(amount), "
                           "conservation; main unchanged, evidence branch audit_42_20261126070000)")


def test_bootstrap_json(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import cdc.bootstrap.snapshot

    report = SimpleNamespace(table="shop.orders", rows=1000, chunks=1, seconds=2.0, rows_per_second=500.0, binlog_file="bin.000003",
                             binlog_position=1234, peak_rss_mb=150.4, rebuilt=False)
    monkeypatch.setattr(cdc.bootstrap.snapshot, "bootstrap", lambda *a, **k: report)
    code, out, err = run(["bootstrap", "shop.orders", "--output", "json"], capsys)
    assert code == 0, err
    assert json.loads(out) == {"bootstrap": [{"table": "shop.orders", "rows": 1000, "chunks": 1, "seconds": 2.0,
                                              "rows_per_second": 500.0, "binlog_position": "bin.000003:1234",
                                              "peak_rss_mb": 150.4, "mode": "new"}]}
    code, out, err = run(["bootstrap", "shop.orders"], capsys)
    assert code == 0, err
    assert "bootstrapped shop.orders: 1000 rows in 2.0 s (500 rows/s)" in out


def test_errors_stay_one_line_on_stderr_in_json_mode(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["check", "nodot", "--output", "json"], capsys)
    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == ["error: expected DB.TABLE, got 'nodot'"]
