"""Two landers race on one changelog table (a stale consumer and its successor): the loser's commit
must not re-apply its rows on top of the winner's. Real pyiceberg on a temporary SQLite catalog."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest

from cdc.config import load_settings
from cdc.events.debezium import decode
from cdc.events.model import ChangeEvent, KafkaCoordinates, TableId
from cdc.ingest import landing
from cdc.ingest.batch import Batch
from cdc.ingest.commit import landed_offsets
from cdc.ingest.landing import ChangelogSink, Lander
from cdc.lake import bookkeeping, catalog as lake
from tests.debezium_messages import envelope, field, key, payload, source, value_schema

DB, TABLE = "race", "t"
TOPIC = f"cdc.{DB}.{TABLE}"
ROW = [field("id", "int32", optional=False), field("v", "int64")]


def _batch(first: int, n: int) -> Batch:
    batch = Batch()
    for offset in range(first, first + n):
        src = source(pos=1000 + offset, db=DB, table=TABLE)
        k = key([field("id", "int32", optional=False)], {"id": offset})
        v = envelope(value_schema(ROW, DB, TABLE), payload("c", src=src, after={"id": offset, "v": offset}))
        event = decode(k, v, KafkaCoordinates(TOPIC, 0, offset))
        assert isinstance(event, ChangeEvent), event
        batch.add(event, (k, v, ()), time.monotonic())
    return batch


def test_the_loser_of_a_commit_race_lands_nothing_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(home=tmp_path, ingest={"buckets": 2})
    catalog = lake.open_catalog(settings)
    Lander(settings, catalog).land(_batch(0, 3))  # the table exists, offsets at 3
    stale, fresh = _batch(3, 10), _batch(3, 12)  # both read 3.. ; the fresh one a little further
    original = ChangelogSink.write
    raced = {"done": False}

    def write_after_the_other_one_committed(self: ChangelogSink, table: object, rows: pa.Table,
                                             record: bookkeeping.Landing) -> None:
        if not raced["done"]:  # the table this attempt loaded is now stale: the other consumer commits first
            raced["done"] = True
            Lander(settings, lake.open_catalog(settings)).land(fresh)
        original(self, table, rows, record)  # type: ignore[arg-type]

    monkeypatch.setattr(landing.ChangelogSink, "write", write_after_the_other_one_committed)
    outcome = Lander(settings, catalog).land(stale)
    assert raced["done"]
    assert outcome.landed == {}  # its attempt conflicted, reloaded and found everything landed
    changelog = catalog.load_table(lake.changelog_name(TableId(DB, TABLE)))
    landed = changelog.scan(selected_fields=("_kafka_offset",)).to_arrow().column("_kafka_offset").to_pylist()
    assert sorted(landed) == list(range(15))  # each offset once
    numbers = changelog.scan(selected_fields=("_cdc_landed",)).to_arrow().column("_cdc_landed").to_pylist()
    assert sorted(set(numbers)) == [1, 2]  # one number per commit with rows (the new table's empty anchor takes none)
    assert changelog.properties["cdc.landed"] == "2"
    assert landed_offsets(changelog) == {TOPIC: {0: 15}}  # never backwards


def test_a_changelog_made_before_landing_numbers_numbers_its_first_landing(tmp_path: Path) -> None:
    """A changelog created before `_cdc_landed` existed gets the column on its next landing, and the rows of that very
    landing (built from the schema read before the column was added) carry the number, not NULL: a NULL would read as
    merged once the base records a landing number."""
    settings = load_settings(home=tmp_path, ingest={"buckets": 2})
    catalog = lake.open_catalog(settings)
    Lander(settings, catalog).land(_batch(0, 3))
    ident = lake.changelog_name(TableId(DB, TABLE))
    with catalog.load_table(ident).update_schema() as update:  # as an older version made it
        update.delete_column("_cdc_landed")
    Lander(settings, lake.open_catalog(settings)).land(_batch(3, 6))
    rows = catalog.load_table(ident).scan(selected_fields=("_kafka_offset", "_cdc_landed")).to_arrow().to_pylist()
    assert sorted((r["_kafka_offset"], r["_cdc_landed"]) for r in rows if r["_kafka_offset"] >= 3) == [(o, 2) for o in range(3, 9)]


def test_offsets_survive_expiry_of_every_landing_commit_and_follow_a_rollback(tmp_path: Path) -> None:
    """The landing record: the newest landing commit's summary; when maintenance left no landing commit (a
    compaction then expiry), the table properties that commit set; after a rollback, the summary it rolled back to."""
    settings = load_settings(home=tmp_path, ingest={"buckets": 2})
    catalog = lake.open_catalog(settings)
    Lander(settings, catalog).land(_batch(0, 3))
    ident = lake.changelog_name(TableId(DB, TABLE))
    first = catalog.load_table(ident).current_snapshot().snapshot_id
    Lander(settings, lake.open_catalog(settings)).land(_batch(3, 6))
    table = catalog.load_table(ident)
    assert bookkeeping.landing(table).offsets == {"cdc.race.t": {0: 9}}
    assert table.properties["cdc.kafka-offsets"] == '{"cdc.race.t":{"0":9}}'
    with table.manage_snapshots() as ms:  # an operator rolls the landing back: it lands offsets 3.. again
        ms.rollback_to_snapshot(first)
    assert bookkeeping.landing(catalog.load_table(ident)).offsets == {"cdc.race.t": {0: 3}}
    Lander(settings, lake.open_catalog(settings)).land(_batch(3, 6))
    table = catalog.load_table(ident)
    # a rewrite of every row (a snapshot without the summary, as a compaction makes), then every older snapshot expired
    table.overwrite(table.scan().to_arrow())
    table = catalog.load_table(ident)
    current = table.current_snapshot().snapshot_id
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in table.snapshots() if s.snapshot_id != current]).commit()
    table = catalog.load_table(ident)
    assert len(table.snapshots()) == 1
    assert "cdc.kafka-offsets" not in (table.current_snapshot().summary.additional_properties or {})
    assert landed_offsets(table) == {"cdc.race.t": {0: 9}}  # from the properties: nothing lands twice
    assert bookkeeping.landing(table).landed == 3
