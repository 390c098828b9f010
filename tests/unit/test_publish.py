"""The publish of write-audit-publish after the base reached `main`: a tombstones fast-forward that fails never
turns a published table into "not published", and a leftover tombstones branch never blocks the table for good.

A stand-in records the SQL (the statements themselves are unit-tested as text in test_gate_sql.py) and refuses
the tombstones' fast-forward as Iceberg does when `main` moved; the e2e layer runs the real thing
(tests/e2e/test_quality_gate.py, tests/e2e/test_faults.py)."""

from __future__ import annotations

from typing import Any

import pytest

from spark_jobs import gate, gate_publish as wap, gate_sql as g, merge
from spark_jobs.gate import CheckResult, GateReport

BASE = ("lake", "shop", "orders")
TOMBS = ("lake", "shop", "orders_tombstones")
BRANCH = "audit_42_20261126070000"
KEY = ("id",)


class Rows:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def collect(self) -> list[tuple[Any, ...]]:
        return self.rows


class Spark:
    """Answers the queries it is given answers for; `refuse` statements raise as Iceberg's refusals do."""

    def __init__(self, answers: dict[str, list[tuple[Any, ...]]] | None = None, refuse: dict[str, str] | None = None) -> None:
        self.answers = answers or {}
        self.refuse = refuse or {}
        self.statements: list[str] = []

    def sql(self, text: str) -> Rows:
        self.statements.append(text)
        if text in self.refuse:
            raise RuntimeError(self.refuse[text])
        return Rows(self.answers.get(text, []))


NOT_ANCESTOR = "Cannot fast-forward: main is not an ancestor of audit_42_20261126070000"


@pytest.fixture
def results(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    written: list[bool] = []
    monkeypatch.setattr(gate, "write_results", lambda spark, catalog, report, published: written.append(published))
    monkeypatch.setattr(merge, "pin_bookkeeping", lambda spark, ident: {})  # its SQL is tested on the real thing
    return written


def _report() -> GateReport:
    return GateReport("shop.orders", BRANCH, "r1", [CheckResult("schema", True, "")])


def test_tombstones_main_moved_after_the_base_publish_merges_them_in(results: list[bool]) -> None:
    spark = Spark(refuse={g.fast_forward_sql(TOMBS, BRANCH): NOT_ANCESTOR})
    published, warning = merge._publish(spark, "lake", _report(), BASE, TOMBS, KEY)  # type: ignore[arg-type]
    assert (published, warning) == (True, "")
    assert results == [True]
    assert spark.statements == [
        g.fast_forward_sql(BASE, BRANCH), g.fast_forward_sql(TOMBS, BRANCH), g.merge_tombstones_sql(TOMBS, BRANCH, KEY),
        g.drop_branch_sql(TOMBS, BRANCH), g.drop_branch_sql(BASE, BRANCH)]


def test_a_failed_tombstones_publish_still_reports_the_base_as_published(results: list[bool]) -> None:
    """The base is on main: the table is published; both branches stay for the next run's repair."""
    spark = Spark(refuse={g.fast_forward_sql(TOMBS, BRANCH): "catalog timeout\nat ..."})
    published, warning = merge._publish(spark, "lake", _report(), BASE, TOMBS, KEY)  # type: ignore[arg-type]
    assert published is True
    assert results == [True]
    assert warning == ("its tombstones are not published yet (RuntimeError: catalog timeout); "
                       "the next merge of the table publishes them first")
    assert spark.statements == [g.fast_forward_sql(BASE, BRANCH), g.fast_forward_sql(TOMBS, BRANCH)]


def test_the_base_main_moved_publishes_nothing(results: list[bool]) -> None:
    spark = Spark(refuse={g.fast_forward_sql(BASE, BRANCH): NOT_ANCESTOR})
    with pytest.raises(wap.MainMoved):
        merge._publish(spark, "lake", _report(), BASE, TOMBS, KEY)  # type: ignore[arg-type]
    assert results == [False]


def _leftover(refuse: dict[str, str]) -> Spark:
    """A run died after the base publish: both branches are left, the base branch's head is on main."""
    from cdc.lake.contract import MERGED_UPTO

    return Spark(answers={
        g.refs_sql(BASE): [("main", 7), (BRANCH, 7)],
        g.refs_sql(TOMBS): [("main", 5), (BRANCH, 6)],
        g.head_summary_sql(BASE, BRANCH, MERGED_UPTO): [("42",)],
        g.in_main_ancestry_sql(BASE, 7): [(1,)],
    }, refuse=refuse)


def test_repair_merges_a_leftover_tombstones_branch_main_moved_past() -> None:
    spark = _leftover({g.fast_forward_sql(TOMBS, BRANCH): NOT_ANCESTOR})
    wap.repair_tombstones(spark, BASE, TOMBS, KEY)  # type: ignore[arg-type]
    assert g.merge_tombstones_sql(TOMBS, BRANCH, KEY) in spark.statements
    assert spark.statements[-3:] == [g.drop_branch_sql(TOMBS, BRANCH), g.drop_branch_sql(BASE, BRANCH),
                                     g.drop_branch_sql(TOMBS, BRANCH)]


def test_repair_fast_forwards_a_leftover_tombstones_branch() -> None:
    spark = _leftover({})
    wap.repair_tombstones(spark, BASE, TOMBS, KEY)  # type: ignore[arg-type]
    assert g.fast_forward_sql(TOMBS, BRANCH) in spark.statements
    assert g.merge_tombstones_sql(TOMBS, BRANCH, KEY) not in spark.statements
    assert g.drop_branch_sql(BASE, BRANCH) in spark.statements


def test_first_line_skips_the_py4j_preamble() -> None:
    java = RuntimeError("An error occurred while calling o68.sql.\n: org.apache.spark.SparkException: [INTERNAL_ERROR] x\n\tat y")
    assert merge.first_line(java) == "org.apache.spark.SparkException: [INTERNAL_ERROR] x"
    assert merge.first_line(RuntimeError("one\ntwo")) == "one"
    assert merge.first_line(RuntimeError("")) == ""
