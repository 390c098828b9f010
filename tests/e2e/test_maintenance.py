"""`cdc maintain` on the real stack (issue 12 item 1): a changelog of many small landings is compacted bucket by
bucket with its rows unchanged, a base's position deletes are compacted away after several merges, an old orphan
file goes, a dry run changes nothing; a merge in flight keeps maintenance off the base's `main`; and RELIABILITY #28:
compaction and snapshot expiry (ours and a standard Iceberg job) between landings and merges lose nothing and land
nothing twice."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc.cli import main
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.verify import compare_table
from spark_jobs import gate_publish
from spark_jobs.maintain import COMPACT, DONE, SKIPPED, main as spark_submit_main
from spark_jobs.merge import merge_table
from tests.e2e.faults_support import create_tables, execute, forget, wait_captured

pytestmark = pytest.mark.e2e

BUCKETS = 2  # small tables: a landing writes one file per bucket it touches


@pytest.fixture
def settings2(stack: Settings) -> Settings:
    """The stack's settings with 2 buckets for new lake tables."""
    return stack.model_copy(update={"ingest": stack.ingest.model_copy(update={"buckets": BUCKETS})})


@pytest.fixture
def table(stack: Settings) -> Iterator[TableId]:
    t = TableId(f"mt_{uuid.uuid4().hex[:8]}", "a")
    create_tables(stack, t.db, (t.table,))
    yield t
    forget(stack, [t])


def _cdc(args: list[str], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         env: dict[str, str] | None = None) -> tuple[int, str]:
    """`cdc ARGS` in-process (it reuses the test's Spark session); exit code and stdout + stderr."""
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, []
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    finally:
        root.handlers = handlers
        for k in env or {}:
            monkeypatch.delenv(k)
    captured = capfd.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


def _land(settings: Settings, t: TableId) -> None:
    wait_captured(settings, t.db, (t.table,))
    Ingestor(settings, lake.open_catalog(settings)).drain(tables=[t])


def _name(settings: Settings, t: TableId, suffix: str = "") -> str:
    return f"{settings.catalog.name}.`{t.db}`.`{t.table}{suffix}`"


def _files_per_bucket(spark: Any, name: str, content: int = 0) -> dict[int, int]:
    table = "data_files" if content == 0 else "delete_files"
    return {int(r[0][0]): int(r[1]) for r in spark.sql(f"SELECT `partition`, COUNT(*) FROM {name}.{table} GROUP BY 1").collect()}


def _rows(spark: Any, name: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in spark.sql(f"SELECT * FROM {name}").collect())


def _snapshot_ids(spark: Any, name: str) -> list[int]:
    return sorted(int(r[0]) for r in spark.sql(f"SELECT snapshot_id FROM {name}.snapshots").collect())


def _coordinates(spark: Any, name: str) -> list[tuple[str, int, int]]:
    return [(str(r[0]), int(r[1]), int(r[2]))
            for r in spark.sql(f"SELECT _kafka_topic, _kafka_partition, _kafka_offset FROM {name}").collect()]


def _orphan(settings: Settings, t: TableId, days_old: float) -> Path:
    """A file in the base's data folder that no snapshot references, `days_old` days old."""
    location = lake.open_catalog(settings).load_table(lake.base_name(t)).location()
    path = Path(location.removeprefix("file://")) / "data" / f"mt-orphan-{uuid.uuid4().hex[:6]}.parquet"
    path.write_bytes(b"not referenced by any snapshot")
    old = time.time() - days_old * 86400
    os.utime(path, (old, old))
    return path


