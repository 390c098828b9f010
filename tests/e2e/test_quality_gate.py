"""Write-audit-publish with the quality gate (issue 11, items 1-2), on the real stack: a declared expectation the
binlog violates stops the publish (main unchanged, the audit branch kept, Data Docs and the results table name the
failed expectation, `cdc merge` exits 1); fixing the data at the source makes the next merge publish. Built-in
checks catch rows written into the base behind the merge's back (a duplicate key, a key with a newer tombstone)."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from cdc.cli import main
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.quality.gate_results import last_gate
from cdc.verify import compare_table
from tests.e2e.faults_support import create_tables, execute, forget, wait_captured

pytestmark = pytest.mark.e2e

BETWEEN = "expect_column_values_to_be_between(amount)"


def _cdc(args: list[str], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> tuple[int, str]:
    """`cdc ARGS` in-process (it reuses the test's Spark session); exit code and stdout + stderr."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, []
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    finally:
        root.handlers = handlers
        for k in env:
            monkeypatch.delenv(k)
    captured = capfd.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


def _land(settings: Settings, table: TableId) -> None:
    wait_captured(settings, table.db, (table.table,))
    Ingestor(settings, lake.open_catalog(settings)).drain(tables=[table])


def _main(settings: Settings, table: TableId) -> int:
    snapshot = lake.open_catalog(settings).load_table(lake.base_name(table)).current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id


def _branches(spark: Any, settings: Settings, table: TableId) -> list[str]:
    rows = spark.sql(f"SELECT name FROM {settings.catalog.name}.`{table.db}`.`{table.table}`.refs").collect()
    return sorted(str(r[0]) for r in rows if r[0] != "main")


def test_a_declared_expectation_stops_the_publish_until_the_source_is_fixed(
        stack: Settings, spark: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"wap_{uuid.uuid4().hex[:8]}"
    table, other = TableId(db, "a"), TableId(db, "b")
    env = {"CDC_TABLES": json.dumps({str(table): {"expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0}}]}})}
    create_tables(stack, db, ("a", "b"))
    try:
        execute(stack, *(f"INSERT INTO `{db}`.{t} VALUES ({i}, {i}, {i}.5, 'x')" for i in range(1, 6) for t in "ab"))
        _land(stack, table)
        _land(stack, other)
        code, out = _cdc(["merge", str(table), str(other)], capfd, monkeypatch, env)
        assert code == 0, out
        assert "published" in out
        before, other_before = _main(stack, table), _main(stack, other)

        execute(stack, f"INSERT INTO `{db}`.a VALUES (6, 6, -5, 'negative')", f"DELETE FROM `{db}`.a WHERE id = 2",
                f"INSERT INTO `{db}`.b VALUES (6, 6, -5, 'no expectation here')")
        _land(stack, table)
        _land(stack, other)
        code, out = _cdc(["merge", str(table), str(other)], capfd, monkeypatch, env)
        print(out)
        assert code == 1, out
        assert "gate failed" in out
        assert f"gate check {BETWEEN} failed: 1 unexpected of 5" in out
        assert _main(stack, table) == before  # main untouched
        assert _main(stack, other) != other_before  # the other table was still merged and published
        assert compare_table(stack, lake.open_catalog(stack), other).equal
        branches = _branches(spark, stack, table)
        assert len(branches) == 1, branches
        assert branches[0].startswith("audit_")
        assert branches[0] in out
        tombstone_branches = _branches(spark, stack, TableId(db, "a_tombstones"))
        assert tombstone_branches == []  # the slice's tombstones were not published, nor kept
        docs = Path(out.split("Data Docs: ", 1)[1].split()[0])
        assert docs.is_file()
        pages = [p.read_text() for p in docs.parent.rglob("*.html")]
        assert any(BETWEEN in p and table.table in p for p in pages), docs
        summary = last_gate(lake.open_catalog(stack))[table]
        assert not summary.passed
        assert summary.failed_checks == (BETWEEN,)
        assert summary.branch == branches[0]
        assert not summary.published
        results = spark.sql(f"SELECT `check`, success, observed FROM {stack.catalog.name}.cdc_quality.gate_results "
                            f"WHERE `table` = '{table}' AND branch = '{branches[0]}'").collect()
        assert [(r[0], r[2]) for r in results if not r[1]] == [(BETWEEN, "1 unexpected of 5, e.g. [Decimal('-5.000')]")]
        assert {r[0] for r in results} >= {"conservation", "no_resurrected_key", "schema", "expect_column_values_to_be_unique(id)"}

        execute(stack, f"UPDATE `{db}`.a SET amount = 5 WHERE id = 6")
        _land(stack, table)
        code, out = _cdc(["merge", str(table)], capfd, monkeypatch, env)
        assert code == 0, out
        assert _main(stack, table) != before
        assert _branches(spark, stack, table) == []
        assert compare_table(stack, lake.open_catalog(stack), table).equal
        assert last_gate(lake.open_catalog(stack))[table].passed
    finally:
        forget(stack, [table, other])


def test_built_in_checks_catch_rows_written_behind_the_merge(
        stack: Settings, spark: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A duplicate of key 1 and a key 99 whose tombstone is newer, appended to main directly with Spark: the next
    merge's gate fails the key-unique and the tombstone checks, and publishes nothing."""
    db = f"wap_{uuid.uuid4().hex[:8]}"
    table = TableId(db, "a")
    create_tables(stack, db, ("a",))
    base = f"{stack.catalog.name}.`{db}`.a"
    try:
        execute(stack, *(f"INSERT INTO `{db}`.a VALUES ({i}, {i}, {i}, 'x')" for i in range(1, 4)))
        _land(stack, table)
        code, out = _cdc(["merge", str(table)], capfd, monkeypatch, {})
        assert code == 0, out
        spark.sql(f"INSERT INTO {base} SELECT * FROM {base} WHERE id = 1")
        spark.sql(f"INSERT INTO {base} SELECT 99, n, amount, note, _seq, _source_ts FROM {base} WHERE id = 2")
        spark.sql(f"INSERT INTO {stack.catalog.name}.`{db}`.a_tombstones "
                  f"SELECT 99, _seq + 1, _source_ts, current_timestamp() FROM {base} WHERE id = 2")
        before = _main(stack, table)
        execute(stack, f"INSERT INTO `{db}`.a VALUES (4, 4, 4, 'y')")
        _land(stack, table)
        code, out = _cdc(["merge", str(table)], capfd, monkeypatch, {})
        print(out)
        assert code == 1, out
        assert "gate check expect_column_values_to_be_unique(id) failed" in out
        assert "gate check no_resurrected_key failed: 1 rows" in out
        assert _main(stack, table) == before
        failed = last_gate(lake.open_catalog(stack))[table].failed_checks
        assert failed == ("expect_column_values_to_be_unique(id)", "no_resurrected_key")
        # the spark-submit entry point redoes the unpublished slice from main, fails the same way, exits 1
        from spark_jobs.merge import main as spark_submit_main

        assert spark_submit_main(["--catalog", stack.catalog.name, str(table)]) == 1
        assert "gate failed: " + str(table) + ": expect_column_values_to_be_unique(id), no_resurrected_key" in capfd.readouterr().err
        assert _main(stack, table) == before
        assert len(_branches(spark, stack, table)) == 1  # the newer evidence replaced the older
    finally:
        forget(stack, [table])


def test_main_moved_during_the_audit_publishes_nothing(stack: Settings, spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer commits to main after the audit branch was made: the fast-forward is refused, the branch is
    dropped, the run fails with a clear message and nothing of the slice is published; a re-run merges it."""
    from spark_jobs import gate_publish
    from spark_jobs.gate_publish import MainMoved
    from spark_jobs.merge import merge_table

    db = f"wap_{uuid.uuid4().hex[:8]}"
    table = TableId(db, "a")
    create_tables(stack, db, ("a",))
    base = f"{stack.catalog.name}.`{db}`.a"
    try:
        execute(stack, *(f"INSERT INTO `{db}`.a VALUES ({i}, {i}, {i}, 'x')" for i in range(1, 4)))
        _land(stack, table)
        assert merge_table(spark, stack.catalog.name, db, "a").published
        execute(stack, f"INSERT INTO `{db}`.a VALUES (4, 4, 4, 'y')")
        _land(stack, table)
        publish = gate_publish.publish

        def concurrent_commit_then_publish(spark_: Any, ident: Any, branch: str) -> None:
            if ident[2] == "a":  # a real commit to main by someone else, between the audit and the publish
                spark.sql(f"DELETE FROM {base} WHERE id = 3")
            publish(spark_, ident, branch)

        monkeypatch.setattr(gate_publish, "publish", concurrent_commit_then_publish)
        with pytest.raises(MainMoved, match=r"main moved while the audit branch audit_\d+_\d{14} was written"):
            merge_table(spark, stack.catalog.name, db, "a")
        monkeypatch.undo()
        assert _branches(spark, stack, table) == []
        assert _branches(spark, stack, TableId(db, "a_tombstones")) == []
        assert [r[0] for r in spark.sql(f"SELECT id FROM {base} ORDER BY id").collect()] == [1, 2]  # the slice is not in
        spark.sql(f"INSERT INTO {base} SELECT 3, 3, 3, 'x', _seq, _source_ts FROM {base} WHERE id = 2")  # undo the rogue delete
        assert merge_table(spark, stack.catalog.name, db, "a").published
        assert [r[0] for r in spark.sql(f"SELECT id FROM {base} ORDER BY id").collect()] == [1, 2, 3, 4]
    finally:
        forget(stack, [table])


def test_tombstones_main_moved_after_the_base_publish_is_merged_not_lost(
        stack: Settings, spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer commits to the tombstones' main between the base's publish and theirs: the fast-forward is
    refused, the branch's tombstones are merged into main instead, and the table is reported published."""
    from spark_jobs import gate_publish
    from spark_jobs.merge import merge_table

    db = f"wap_{uuid.uuid4().hex[:8]}"
    table = TableId(db, "a")
    create_tables(stack, db, ("a",))
    base = f"{stack.catalog.name}.`{db}`.a"
    tombs = f"{stack.catalog.name}.`{db}`.a_tombstones"
    try:
        execute(stack, *(f"INSERT INTO `{db}`.a VALUES ({i}, {i}, {i}, 'x')" for i in range(1, 4)))
        _land(stack, table)
        assert merge_table(spark, stack.catalog.name, db, "a").published
        execute(stack, f"DELETE FROM `{db}`.a WHERE id = 3", f"INSERT INTO `{db}`.a VALUES (4, 4, 4, 'y')")
        _land(stack, table)
        publish = gate_publish.publish

        def concurrent_commit_then_publish(spark_: Any, ident: Any, branch: str) -> None:
            if ident[2] == "a_tombstones":  # a real commit to the tombstones' main, after the base's publish
                spark.sql(f"INSERT INTO {tombs} VALUES (99, 1, current_timestamp(), current_timestamp())")
            publish(spark_, ident, branch)

        monkeypatch.setattr(gate_publish, "publish", concurrent_commit_then_publish)
        result = merge_table(spark, stack.catalog.name, db, "a")
        monkeypatch.undo()
        assert (result.published, result.warning) == (True, "")
        assert [r[0] for r in spark.sql(f"SELECT id FROM {tombs} ORDER BY id").collect()] == [3, 99]
        assert _branches(spark, stack, table) == []
        assert _branches(spark, stack, TableId(db, "a_tombstones")) == []
        assert [r[0] for r in spark.sql(f"SELECT id FROM {base} ORDER BY id").collect()] == [1, 2, 4]
    finally:
        forget(stack, [table])
