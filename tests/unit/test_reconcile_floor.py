"""`cdc check` reads the truncate floor where the merge publishes it: the base commit's summary (review finding:
it read only the table property, which write-audit-publish no longer sets)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from cdc.config import load_settings
from cdc.lake import catalog as lake
from cdc.lake.contract import TRUNCATED_BEFORE
from cdc.quality.lake_side import recorded_floor


def test_the_floor_is_read_from_the_merge_commit_and_from_the_old_property(home: Path) -> None:
    catalog = lake.open_catalog(load_settings())
    catalog.create_namespace("shop")
    base = catalog.create_table(("shop", "t"), schema=pa.schema([pa.field("id", pa.int64())]))
    assert recorded_floor(base) is None
    base.append(pa.table({"id": pa.array([1], pa.int64())}), snapshot_properties={TRUNCATED_BEFORE: "500"})
    base.append(pa.table({"id": pa.array([2], pa.int64())}))  # a later commit without it (a landing, compaction)
    assert recorded_floor(base) == 500
    with base.transaction() as tx:
        tx.set_properties({TRUNCATED_BEFORE: "400"})  # a lake merged before write-audit-publish
    assert recorded_floor(catalog.load_table(("shop", "t"))) == 500


def test_touched_rows_are_filtered_batch_by_batch() -> None:
    from decimal import Decimal

    from cdc.quality.lake_side import rows_keeping

    schema = pa.schema([pa.field("id", pa.decimal128(20, 0)), pa.field("v", pa.string())])
    batches = [pa.record_batch([pa.array([Decimal(i) for i in range(j, j + 1000)], pa.decimal128(20, 0)),
                                pa.array([str(i) for i in range(j, j + 1000)])], schema=schema) for j in range(0, 10_000, 1000)]
    kept = rows_keeping(pa.RecordBatchReader.from_batches(schema, iter(batches)), "id", [Decimal(5), Decimal(9999), None, Decimal(5)])
    assert sorted(kept.column("v").to_pylist()) == ["5", "9999"]
    assert kept.schema == schema
    keys = pa.schema([pa.field("k", pa.binary(16))])
    uuid_batch = pa.record_batch([pa.array([bytes([i]) * 16 for i in range(200)], pa.binary(16))], schema=keys)
    kept = rows_keeping(pa.RecordBatchReader.from_batches(keys, iter([uuid_batch])), "k", [bytes([7]) * 16])
    assert kept.num_rows == 1
