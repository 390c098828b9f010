"""The lake equals the source value for value: the type zoo, a 20,000-change workload over five
tables, DST edges under the server's non-UTC zone, zero dates, and tables without a key."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import pytest

from cdc import connectors
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest.capture import CaptureRules
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.source import connect, quote_ident
from cdc.verify import compare_table
from spark_jobs.merge import merge_table
from tests.e2e import type_zoo, workload

pytestmark = pytest.mark.e2e


def _sync(settings: Settings, spark: Any, db: str, tables: tuple[str, ...]) -> Any:
    connectors.wait_captured(settings, timeout=300)
    report = Ingestor(settings, lake.open_catalog(settings)).drain()
    for t in tables:
        merge_table(spark, settings.catalog.name, db, t)
    return report


def _assert_equal(settings: Settings, db: str, tables: tuple[str, ...]) -> None:
    catalog = lake.open_catalog(settings)
    for t in tables:
        result = compare_table(settings, catalog, TableId(db, t))
        assert result.source_rows > 0, f"{db}.{t} is empty: the workload did nothing"
        assert result.equal, (t, result.missing_in_lake[:2], result.extra_in_lake[:2], result.different[:2])


def _zoo_workload(settings: Settings, db: str, rng: random.Random, transactions: int) -> int:
    """Random inserts, updates, deletes and key changes of edge values in every column type."""
    columns = tuple(c for c in type_zoo.COLUMNS if c != "id")
    conn = connect(settings, database=db)
    keys: set[int] = set()
    changes = 0
    try:
        cur = conn.cursor()
        for _ in range(transactions):
            for _ in range(rng.randint(3, 15)):
                roll = rng.random()
                if roll < 0.35 or len(keys) < 3:
                    k = rng.randint(1, 50_000)
                    if k in keys:
                        continue
                    values = type_zoo.random_values(rng, columns)
                    cur.execute(f"INSERT INTO zoo (id, {', '.join(columns)}) VALUES ({k}, {', '.join(values[c] for c in columns)})")
                    keys.add(k)
                elif roll < 0.8:
                    k = rng.choice(sorted(keys))
                    picked = rng.sample(columns, rng.randint(1, 8))
                    values = type_zoo.random_values(rng, tuple(picked))
                    cur.execute(f"UPDATE zoo SET {', '.join(f'{c} = {values[c]}' for c in picked)} WHERE id = {k}")
                elif roll < 0.9:
                    k = rng.choice(sorted(keys))
                    if k + 100_000 in keys:
                        continue
                    cur.execute(f"UPDATE zoo SET id = {k + 100_000} WHERE id = {k}")
                    keys.discard(k)
                    keys.add(k + 100_000)
                else:
                    k = rng.choice(sorted(keys))
                    cur.execute(f"DELETE FROM zoo WHERE id = {k}")
                    keys.discard(k)
                changes += max(cur.rowcount, 0)
            conn.commit()
    finally:
        conn.close()
    return changes


def _create_zoo(settings: Settings, db: str) -> None:
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(db)}")
        cur.execute(f"USE {quote_ident(db)}")
        cur.execute(type_zoo.ZOO_DDL)
        conn.commit()
    finally:
        conn.close()


def test_type_zoo_equals_the_source_value_for_value(stack: Settings, spark: Any) -> None:
    db = f"zoo_{uuid.uuid4().hex[:8]}"
    _create_zoo(stack, db)
    rng = random.Random(2026)
    assert _zoo_workload(stack, db, rng, transactions=80) > 300
    conn = connect(stack, database=db)
    try:
        cur = conn.cursor()
        # DST edges written in the server's own zone (Europe/Berlin): the gap and the repeated hour
        cur.execute("SET time_zone = @@global.time_zone")
        cur.execute("SELECT @@session.time_zone")
        assert cur.fetchone()[0] == "Europe/Berlin"
        for k, local in enumerate(["2025-03-30 01:59:59.999999", "2025-03-30 03:00:00", "2025-10-26 02:30:00.25",
                                   "2025-10-26 03:00:00"], start=900_001):
            cur.execute("INSERT INTO zoo (id, ts6, dtm6) VALUES (%s, %s, %s)", (k, local, local))
        # zero dates, accepted by a permissive session: NULL in the lake, as the source reads them
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("INSERT INTO zoo (id, dt0, dtm, ts) VALUES (900100, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00')")
        conn.commit()
    finally:
        conn.close()
    _sync(stack, spark, db, ("zoo",))
    _assert_equal(stack, db, ("zoo",))
    base = lake.open_catalog(stack).load_table(lake.base_name(TableId(db, "zoo")))
    row = base.scan(row_filter="id == 900100", selected_fields=("ts", "dtm", "dt0")).to_arrow().to_pylist()
    assert row == [{"ts": None, "dtm": None, "dt0": None}]
    edge = base.scan(row_filter="id == 900002", selected_fields=("ts6",)).to_arrow().to_pylist()
    assert edge == [{"ts6": dt.datetime(2025, 3, 30, 1, 0, tzinfo=dt.UTC)}]  # 03:00 CEST is 01:00 UTC


def _tags_and_readings(settings: Settings, db: str, rng: random.Random, rounds: int) -> int:
    conn = connect(settings, database=db)
    changes = 0
    try:
        cur = conn.cursor()
        for r in range(rounds):
            tags = [(f"tag-{rng.randint(1, 3000)}-{rng.choice(['α', '🏷️', 'x'])}", rng.randint(0, 10**6), rng.choice([None, '{"a": 1}']))
                    for _ in range(40)]
            cur.executemany("INSERT INTO tags VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE hits = VALUES(hits), meta = VALUES(meta)", tags)
            changes += len(tags)
            at = dt.datetime(2025, 3, 30, 0, 0) + dt.timedelta(minutes=r)
            readings = [(f"s{s}", at + dt.timedelta(microseconds=rng.randint(0, 10**6)), rng.random()) for s in range(40)]
            cur.executemany("INSERT IGNORE INTO readings VALUES (%s, %s, %s)", readings)
            changes += cur.rowcount
            cur.execute("DELETE FROM readings WHERE sensor = %s ORDER BY at LIMIT 5", (f"s{rng.randint(0, 39)}",))
            changes += cur.rowcount
            cur.execute("DELETE FROM tags ORDER BY hits LIMIT 3")
            changes += cur.rowcount
            conn.commit()
    finally:
        conn.close()
    return changes


def test_twenty_thousand_changes_over_five_tables(stack: Settings, spark: Any) -> None:
    db = f"w5_{uuid.uuid4().hex[:8]}"
    workload.create_database(stack, db)
    _create_zoo(stack, db)
    conn = connect(stack, database=db)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE tags (tag VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, "
                    "hits BIGINT UNSIGNED NOT NULL, meta JSON NULL)")
        cur.execute("CREATE TABLE readings (sensor VARCHAR(16) NOT NULL, at DATETIME(6) NOT NULL, value DOUBLE NOT NULL, "
                    "PRIMARY KEY (sensor, at))")
        conn.commit()
    finally:
        conn.close()
    rng = random.Random(5)
    changes = workload.run(stack, db, seed=11, transactions=1200)
    changes += _zoo_workload(stack, db, rng, transactions=300)
    changes += _tags_and_readings(stack, db, rng, rounds=110)
    assert changes >= 20_000, changes
    tables = ("accounts", "ledger_lines", "zoo", "tags", "readings")
    report = _sync(stack, spark, db, tables)
    assert report.changes >= 20_000
    _assert_equal(stack, db, tables)


def test_a_table_without_a_primary_key_is_refused_into_the_dead_letter_table(stack: Settings, spark: Any) -> None:
    db = f"nopk_{uuid.uuid4().hex[:8]}"
    conn = connect(stack)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        cur.execute(f"CREATE TABLE {quote_ident(db)}.log (msg VARCHAR(20))")
        cur.execute(f"CREATE TABLE {quote_ident(db)}.ok (id INT PRIMARY KEY)")
        cur.execute(f"INSERT INTO {quote_ident(db)}.log VALUES ('a'), ('b')")
        cur.execute(f"INSERT INTO {quote_ident(db)}.ok VALUES (1)")
        conn.commit()
    finally:
        conn.close()
    names = CaptureRules(stack.connect.topic_prefix)
    connectors.wait_captured(stack)
    report = Ingestor(stack, lake.open_catalog(stack)).drain()
    assert report.dead_letters >= 2
    catalog = lake.open_catalog(stack)
    dead = catalog.load_table(("cdc_dlq", "events")).scan(row_filter=f"source_table == '{db}.log'").to_arrow().to_pylist()
    assert len(dead) == 2
    for row in dead:
        assert "has no primary key" in row["message"]
        assert row["topic"] == names.topic(TableId(db, "log"))
        assert row["value"]  # the raw message is kept whole
    assert not catalog.table_exists(lake.changelog_name(TableId(db, "log")))
    assert catalog.table_exists(lake.changelog_name(TableId(db, "ok")))