def _maintain(args: list[str], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
              env: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    """`cdc --output json maintain ARGS`: its steps by (lake table, step), printed for the log."""
    code, out = _cdc(["--output", "json", "maintain", *args], capfd, monkeypatch, env)
    assert code == 0, out
    document = next(line for line in out.splitlines() if line.startswith('{"maintain"'))  # stdout; the logs are on stderr
    steps = {(r["table"], r["step"]): r for r in json.loads(document)["maintain"]}
    for (name, step), r in sorted(steps.items()):
        print(f"{name:22} {step:9} {r['result']:10} files {r['files']:9} bytes {r['bytes']:15} snapshots {r['snapshots']:7} "
              f"manifests {r['manifests']:7} {r['seconds']:>5} s  {r['why']}")
    return steps


def test_landings_and_deletes_are_compacted_bucket_by_bucket_but_not_under_a_merge_in_flight(
        settings2: Settings, table: TableId, spark: Any, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """12 landings (about 12 small files per bucket of the changelog) and merges that update merged rows (position
    deletes on the base). A dry run changes nothing. Maintenance run while a merge is between its audit and its
    publish compacts the changelog (same rows, fewer files) and removes an old orphan file, but leaves the base's
    main alone (the reason names the audit branch), and the merge publishes. The next run compacts the base: its
    delete files are gone, its rows unchanged."""
    db, s = table.db, settings2
    changelog, base = _name(s, table, "_changelog"), _name(s, table)
    env = {"CDC_MAINTENANCE__MIN_SMALL_FILES": "4", "CDC_MAINTENANCE__DELETE_RATIO": "0.01"}
    for i in range(12):
        execute(s, *(f"INSERT INTO `{db}`.a VALUES ({k}, {i}, {k}.5, 'r{i}') ON DUPLICATE KEY UPDATE n = {i}, note = 'u{i}'"
                     for k in (i, i + 1, i + 20, i + 21)))
        _land(s, table)
        if i in (3, 7):  # the second merge updates rows the first merged: position deletes on main
            assert merge_table(spark, s.catalog.name, db, "a").published
    before = _files_per_bucket(spark, changelog)
    assert min(before.values()) >= 10, before
    assert sum(_files_per_bucket(spark, base, content=1).values()) >= 1  # the base's position deletes
    rows_changelog = _rows(spark, changelog)
    orphan = _orphan(s, table, days_old=5)

    snapshots = {n: _snapshot_ids(spark, n) for n in (changelog, base)}
    steps = _maintain(["--dry-run", str(table)], capfd, monkeypatch, env)
    assert steps[(f"{db}.a_changelog", COMPACT)]["result"] == "would run"
    assert steps[(f"{db}.a", COMPACT)]["result"] == "would run"
    assert steps[(f"{db}.a", "orphans")]["result"] == "would run"
    # the spark-submit entry point (the same job, thresholds as options)
    assert spark_submit_main(["--catalog", s.catalog.name, "--dry-run", "--min-small-files", "4", "--delete-ratio", "0.01",
                              str(table)]) == 0
    assert f"{db}.a_changelog | compact | would run | rewrite_data_files in buckets 0, 1" in capfd.readouterr().out
    assert {n: _snapshot_ids(spark, n) for n in (changelog, base)} == snapshots  # a dry run changes nothing
    assert orphan.exists()

    publish = gate_publish.publish
    during: list[dict[tuple[str, str], dict[str, Any]]] = []

    def maintain_then_publish(spark_: Any, ident: Any, branch: str) -> None:
        if ident[2] == "a":  # the audit branches exist; the base's main is not fast-forwarded yet
            during.append(_maintain([str(table)], capfd, monkeypatch, env))
        publish(spark_, ident, branch)

    monkeypatch.setattr(gate_publish, "publish", maintain_then_publish)
    result = merge_table(spark, s.catalog.name, db, "a")
    monkeypatch.undo()
    assert result.published, result  # maintenance did not move the base's main under the merge
    (steps,) = during
    compacted = steps[(f"{db}.a_changelog", COMPACT)]
    assert compacted["result"] == DONE
    assert "buckets 0, 1" in compacted["why"]
    files_before, files_after = (int(x) for x in compacted["files"].split(" -> "))
    assert files_after < files_before
    after = _files_per_bucket(spark, changelog)
    assert all(after[b] < before[b] for b in before), (before, after)
    assert _rows(spark, changelog) == rows_changelog  # the same rows, in fewer files
    skipped = steps[(f"{db}.a", COMPACT)]
    assert skipped["result"] == SKIPPED
    assert result.gate is not None
    assert skipped["why"].startswith(f"merge in flight: audit branch {result.gate.branch} made"), skipped
    assert steps[(f"{db}.a", "orphans")]["result"] == DONE
    assert not orphan.exists()

    rows_base = _rows(spark, base)
    assert sum(_files_per_bucket(spark, base, content=1).values()) >= 1
    steps = _maintain([str(table)], capfd, monkeypatch, env)
    assert steps[(f"{db}.a", COMPACT)]["result"] == DONE
    assert steps[(f"{db}.a_changelog", COMPACT)]["result"] == "not needed"
    assert _files_per_bucket(spark, base, content=1) == {}  # the deletes are applied, their files gone
    assert _rows(spark, base) == rows_base
    assert compare_table(s, lake.open_catalog(s), table).equal


def test_compaction_and_expiry_between_landings_and_merges_lose_nothing(
        settings2: Settings, table: TableId, spark: Any, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """RELIABILITY #28: land, merge, land more (unmerged); `cdc maintain` with thresholds low enough that compaction
    and expiry run, then a standard Iceberg job (rewrite everything, expire all but the newest snapshot) on the
    changelog and the base; more changes, land, merge: the base equals the source, no Kafka record is in the
    changelog twice, none it held is gone, and the merge folds exactly what was not merged before (its merged
    position survived: it neither skips changes nor folds the whole changelog again)."""
    db, s = table.db, settings2
    changelog, base = _name(s, table, "_changelog"), _name(s, table)
    execute(s, *(f"INSERT INTO `{db}`.a VALUES ({k}, 1, {k}, 'first') " for k in range(1, 11)))
    _land(s, table)
    assert merge_table(spark, s.catalog.name, db, "a").published
    merged = set(_coordinates(spark, changelog))
    for i in range(2):  # unmerged landings
        execute(s, f"UPDATE `{db}`.a SET n = n + 1 WHERE id <= {3 + i}", f"INSERT INTO `{db}`.a VALUES ({20 + i}, 0, 0, 'x')",
                f"DELETE FROM `{db}`.a WHERE id = {10 - i}")
        _land(s, table)
    landed = _coordinates(spark, changelog)
    env = {"CDC_MAINTENANCE__MIN_SMALL_FILES": "2", "CDC_MAINTENANCE__DELETE_RATIO": "0.01",
           "CDC_MAINTENANCE__SNAPSHOT_HOURS": "0.00001", "CDC_MAINTENANCE__RETAIN_SNAPSHOTS": "1"}
    code, out = _cdc(["maintain", str(table)], capfd, monkeypatch, env)
    print(out)
    assert code == 0, out
    catalog_name = s.catalog.name
    for name in (changelog, base):  # a standard Iceberg job, as a platform team would schedule it
        spark.sql(f"CALL {catalog_name}.system.rewrite_data_files(table => '{name}', options => map('rewrite-all', 'true'))")
        spark.sql(f"CALL {catalog_name}.system.expire_snapshots(table => '{name}', "
                  f"older_than => timestamp_millis({int(time.time() * 1000)}), retain_last => 1)")
    assert sorted(_coordinates(spark, changelog)) == sorted(landed)  # maintenance itself loses nothing

    execute(s, f"UPDATE `{db}`.a SET note = 'after' WHERE id IN (1, 20)", f"DELETE FROM `{db}`.a WHERE id = 2",
            f"INSERT INTO `{db}`.a VALUES (30, 3, 3, 'new')")
    _land(s, table)
    unmerged = {int(r[0]) for r in spark.sql(f"SELECT id, _kafka_topic, _kafka_partition, _kafka_offset FROM {changelog}").collect()
                if (str(r[1]), int(r[2]), int(r[3])) not in merged}
    folded = merge_table(spark, s.catalog.name, db, "a")
    assert folded.published
    assert folded.changes == len(unmerged), "the merge lost its merged position: it did not fold exactly the changes not merged before"
    coordinates = _coordinates(spark, changelog)
    assert len(coordinates) == len(set(coordinates)), "a Kafka record was landed twice"
    assert set(landed) <= set(coordinates), "a landed change is gone from the changelog"
    result = compare_table(s, lake.open_catalog(s), table)
    assert result.equal, (result.missing_in_lake[:3], result.extra_in_lake[:3], result.different[:3])
