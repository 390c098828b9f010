"""`cdc bootstrap`: a consistent chunked snapshot with a gap-free hand-off to streaming, and rebuilds
that readers never see empty or partial."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.bootstrap.snapshot import bootstrap
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.lake import catalog as lake
from cdc.source import connect, quote_ident
from cdc.verify import compare_table
from tests.e2e import type_zoo
from tests.e2e.faults_support import Writer, assert_oracle, cdc_process, create_tables, write_some

pytestmark = pytest.mark.e2e


def _preloaded(settings: Settings, db: str, table: str, rows: int) -> None:
    """A table whose rows predate capture: the DDL is in the binlog, the rows are not."""
    create_tables(settings, db, (table,))
    conn = connect(settings, database=db)
    try:
        cur = conn.cursor()
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(f"INSERT INTO {quote_ident(table)} SELECT seq, seq % 97, seq / 1000, CONCAT('row ', seq) "
                    f"FROM seq_1_to_{int(rows)}")
        conn.commit()
    finally:
        conn.close()


def test_two_million_rows_while_a_writer_keeps_changing_them(stack: Settings, spark: Any) -> None:
    db = f"bt_{uuid.uuid4().hex[:8]}"
    _preloaded(stack, db, "a", 2_000_000)
    with Writer(stack, db, seed=55, tables=("a",)):
        proc = cdc_process(["bootstrap", f"{db}.a", "--chunk-rows", "200000"])
        out = proc.communicate(timeout=1800)[0].decode(errors="replace")
    assert proc.returncode == 0, out[-3000:]
    summary = re.search(r"bootstrapped \S+: (\d+) rows in ([\d.]+) s \((\d+) rows/s\), peak RSS (\d+) MB", out)
    assert summary, out[-2000:]
    assert int(summary.group(1)) >= 1_999_000
    print(f"\nbootstrap of 2M rows: {summary.group(0)}")  # the closing note's numbers
    assert_oracle(stack, spark, db, ("a",))


class _GrowingWriter(Writer):
    """Inserts new rows and updates existing ones (never deletes) until stopped: the table only grows."""

    def __init__(self, settings: Settings, db: str, table: str, first_new_id: int, seed: int) -> None:
        super().__init__(settings, db, seed, (table,))
        self.table = table
        self.next_id = first_new_id
        self.statements = 0

    def _run(self) -> None:
        try:
            conn = connect(self.settings, database=self.db)
            try:
                cur = conn.cursor()
                t = quote_ident(self.table)
                while not self._stop.is_set():
                    for _ in range(self.rng.randint(1, 8)):
                        if self.rng.random() < 0.5:
                            cur.execute(f"INSERT INTO {t} VALUES (%s, 1, %s, 'new')",
                                        (self.next_id, Decimal(self.rng.randint(-10**6, 10**6)) / 1000))
                            self.next_id += 1
                        else:
                            cur.execute(f"UPDATE {t} SET n = n + 1, note = %s WHERE id = %s",
                                        (self.rng.choice([None, "x", "ü🙂"]), self.rng.randint(1, self.next_id - 1)))
                        self.statements += 1
                    conn.commit()
                    time.sleep(0.02)
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised on exit
            self.error = exc


def test_rebuild_while_other_tables_stream_and_a_reader_polls(stack: Settings, spark: Any) -> None:
    """A reader of `main` never sees the table shrink while it is rebuilt: it sees the old table, then the
    new one, never an empty or partial one. The rebuilt table's writer only inserts and updates, so the
    source never has fewer rows than the 60,000 it started with, and neither may any read of `main`."""
    db = f"rb_{uuid.uuid4().hex[:8]}"
    rows = 60_000
    _preloaded(stack, db, "a", rows)
    create_tables(stack, db + "_other")
    bootstrap(stack, TableId(db, "a"))
    assert_oracle(stack, spark, db, ("a",))
    seen: list[int] = []
    stop = threading.Event()
    reader_error: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                table = lake.open_catalog(stack).load_table(lake.base_name(TableId(db, "a")))
                seen.append(table.scan(selected_fields=("id",)).to_arrow().num_rows)
        except BaseException as exc:  # noqa: BLE001 - a failed read must fail the test, not end the polling quietly
            reader_error.append(exc)

    poller = threading.Thread(target=reader, daemon=True)
    with Writer(stack, db + "_other", seed=7), _GrowingWriter(stack, db, "a", rows + 1, seed=8) as growing:
        poller.start()
        time.sleep(1)
        report = bootstrap(stack, TableId(db, "a"), rebuild=True, chunk_rows=5_000)
        published = len(seen)
        deadline = time.monotonic() + 60
        while len(seen) < published + 2 and time.monotonic() < deadline and poller.is_alive():
            time.sleep(0.1)  # at least one whole read after the publish
        stop.set()
        poller.join(timeout=60)
    assert not reader_error, reader_error
    assert growing.statements > 0
    assert report.rebuilt
    assert report.chunks >= 10  # many chunk commits happened while the reader polled
    assert report.rows >= rows
    assert len(seen) >= 5
    assert min(seen) >= rows, f"a reader saw fewer rows than the table ever had: {sorted(set(seen))[:5]}"
    # nothing merges meanwhile: main holds the old table (60,000), then the rebuilt one, so no read is below an earlier one
    assert all(a <= b for a, b in zip(seen, seen[1:], strict=False)), sorted(set(seen))[:5]
    assert seen[-1] == report.rows, (seen[-3:], report.rows)  # the reader saw the rebuilt table too
    assert_oracle(stack, spark, db, ("a",))
    assert_oracle(stack, spark, db + "_other")


def test_both_type_mappings_agree_on_the_type_zoo(stack: Settings, spark: Any) -> None:
    """Bootstrap reads types from information_schema, streaming from Debezium: one schema, one value set."""
    db = f"bz_{uuid.uuid4().hex[:8]}"
    columns = tuple(c for c in type_zoo.COLUMNS if c != "id")
    conn = connect(stack)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        cur.execute(f"USE {quote_ident(db)}")
        cur.execute(type_zoo.ZOO_DDL)
        cur.execute("SET SESSION sql_log_bin = 0")
        rng = random.Random(9)
        for k in range(1, 301):
            values = type_zoo.random_values(rng, columns)
            cur.execute(f"INSERT INTO zoo (id, {', '.join(columns)}) VALUES ({k}, {', '.join(values[c] for c in columns)})")
        conn.commit()
    finally:
        conn.close()
    bootstrap(stack, TableId(db, "zoo"))
    catalog = lake.open_catalog(stack)
    schema_before = catalog.load_table(lake.base_name(TableId(db, "zoo"))).schema()
    assert compare_table(stack, catalog, TableId(db, "zoo")).equal  # bootstrap alone is exact
    conn = connect(stack, database=db)
    try:
        cur = conn.cursor()
        rng = random.Random(10)
        for k in range(1, 301, 3):
            values = type_zoo.random_values(rng, columns)
            cur.execute(f"UPDATE zoo SET {', '.join(f'{c} = {values[c]}' for c in columns)} WHERE id = {k}")
        cur.execute("DELETE FROM zoo WHERE id % 10 = 0")
        conn.commit()
    finally:
        conn.close()
    assert_oracle(stack, spark, db, ("zoo",))
    schema_after = lake.open_catalog(stack).load_table(lake.base_name(TableId(db, "zoo"))).schema()
    assert schema_after == schema_before  # streaming needed no schema change: the mappings agree


def test_bootstrap_refusals_exit_2(stack: Settings) -> None:
    db = f"br_{uuid.uuid4().hex[:8]}"
    create_tables(stack, db, ("a",))
    conn = connect(stack, database=db)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE nokey (x INT)")
        cur.execute("CREATE TABLE floatkey (f DOUBLE PRIMARY KEY, x INT)")
        cur.execute("CREATE TABLE clash (id INT PRIMARY KEY, `_Seq` INT)")
        conn.commit()
    finally:
        conn.close()
    cases = [
        ([f"{db}.nokey"], "has no primary key"),
        ([f"{db}.missing"], "does not exist"),
        ([f"{db}.a", "--rebuild"], "no lake table to rebuild"),
        (["not-a-table-name"], "expected DB.TABLE"),
        ([f"{db}.floatkey"], "the first key column 'f' is double: Iceberg cannot bucket it"),
        ([f"{db}.clash"], "collide with the lake's own column names"),
    ]
    for args, message in cases:
        proc = cdc_process(["bootstrap", *args])
        out = proc.communicate(timeout=120)[0].decode(errors="replace")
        assert proc.returncode == 2, (args, out[-1500:])
        assert message in out, (args, out[-1500:])
    bootstrap(stack, TableId(db, "a"))
    proc = cdc_process(["bootstrap", f"{db}.a"])
    out = proc.communicate(timeout=120)[0].decode(errors="replace")
    assert proc.returncode == 2
    assert "already in the lake: use --rebuild" in out


def test_a_table_outside_capture_is_added_without_snapshotting_the_others(stack: Settings, spark: Any) -> None:
    """Issue 5, item 2: with an include list, bootstrapping a table of another database extends the
    connector's include list (kept across `connectors apply`) and no other table is snapshotted again."""
    from cdc import connectors
    from cdc.ingest.capture import CaptureRules

    tag = uuid.uuid4().hex[:8]
    db_in, db_new = f"ci_{tag}", f"cn_{tag}"
    narrow = stack.model_copy(deep=True)
    narrow.connect.connector_name = f"narrow-{tag}"
    narrow.connect.topic_prefix = f"n{tag}"
    narrow.connect.database_server_id = 6000 + int(tag[:3], 16)
    narrow.connect.include_databases = [db_in]
    create_tables(narrow, db_in, ("a",))
    write_some(narrow, db_in, random.Random(11), 30, ("a",))  # rows the connector's first snapshot reads
    _preloaded(narrow, db_new, "a", 5_000)
    try:
        connectors.apply(narrow)
        connectors.wait_captured(narrow)
        topic_in = CaptureRules(narrow.connect.topic_prefix).topic(TableId(db_in, "a"))
        first_snapshot = _snapshot_reads(narrow, topic_in)
        assert first_snapshot > 0
        assert db_new not in lake.captured_namespaces(lake.open_catalog(narrow))
        report = bootstrap(narrow, TableId(db_new, "a"))
        assert report.rows == 5_000
        assert db_new in lake.captured_namespaces(lake.open_catalog(narrow))
        assert db_new in connectors.debezium_config(narrow, Path("/x"), lake.captured_namespaces(lake.open_catalog(narrow)))[
            "database.include.list"]
        with Writer(narrow, db_new, seed=12, tables=("a",)), Writer(narrow, db_in, seed=13, tables=("a",)):
            time.sleep(5)
        assert_oracle(narrow, spark, db_new, ("a",))
        assert_oracle(narrow, spark, db_in, ("a",))
        # the other database was not snapshotted again
        assert _snapshot_reads(narrow, topic_in) == first_snapshot
    finally:
        connectors.delete(narrow)


def _snapshot_reads(settings: Settings, topic: str) -> int:
    import json

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"count-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        reads = 0
        while messages := consumer.consume(5_000, timeout=3):
            for m in messages:
                if m.error() is None and m.value() and json.loads(m.value())["payload"]["op"] == "r":
                    reads += 1
        return reads
    finally:
        consumer.close()
