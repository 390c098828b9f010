"""Running at cadence (issue 12, "Must show"): a 200,000-row table goes through six cycles of
writer -> ingest -> merge, with maintenance (compaction of every lake table, snapshot expiry down to the newest
snapshot) after the fourth. After every cycle the base equals the source row for row, no Kafka record is in the
changelog twice, and the merge folded exactly the changes of its cycle: what maintenance did to the changelog
(its files rewritten, the snapshot the base merged last expired) neither re-folds old changes nor skips new ones.
`make bench` (B5b) runs the long version of this scenario on 2,000,000 rows and measures it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdc.bootstrap.snapshot import bootstrap
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.verify import compare_table
from spark_jobs.maintain import COMPACT, DONE, EXPIRE, Thresholds, maintain_table
from spark_jobs.merge import merge_table
from tests.e2e.faults_support import execute, forget, wait_captured

pytestmark = pytest.mark.e2e

ROWS = 200_000
CYCLES = 6
MAINTAIN_AFTER = 4
# maintenance as tight as it goes: every bucket with 2 small files compacted, every snapshot but the newest expired
TIGHT = Thresholds(min_small_files=2, delete_ratio=0.01, snapshot_hours=1e-6, retain_snapshots=1)


@pytest.fixture
def table(stack: Settings) -> Iterator[TableId]:
    """200,000 rows written outside the binlog (as an existing table is), then bootstrapped into the lake."""
    t = TableId(f"cd_{uuid.uuid4().hex[:8]}", "accounts")
    execute(stack, f"CREATE DATABASE `{t.db}`",
            f"CREATE TABLE `{t.db}`.accounts (id BIGINT NOT NULL PRIMARY KEY, owner VARCHAR(32) NOT NULL, "
            "balance DECIMAL(18,4) NULL, version INT NOT NULL DEFAULT 0, touched DATETIME(6) NULL)")
    execute(stack, "SET SESSION sql_log_bin = 0",
            f"INSERT INTO `{t.db}`.accounts (id, owner, balance, touched) SELECT seq, CONCAT('owner-', seq), "
            f"seq * 1.2345, TIMESTAMP('2026-01-01') + INTERVAL seq SECOND FROM `{t.db}`.seq_1_to_{ROWS}")
    wait_captured(stack, t.db, (t.table,))
    bootstrap(stack, t)
    yield t
    forget(stack, [t])


def _writer(settings: Settings, t: TableId, cycle: int) -> None:
    """About 1 % of the table in one cycle: updates spread over every bucket, deletes, inserts of new keys, a
    primary-key change, and an update of a row inserted in an earlier cycle."""
    name = f"`{t.db}`.accounts"
    execute(settings,
            f"UPDATE {name} SET version = version + 1, balance = balance + {cycle} WHERE id % 113 = {cycle}",
            f"DELETE FROM {name} WHERE id % 2003 = {cycle}",
            f"INSERT INTO {name} (id, owner, balance, version) SELECT {ROWS + cycle * 1000} + seq, CONCAT('new-', seq), "
            f"seq, {cycle} FROM `{t.db}`.seq_1_to_300",
            f"UPDATE {name} SET id = id + 10000000 WHERE id = {cycle * 7919}",
            f"UPDATE {name} SET owner = CONCAT(owner, '+') WHERE id BETWEEN {ROWS + 1001} AND {ROWS + 1050}")


def _landed(spark: Any, changelog: str) -> dict[tuple[str, int, int], int]:
    """The changelog's rows: Kafka coordinates -> key (a Kafka record landed twice shows as fewer entries than rows)."""
    rows = spark.sql(f"SELECT _kafka_topic, _kafka_partition, _kafka_offset, id FROM {changelog}").collect()
    out = {(str(r[0]), int(r[1]), int(r[2])): int(r[3]) for r in rows}
    assert len(out) == len(rows), "a Kafka record was landed twice"
    return out


def test_six_cycles_with_maintenance_stay_equal_and_land_nothing_twice(stack: Settings, table: TableId, spark: Any) -> None:
    t, s = table, stack
    catalog = lake.open_catalog(s)
    changelog = f"{s.catalog.name}.`{t.db}`.`{t.table}_changelog`"
    seen: dict[tuple[str, int, int], int] = {}
    for cycle in range(1, CYCLES + 1):
        _writer(s, t, cycle)
        Ingestor(s, catalog).drain(tables=[t], through_source=True)
        landed = _landed(spark, changelog)
        assert seen.items() <= landed.items(), f"cycle {cycle}: a landed change is gone from the changelog"
        keys = {k for c, k in landed.items() if c not in seen}
        seen = landed
        result = merge_table(spark, s.catalog.name, t.db, t.table)
        assert result.published, result
        # the merge folds the latest change of every key changed in this cycle, and nothing merged before
        assert result.changes == len(keys) > 1000, (cycle, result.changes, len(keys))
        comparison = compare_table(s, catalog, t)
        assert comparison.equal, (cycle, comparison.missing_in_lake[:3], comparison.extra_in_lake[:3],
                                  comparison.different[:3])
        if cycle == MAINTAIN_AFTER:
            outcome = maintain_table(spark, s.catalog.name, t.db, t.table, TIGHT)
            assert not outcome.errors, outcome.errors
            steps = {(r.table, r.step): r.action for r in outcome.steps}
            assert steps[(f"{t.db}.{t.table}_changelog", COMPACT)] == DONE, outcome.steps
            assert steps[(f"{t.db}.{t.table}_changelog", EXPIRE)] == DONE, outcome.steps
            assert steps[(f"{t.db}.{t.table}", EXPIRE)] == DONE, outcome.steps
            assert _landed(spark, changelog) == seen, "maintenance changed the changelog's rows"
            expired = next(r for r in outcome.steps if r.table == f"{t.db}.{t.table}_changelog" and r.step == EXPIRE)
            print("changelog expiry:", expired.reason, expired.before, expired.after)
            assert expired.before is not None
            assert expired.after is not None
            # what the merge of cycle 4 read and everything older than it is gone (expiry keeps no older snapshot
            # for the bookkeeping: rows carry their landing number, the offsets live in table properties)
            assert expired.after.snapshots <= 3, expired.reason
