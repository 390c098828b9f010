"""Merge modes per table and the bucket-aligned MERGE (issue 12, item 4), on the real stack: a merge-on-read and a
copy-on-write table through capture, landing and `cdc merge` both equal the source; after updates the merge-on-read
base holds position-delete files (never equality deletes), the copy-on-write one no delete file; changing a table's
setting changes its write-mode properties at its next merge; the merge's own plan check finds no exchange on the base
side by default and names the conf when one-side shuffle is off; a merge of changes in 1 of 16 buckets reads only that
bucket's base files (the scan's own metrics, from Spark's SQL status store)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from cdc.cli import main
from cdc.config import Settings, TableOverride
from cdc.events.model import TableId
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.verify import compare_table
from spark_jobs import base_merge
from tests.e2e.faults_support import create_tables, execute, forget, wait_captured

pytestmark = pytest.mark.e2e

MOR, COW = "merge-on-read", "copy-on-write"
SHUFFLE = "spark.sql.sources.v2.bucketing.shuffle.enabled"


def _cdc(args: list[str], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> tuple[int, str]:
    """`cdc ARGS` in-process (it reuses the test's Spark session); exit code and stdout + stderr (with its log)."""
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


def _modes(modes: dict[TableId, str]) -> dict[str, str]:
    return {"CDC_TABLES": json.dumps({str(t): {"merge_mode": m} for t, m in modes.items()})}


def _land(settings: Settings, *tables: TableId) -> None:
    wait_captured(settings)
    Ingestor(settings, lake.open_catalog(settings)).drain(tables=list(tables))


def _write_modes(settings: Settings, table: TableId) -> set[str]:
    props = lake.open_catalog(settings).load_table(lake.base_name(table)).properties
    return {props.get(k, "") for k in lake.WRITE_MODE_PROPERTIES}


def _file_kinds(spark: Any, settings: Settings, table: TableId) -> dict[int, int]:
    """content (0 data, 1 position deletes, 2 equality deletes) -> files in the base's current snapshot."""
    rows = spark.sql(f"SELECT content, count(*) FROM {settings.catalog.name}.`{table.db}`.`{table.table}`.files "
                     "GROUP BY content").collect()
    return {int(r[0]): int(r[1]) for r in rows}


def _equal(settings: Settings, table: TableId) -> None:
    result = compare_table(settings, lake.open_catalog(settings), table)
    assert result.equal, (table, result.missing_in_lake[:3], result.extra_in_lake[:3], result.different[:3])


def _plan_lines(out: str, table: TableId) -> list[str]:
    return [line for line in out.splitlines() if f"merge {table}: plan check:" in line]


def _merge_scan_metrics(spark: Any, target: str) -> dict[str, str]:
    """The metrics of the base scan of the newest MERGE into `target` (`catalog.db.table`) this session ran, from
    Spark's SQL status store (what the SQL UI shows)."""
    store = spark._jsparkSession.sharedState().statusStore()
    executions = store.executionsList()
    for i in reversed(range(executions.size())):
        execution_id = executions.apply(i).executionId()
        nodes = store.planGraph(execution_id).allNodes()
        names = [nodes.apply(j).name() for j in range(nodes.size())]
        if not any(n in ("WriteDelta", "ReplaceData") for n in names):
            continue
        scans = [nodes.apply(j) for j in range(nodes.size()) if names[j] == f"BatchScan {target}"]
        if not scans:
            continue
        values = store.executionMetrics(execution_id)
        metrics = scans[0].metrics()
        found = {}
        for j in range(metrics.size()):
            value = values.get(metrics.apply(j).accumulatorId())
            found[metrics.apply(j).name()] = value.get() if value.isDefined() else ""
        return found
    raise AssertionError(f"no MERGE into {target} in this session")


def test_merge_modes_and_the_bucket_aligned_merge(stack: Settings, spark: Any, capfd: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"mm_{uuid.uuid4().hex[:8]}"
    mor, cow = TableId(db, "r"), TableId(db, "w")
    env = _modes({cow: COW})
    settings = stack.model_copy(update={"tables": {str(cow): TableOverride.model_validate({"merge_mode": COW})}})
    create_tables(stack, db, ("r", "w"))
    r = f"{stack.catalog.name}.`{db}`.r"
    try:
        execute(stack, *(f"INSERT INTO `{db}`.{t} VALUES ({i}, {i}, {i}.5, 'x')" for i in range(1, 97) for t in "rw"))
        _land(settings, mor, cow)  # the landing makes the lake tables with the settings' modes
        assert _write_modes(stack, mor) == {MOR}
        assert _write_modes(stack, cow) == {COW}
        code, out = _cdc(["merge", str(mor), str(cow)], capfd, monkeypatch, env)
        assert code == 0, out
        _equal(stack, mor)
        _equal(stack, cow)

        # updates and deletes all over both tables
        execute(stack, *(f"UPDATE `{db}`.{t} SET n = n + 100, note = 'upd' WHERE id % 4 = 0" for t in "rw"),
                *(f"DELETE FROM `{db}`.{t} WHERE id % 9 = 0" for t in "rw"),
                *(f"INSERT INTO `{db}`.{t} VALUES (100, 1, NULL, 'new')" for t in "rw"))
        _land(stack, mor, cow)
        code, out = _cdc(["merge", str(mor), str(cow)], capfd, monkeypatch, env)
        assert code == 0, out
        _equal(stack, mor)
        _equal(stack, cow)
        kinds = _file_kinds(spark, stack, mor)
        assert kinds.get(1, 0) > 0, kinds  # merge-on-read: position deletes beside the untouched data files
        assert kinds.get(2, 0) == 0, kinds  # never equality deletes
        assert set(_file_kinds(spark, stack, cow)) == {0}  # copy-on-write: rewritten data files only
        for t in (mor, cow):  # the default setup: both sides bucket-aligned, the base read in place
            lines = _plan_lines(out, t)
            assert len(lines) == 1, out
            assert "plan check: no exchange on the base side" in lines[0]
            assert "base scan grouped by id_bucket" in lines[0]

        # changes in 1 of the 16 buckets of r: the MERGE reads only that bucket's files of the base. The setting of w
        # changes: its next merge brings the table's properties in line before its MERGE. And w's plan is checked in
        # a session without one-side shuffle (the MERGE itself runs with it): the check finds the base shuffled
        bucket = int(spark.sql(f"SELECT {stack.catalog.name}.system.bucket(16, 1)").collect()[0][0])
        keys = [int(row[0]) for row in spark.sql(
            f"SELECT id FROM {r} WHERE {stack.catalog.name}.system.bucket(16, id) = {bucket} ORDER BY id").collect()]
        assert 1 in keys
        files = spark.sql(f"SELECT partition.id_bucket, count(*) FROM {r}.files WHERE content = 0 GROUP BY 1").collect()
        per_bucket = {int(row[0]): int(row[1]) for row in files}
        assert len(per_bucket) > 1, per_bucket
        execute(stack, *(f"UPDATE `{db}`.r SET n = n + 1000 WHERE id = {k}" for k in keys[:3]),
                f"DELETE FROM `{db}`.r WHERE id = {keys[-1]}", f"UPDATE `{db}`.w SET n = n + 1 WHERE id < 20")
        _land(stack, mor, cow)
        check_plan = base_merge.check_plan

        def check_without_one_side_shuffle(spark_: Any, sql: str, base: Any, changelog: Any, name: str, spec: Any) -> Any:
            if name != str(cow):
                return check_plan(spark_, sql, base, changelog, name, spec)
            spark_.conf.set(SHUFFLE, "false")
            try:
                return check_plan(spark_, sql, base, changelog, name, spec)
            finally:
                spark_.conf.set(SHUFFLE, "true")

        monkeypatch.setattr(base_merge, "check_plan", check_without_one_side_shuffle)
        code, out = _cdc(["merge", str(mor), str(cow)], capfd, monkeypatch, {})  # w: the default, merge-on-read
        monkeypatch.setattr(base_merge, "check_plan", check_plan)
        assert code == 0, out
        assert f"merge {mor}: the changes touch 1 of 16 buckets: the MERGE reads only those of the base ({bucket})" in out
        lines = _plan_lines(out, mor)
        assert len(lines) == 1, out
        assert "no exchange on the base side" in lines[0]
        assert f"pushed filters: bucket[16](id) = {bucket}" in lines[0]
        metrics = _merge_scan_metrics(spark, f"{stack.catalog.name}.{db}.r")
        assert metrics["number of result data files"] == str(per_bucket[bucket]), (metrics, per_bucket)
        assert metrics["number of skipped data files"] == str(sum(per_bucket.values()) - per_bucket[bucket]), metrics
        assert f"merge {cow}: write mode {COW} -> {MOR}" in out
        assert f"merge {mor}: write mode" not in out  # r's setting did not change
        assert _write_modes(stack, cow) == {MOR}
        _equal(stack, mor)
        _equal(stack, cow)
        lines = _plan_lines(out, cow)  # checked without one-side shuffle
        assert len(lines) == 1, out
        assert "an exchange on the base side, the base is shuffled" in lines[0]
        assert "base side: Exchange hashpartitioning(id#" in lines[0]
        assert f"likely because {SHUFFLE} is false" in lines[0]
        assert " WARNING " in lines[0]
    finally:
        forget(stack, [mor, cow])
