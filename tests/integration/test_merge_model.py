"""Model-based test of the merge: change histories with duplicates, replays and out-of-order
delivery, pushed through the real decoder, the consumer's landing (`Lander`) and the real Spark MERGE,
must end in the table a plain reference model computes from the history in source order.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from cdc.config import Settings, load_settings
from cdc.events.debezium import decode
from cdc.events.model import ChangeEvent, KafkaCoordinates, TableId
from cdc.ingest.batch import Batch
from cdc.ingest.landing import Lander
from cdc.lake import catalog as lake
from cdc.spark import jdbc_catalog_conf
from spark_jobs.merge import merge_table
from tests.debezium_messages import envelope, field, key, payload, source, value_schema

CATALOG = "model"
DB = "m"
ROW_FIELDS = [field("id", "int32", optional=False), field("v", "int64"), field("s", "string")]
KEY_FIELDS = [field("id", "int32", optional=False)]
EXAMPLES = int(os.environ.get("CDC_MODEL_EXAMPLES", "12"))
_names = itertools.count()


@dataclass(frozen=True)
class Change:
    op: str  # c u d t
    row: dict[str, Any] | None
    pos: int


# ---- the reference model: the source table after a history, in source order ------------------


def history(steps: list[tuple[str, int, int]]) -> tuple[list[Change], dict[int, dict[str, Any]]]:
    """Turn random intents into a history the source could have produced, and its final table."""
    state: dict[int, dict[str, Any]] = {}
    changes: list[Change] = []
    for i, (kind, k, v) in enumerate(steps):
        pos = 1000 + 100 * i
        if kind == "upsert":
            row = {"id": k, "v": v, "s": None if v % 2 else f"s{i}"}
            changes.append(Change("u" if k in state else "c", row, pos))
            state[k] = row
        elif kind == "delete" and k in state:
            changes.append(Change("d", state.pop(k), pos))
        elif kind == "rekey" and k in state and k + 10 not in state:
            # a primary-key update: a delete of the old key and a create of the new one, one position
            old = state.pop(k)
            new = {**old, "id": k + 10}
            changes += [Change("d", old, pos), Change("c", new, pos)]
            state[k + 10] = new
        elif kind == "truncate":
            changes.append(Change("t", None, pos))
            state.clear()
    return changes, state


# ---- Debezium messages for those changes ------------------------------------------------------


def message(table: str, change: Change) -> tuple[bytes | None, bytes]:
    src = source(pos=change.pos, db=DB, table=table)
    schema = value_schema(ROW_FIELDS, DB, table)
    if change.op == "t":
        return None, envelope(schema, payload("t", src=src))
    image = {"before": change.row} if change.op == "d" else {"after": change.row}
    assert change.row is not None
    return key(KEY_FIELDS, {"id": change.row["id"]}), envelope(schema, payload(change.op, src=src, **image))


@pytest.fixture(scope="module")
def model_lake(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Settings:
    home: Path = tmp_path_factory.mktemp("model-lake")
    s = load_settings(home=home, catalog={"name": CATALOG}, ingest={"buckets": 4})
    for conf_key, conf_value in jdbc_catalog_conf(s).items():
        spark.conf.set(conf_key, conf_value)
    return s


def decoded(table: str, batch: list[tuple[int, Change]]) -> Batch:
    """The batch the consumer would build from these messages (offset = position in the delivery)."""
    out = Batch()
    for offset, change in batch:
        k, v = message(table, change)
        event = decode(k, v, KafkaCoordinates(f"cdc.{DB}.{table}", 0, offset))
        assert isinstance(event, ChangeEvent), event
        out.add(event, (k, v, ()), time.monotonic())
    return out


def land_and_merge(
    s: Settings, spark: Any, table: str, batches: list[list[tuple[int, Change]]], bootstrapped: bool = False
) -> dict[int, dict[str, Any]]:
    """Land each batch with the consumer's landing code (one flush each) and merge it. `bootstrapped`: the
    lake tables exist before the first change, as `cdc bootstrap` of an (empty) source table leaves them;
    otherwise the landing creates them on the first keyed change."""
    catalog = lake.open_catalog(s)
    tid = TableId(DB, table)
    if bootstrapped:
        first = decoded(table, [(0, Change("c", {"id": 0, "v": 0, "s": None}, 1))])
        lake.ensure_tables(catalog, s, tid, first.tables[tid].events[0].schema)
    lander = Lander(s, catalog)
    so_far: list[Change] = []
    for batch in batches:
        so_far += [c for _, c in batch]
        outcome = lander.land(decoded(table, batch))
        assert not outcome.halted, outcome.halted
        if not catalog.table_exists(lake.changelog_name(tid)):
            # only a table's truncates so far: nothing in the lake to empty, nothing landed, nothing to merge
            assert all(c.op == "t" for c in so_far), so_far
            continue
        merge_table(spark, CATALOG, DB, table)
        changelog = catalog.load_table(lake.changelog_name(tid))
        assert _merged_upto(catalog.load_table(lake.base_name(tid))) == changelog.current_snapshot().snapshot_id, "no progress recorded"
    if not catalog.table_exists(lake.base_name(tid)):
        return {}
    rows = catalog.load_table(lake.base_name(tid)).scan(selected_fields=("id", "v", "s")).to_arrow().to_pylist()
    assert len(rows) == len({r["id"] for r in rows}), "duplicate keys in the base table"
    return {r["id"]: r for r in rows}


STEP = st.tuples(
    st.sampled_from(["upsert", "upsert", "upsert", "delete", "delete", "rekey", "truncate"]),
    st.integers(1, 4),
    st.integers(-3, 3),
)


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                         HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=20), data=st.data())
def test_merge_matches_the_reference_model(model_lake: Settings, spark: Any, steps: list[tuple[str, int, int]], data: Any) -> None:
    changes, expected = history(steps)
    if not changes:
        return
    # every change delivered once in order, then redelivered later (a Connect restart replays a range)
    delivery = list(range(len(changes)))
    replays = data.draw(st.lists(st.tuples(st.integers(0, len(changes) - 1), st.integers(1, 2 * len(changes))), max_size=8))
    for which, delay in replays:
        delivery.insert(min(delivery.index(which) + delay, len(delivery)), which)
    cuts = sorted(data.draw(st.lists(st.integers(1, len(delivery)), min_size=1, max_size=3)))
    bounds = [0, *cuts, len(delivery)]
    batches = [[(i, changes[delivery[i]]) for i in range(a, b)] for a, b in itertools.pairwise(bounds) if b > a]
    bootstrapped = data.draw(st.booleans(), label="bootstrapped")
    if all(c.op == "t" for _, c in batches[0]):
        event(f"the first batch holds only truncates ({'bootstrapped' if bootstrapped else 'no lake tables yet'})")
    table = f"t{next(_names)}"
    assert land_and_merge(model_lake, spark, table, batches, bootstrapped) == expected


def test_a_replayed_insert_does_not_resurrect_a_deleted_row(model_lake: Settings, spark: Any) -> None:
    changes, expected = history([("upsert", 1, 1), ("upsert", 2, 2), ("delete", 1, 0)])
    assert expected == {2: {"id": 2, "v": 2, "s": "s1"}}
    create_1 = changes[0]
    batches = [[(0, changes[0]), (1, changes[1]), (2, changes[2])], [(3, create_1)], [(4, create_1), (5, changes[1])]]
    assert land_and_merge(model_lake, spark, f"t{next(_names)}", batches) == expected


def test_a_truncate_holds_against_older_changes_replayed_later(model_lake: Settings, spark: Any) -> None:
    changes, expected = history([("upsert", 1, 1), ("upsert", 2, 2), ("truncate", 0, 0), ("upsert", 3, 3)])
    assert expected == {3: {"id": 3, "v": 3, "s": None}}
    batches = [[(i, c) for i, c in enumerate(changes)], [(10, changes[0]), (11, changes[1])]]
    assert land_and_merge(model_lake, spark, f"t{next(_names)}", batches) == expected


def test_a_truncate_of_merged_rows_publishes_once(model_lake: Settings, spark: Any) -> None:
    """Rows merged before a truncate go in the same commit as the changes after it: `main` never shows one without the other."""
    changes, expected = history([("upsert", 1, 1), ("upsert", 2, 2), ("truncate", 0, 0), ("upsert", 3, 3), ("upsert", 1, 4)])
    assert expected == {3: {"id": 3, "v": 3, "s": None}, 1: {"id": 1, "v": 4, "s": "s4"}}
    table = f"t{next(_names)}"
    assert land_and_merge(model_lake, spark, table, [[(0, changes[0]), (1, changes[1])]]) == {1: changes[0].row, 2: changes[1].row}
    base = lake.open_catalog(model_lake).load_table(lake.base_name(TableId(DB, table)))
    before = base.current_snapshot().snapshot_id
    assert land_and_merge(model_lake, spark, table, [[(2, changes[2]), (3, changes[3]), (4, changes[4])]]) == expected
    published = list(itertools.takewhile(lambda snap: snap.snapshot_id != before, lake.ancestors(base.refresh())))
    assert len(published) == 1, [snap.summary for snap in published]


@pytest.mark.parametrize("bootstrapped", [False, True])
def test_a_truncate_as_a_tables_first_event(model_lake: Settings, spark: Any, bootstrapped: bool) -> None:
    """A truncate before the table's first change: without lake tables the landing skips it (nothing to
    empty); into tables a bootstrap made, the merge's first slice is a lone truncate (the floor and
    progress are recorded). A later replay of it changes nothing."""
    changes, expected = history([("truncate", 0, 0), ("upsert", 1, 1), ("upsert", 2, 2)])
    assert expected == {1: {"id": 1, "v": 1, "s": None}, 2: {"id": 2, "v": 2, "s": "s2"}}
    batches = [[(0, changes[0])], [(1, changes[1]), (2, changes[2])], [(3, changes[0])]]
    assert land_and_merge(model_lake, spark, f"t{next(_names)}", batches, bootstrapped) == expected


def _merged_upto(base: Any) -> int | None:
    for snapshot in lake.ancestors(base):
        upto = (snapshot.summary.additional_properties if snapshot.summary else {}).get(lake.MERGED_UPTO)
        if upto is not None:
            return int(upto)
    return None


def test_a_late_delete_keeps_its_tombstone_for_the_window_in_lake_time(model_lake: Settings, spark: Any) -> None:
    """A delete that happened 30 days ago at the source but reaches the lake now (a consumer that was down, a
    dead letter replayed) blocks older changes of its key for the whole window from now: tombstones age by lake
    time. Aged by source time it expired in the merge that wrote it, and a replay of the older insert brought
    the row back."""
    table = f"t{next(_names)}"
    month = 30 * 86_400_000

    def old(change: Change, offset: int) -> Batch:
        k, v = message(table, change)
        doc = json.loads(v)
        doc["payload"]["source"]["ts_ms"] -= month
        doc["payload"]["source"]["ts_us"] -= month * 1000
        out = Batch()
        event = decode(k, json.dumps(doc).encode(), KafkaCoordinates(f"cdc.{DB}.{table}", 0, offset))
        assert isinstance(event, ChangeEvent), event
        out.add(event, (k, json.dumps(doc).encode(), ()), time.monotonic())
        return out

    row = {"id": 1, "v": 1, "s": "a"}
    insert, delete = Change("c", row, 1000), Change("d", row, 2000)
    catalog = lake.open_catalog(model_lake)
    tid = TableId(DB, table)
    lander = Lander(model_lake, catalog)
    for i, change in enumerate([insert, delete, insert]):  # the insert again: a replay of an older change
        assert not lander.land(old(change, i)).halted
        merge_table(spark, CATALOG, DB, table, tombstone_days=7)
        if change is delete:
            tombs = catalog.load_table(lake.tombstones_name(tid)).scan(selected_fields=("id",)).to_arrow()
            assert tombs.column("id").to_pylist() == [1], "the tombstone of a late delete expired at once"
    rows = catalog.load_table(lake.base_name(tid)).scan(selected_fields=("id",)).to_arrow()
    assert rows.num_rows == 0, "a replayed older insert brought a deleted row back"
