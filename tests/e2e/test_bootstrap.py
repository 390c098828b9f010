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
        cur.execute("CREATE TABLE floatkey (f DOUBLE PRIMARY KEY, x INT)")
        cur.execute("CREATE TABLE clash (id INT PRIMARY KEY, `_Seq` INT)")
        conn.commit()
    finally:
        conn.close()
    cases = [
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


# ---- the value contract (issue 10, item 5), bootstrapped ----------------------------------------------

_V_DDL = ("CREATE TABLE v (id INT NOT NULL PRIMARY KEY, b12 BIT(12) NULL, t1 TINYINT(1) NULL, t1u TINYINT(1) UNSIGNED NULL, "
          "x INTEGER(11) UNSIGNED NULL, r REAL NULL, st SET('red','green','blue') NULL)")
_V_ROWS = ("(1, 935, -1, 255, 4294967295, 2.36, 'blue,red'), (2, b'111111111111', 127, 0, 0, -3.4e38, "
           "'green,red'), (3, 0, -128, 128, 2147483648, 0.1, '')")
_V_EXPECTED = {
    1: {"b12": 935, "t1": -1, "t1u": 255, "x": 4294967295, "r": 2.36, "st": "red,blue"},
    2: {"b12": 4095, "t1": 127, "t1u": 0, "x": 0, "r": -3.4e38, "st": "red,green"},
    3: {"b12": 0, "t1": -128, "t1u": 128, "x": 2147483648, "r": 0.1, "st": ""},
}


def _sync_only(settings: Settings, spark: Any, db: str, tables: tuple[str, ...]) -> None:
    """Drain this test's topics only (other tests share Kafka), then merge."""
    from cdc import connectors
    from cdc.ingest.consumer import Ingestor
    from spark_jobs.merge import merge_table

    connectors.wait_captured(settings, timeout=300)
    Ingestor(settings, lake.open_catalog(settings)).drain(tables=[TableId(db, t) for t in tables])
    for t in tables:
        merge_table(spark, settings.catalog.name, db, t)


def _rows(settings: Settings, table: TableId, columns: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    base = lake.open_catalog(settings).load_table(lake.base_name(table))
    return {r["id"]: {c: r[c] for c in columns} for r in base.scan(selected_fields=("id", *columns)).to_arrow().to_pylist()}


def test_the_value_contract_when_bootstrapped(stack: Settings, spark: Any) -> None:
    """The rows the streamed test writes, bootstrapped: the same lake values, `cdc check` equal, and the rows
    streamed afterwards land in the same schema with the same values."""
    db = f"vc_vb_{uuid.uuid4().hex[:8]}"
    conn = connect(stack)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        cur.execute(f"USE {quote_ident(db)}")
        cur.execute(_V_DDL)
        cur.execute(type_zoo.ZERO_DDL)
        cur.execute("SET SESSION sql_log_bin = 0")  # rows only the bootstrap sees
        cur.execute(f"INSERT INTO v VALUES {_V_ROWS}")
        type_zoo.insert_zero_rows(cur)
        conn.commit()
    finally:
        conn.close()
    catalog = lake.open_catalog(stack)
    for t in ("v", "zd"):
        bootstrap(stack, TableId(db, t))
        result = compare_table(stack, catalog, TableId(db, t))
        assert result.equal, (t, result.missing_in_lake[:2], result.extra_in_lake[:2], result.different[:2])
    columns = ("b12", "t1", "t1u", "x", "r", "st")
    assert _rows(stack, TableId(db, "v"), columns) == _V_EXPECTED
    assert _rows(stack, TableId(db, "zd"), type_zoo.ZERO_COLUMNS) == type_zoo.expected_zero_rows()
    schemas = {t: catalog.load_table(lake.base_name(TableId(db, t))).schema() for t in ("v", "zd")}
    # the same rows again, streamed (ids + 100): same schema, same values
    conn = connect(stack, database=db)
    try:
        cur = conn.cursor()
        cur.execute(f"INSERT INTO v VALUES {_V_ROWS.replace('(1,', '(101,').replace('(2,', '(102,').replace('(3,', '(103,')}")
        type_zoo.insert_zero_rows(cur, offset=100)
        conn.commit()
    finally:
        conn.close()
    _sync_only(stack, spark, db, ("v", "zd"))
    catalog = lake.open_catalog(stack)
    for t in ("v", "zd"):
        result = compare_table(stack, catalog, TableId(db, t))
        assert result.equal, (t, result.missing_in_lake[:2], result.extra_in_lake[:2], result.different[:2])
        assert catalog.load_table(lake.base_name(TableId(db, t))).schema() == schemas[t]  # the mappings agree
    streamed_v = {k - 100: v for k, v in _rows(stack, TableId(db, "v"), columns).items() if k > 100}
    assert streamed_v == _V_EXPECTED
    streamed_zd = {k - 100: v for k, v in _rows(stack, TableId(db, "zd"), type_zoo.ZERO_COLUMNS).items() if k > 100}
    assert streamed_zd == type_zoo.expected_zero_rows()


def test_a_zero_date_key_and_a_boolean_other_than_0_or_1_are_refused(stack: Settings, spark: Any) -> None:
    """A zero date in a key column: the bootstrap refuses the table (streaming cannot tell it from the epoch).
    A TINYINT(1) in tables.<t>.booleans: the bootstrap refuses a value other than 0/1, lands 0/1 as booleans,
    and a streamed 2 goes to the dead-letter table."""
    from cdc import connectors
    from cdc.config import TableOverride
    from cdc.errors import ConfigError
    from cdc.ingest import dlq
    from cdc.ingest.capture import CaptureRules
    from cdc.ingest.consumer import Ingestor
    from spark_jobs.merge import merge_table

    db = f"vc_vr_{uuid.uuid4().hex[:8]}"
    conn = connect(stack)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        cur.execute(f"USE {quote_ident(db)}")
        cur.execute("CREATE TABLE zk (d DATE NOT NULL PRIMARY KEY, v INT)")
        cur.execute("CREATE TABLE bo (id INT NOT NULL PRIMARY KEY, f TINYINT(1) NULL)")
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("INSERT INTO zk VALUES ('0000-00-00', 1), ('2024-01-01', 2)")
        cur.execute("INSERT INTO bo VALUES (1, 0), (2, 1), (3, -1)")
        conn.commit()
        with pytest.raises(ConfigError, match=r"1 rows have a zero date in the key columns \['d'\]"):
            bootstrap(stack, TableId(db, "zk"))
        flagged = stack.model_copy(deep=True)
        flagged.tables[f"{db}.bo"] = TableOverride.model_validate({"booleans": ["f"]})
        with pytest.raises(ConfigError, match=r"1 rows hold values other than 0/1 \(from -1 to -1\)"):
            bootstrap(flagged, TableId(db, "bo"))
        cur.execute("DELETE FROM bo WHERE id = 3")
        conn.commit()
        bootstrap(flagged, TableId(db, "bo"))
        cur.execute("SET SESSION sql_log_bin = 1")
        cur.execute("INSERT INTO bo VALUES (4, 1), (5, 2)")
        conn.commit()
    finally:
        conn.close()
    connectors.wait_captured(flagged, timeout=300)
    Ingestor(flagged, lake.open_catalog(flagged)).drain(tables=[TableId(db, "bo")])
    merge_table(spark, flagged.catalog.name, db, "bo")
    assert _rows(flagged, TableId(db, "bo"), ("f",)) == {1: {"f": False}, 2: {"f": True}, 4: {"f": True}}
    topic = CaptureRules(flagged.connect.topic_prefix).topic(TableId(db, "bo"))
    dead = [r for r in dlq.rows(lake.open_catalog(flagged)) if r["topic"] == topic]
    assert len(dead) == 1
    assert "holds 2, not 0 or 1" in str(dead[0]["message"])
