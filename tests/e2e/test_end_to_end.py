"""MariaDB -> Debezium -> Kafka -> Iceberg changelog -> Spark MERGE -> base table, on real services."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cdc import connectors
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest.capture import CaptureRules
from cdc.ingest.commit import landed_offsets
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.verify import compare_table
from spark_jobs.merge import merge_table
from tests.e2e import workload

pytestmark = pytest.mark.e2e
TABLES = ("accounts", "ledger_lines")


def _land_and_merge(settings: Settings, catalog: Any, spark: Any, db: str) -> None:
    connectors.wait_captured(settings)
    Ingestor(settings, catalog).drain()
    for t in TABLES:
        merge_table(spark, settings.catalog.name, db, t)


def test_lake_equals_source_after_random_workload(stack: Settings, catalog: Any, spark: Any) -> None:
    db = f"e2e_{uuid.uuid4().hex[:8]}"
    workload.create_database(stack, db)
    changes = workload.run(stack, db, seed=7, transactions=60)
    assert changes > 200
    _land_and_merge(stack, catalog, spark, db)
    for t in TABLES:
        result = compare_table(stack, lake.open_catalog(stack), TableId(db, t))
        assert result.source_rows > 0
        assert result.equal, (result.missing_in_lake[:3], result.extra_in_lake[:3], result.different[:3])

    # a second round on top of merged state, then re-running everything is a no-op
    workload.run(stack, db, seed=8, transactions=30)
    _land_and_merge(stack, catalog, spark, db)
    fresh = lake.open_catalog(stack)
    before = {t: fresh.load_table(lake.base_name(TableId(db, t))).current_snapshot().snapshot_id for t in TABLES}
    report = Ingestor(stack, fresh).drain()
    assert report.changes == 0
    for t in TABLES:
        again = merge_table(spark, stack.catalog.name, db, t)
        assert again.skipped
        result = compare_table(stack, fresh, TableId(db, t))
        assert result.equal, (result.missing_in_lake[:3], result.extra_in_lake[:3], result.different[:3])
    after = {t: lake.open_catalog(stack).load_table(lake.base_name(TableId(db, t))).current_snapshot().snapshot_id for t in TABLES}
    assert before == after


def test_changelog_commits_record_offsets_that_never_go_backwards(stack: Settings, catalog: Any, spark: Any) -> None:
    db = f"e2e_{uuid.uuid4().hex[:8]}"
    workload.create_database(stack, db)
    names = CaptureRules(stack.connect.topic_prefix)
    for seed in (1, 2, 3):
        workload.run(stack, db, seed=seed, transactions=10)
        connectors.wait_captured(stack)
        Ingestor(stack, lake.open_catalog(stack)).drain()
    table = lake.open_catalog(stack).load_table(lake.changelog_name(TableId(db, "accounts")))
    topic = names.topic(TableId(db, "accounts"))
    recorded = [
        int(snap.summary.additional_properties[lake.OFFSETS].split(":")[-1].rstrip("}"))
        for snap in reversed(list(lake.ancestors(table)))
        if snap.summary is not None and lake.OFFSETS in snap.summary.additional_properties
    ]
    assert len(recorded) == 4  # the anchor made with the table (where its first batch starts), then 3 landings
    assert recorded[0] == 0
    assert recorded == sorted(recorded)
    assert landed_offsets(table)[topic][0] == recorded[-1]
    # every change landed once: offsets in the changelog are unique
    offsets = table.scan(selected_fields=("_kafka_offset",)).to_arrow().column("_kafka_offset").to_pylist()
    assert len(offsets) == len(set(offsets))
