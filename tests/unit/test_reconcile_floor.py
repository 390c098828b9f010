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
