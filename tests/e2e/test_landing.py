"""Issue 8 on the real stack: a fault between every two commits of a flush, one table halting alone,
data errors that are not retried, a table added while the consumer runs, unusual table names.

Every database here is named `a0_…` so its tables sort first in a flush (the fault points count
commits in table-name order, and other tests' leftovers may share the flush)."""

from __future__ import annotations

import base64
import json
import random
import signal
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cdc.cli import main
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest import dlq
from cdc.ingest.capture import CaptureRules
from cdc.ingest.commit import landed_offsets
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake, state
from cdc.source import connect, quote_ident
from cdc.verify import compare_table
from spark_jobs.merge import merge_table
from tests.e2e.faults_support import (
    Watched,
    assert_oracle,
    cdc_process,
    create_tables,
    execute,
    forget,
    wait_captured,
    write_some,
)

pytestmark = pytest.mark.e2e
ONE_FLUSH = {"CDC_INGEST__FLUSH_ROWS": "10000000", "CDC_INGEST__FLUSH_BYTES": str(2**30), "CDC_INGEST__FLUSH_SECONDS": "3600"}


def _db() -> str:
    return f"a0_{uuid.uuid4().hex[:8]}"


def _messages(settings: Settings, topic: str) -> dict[int, tuple[bytes | None, bytes | None]]:
    """Every message of partition 0 of `topic`: offset -> (key, value)."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"probe-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        out: dict[int, tuple[bytes | None, bytes | None]] = {}
        while len(out) < high - low:
            for m in consumer.consume(1000, timeout=5):
                if m.error() is None:
                    out[int(m.offset() or 0)] = (m.key(), m.value())
        return out
    finally:
        consumer.close()


def _produce(settings: Settings, topic: str, items: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer(settings.kafka.client_config())
    for key, value in items:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def _landed_offsets(settings: Settings, table: TableId) -> list[int]:
    catalog = lake.open_catalog(settings)
    if not catalog.table_exists(lake.changelog_name(table)):
        return []
    got = catalog.load_table(lake.changelog_name(table)).scan(selected_fields=("_kafka_offset",)).to_arrow()
    return [int(o) for o in got.column("_kafka_offset").to_pylist()]


def _dead_offsets(settings: Settings, topic: str) -> list[int]:
    return [int(str(r["offset"])) for r in dlq.rows(lake.open_catalog(settings)) if r["topic"] == topic]


def assert_every_offset_once(settings: Settings, tables: list[TableId]) -> None:
    """Every message of the tables' topics that is not a tombstone is in the changelog ∪ the DLQ, once."""
    rules = CaptureRules(settings.connect.topic_prefix)
    for topic in sorted({rules.topic(t) for t in tables}):
        messages = _messages(settings, topic)
        landed = [o for t in tables if rules.topic(t) == topic for o in _landed_offsets(settings, t)]
        landed += _dead_offsets(settings, topic)
        counts = Counter(landed)
        assert [o for o, n in counts.items() if n > 1] == [], f"{topic}: landed twice"
        expected = {o for o, (_, v) in messages.items() if v}
        assert set(counts) == expected, f"{topic}: missing {sorted(expected - set(counts))[:5]}, extra {sorted(set(counts) - expected)[:5]}"


# ---- a fault between every two commits of one flush -------------------------------------------------

WINDOWS = ["before-dead-letters", "after-dead-letters", "after-write", "after-table", "after-commit"]


@pytest.mark.parametrize("point", WINDOWS)
def test_a_fault_between_any_two_commits_loses_and_duplicates_nothing(stack: Settings, spark: Any, point: str) -> None:
    """Issue 8 defect 1: a flush of two tables and two undecodable messages, the consumer killed at each
    point between its commits; after a restart every offset is once in changelog ∪ dead letters."""
    db = _db()
    Ingestor(stack, lake.open_catalog(stack)).drain()  # what the suite left unlanded: the flush below is ours
    create_tables(stack, db, ("a", "b"))
    tables = [TableId(db, "a"), TableId(db, "b")]
    topic_a = CaptureRules(stack.connect.topic_prefix).topic(tables[0])
    write_some(stack, db, random.Random(1), 15, ("a", "b"))
    wait_captured(stack)
    _produce(stack, topic_a, [(None, b"{not json"), (b"{}", b'{"schema": 1, "payload": 2}')])
    write_some(stack, db, random.Random(2), 15, ("a", "b"))
    wait_captured(stack)
    bad = [o for o, (_, v) in _messages(stack, topic_a).items() if v in (b"{not json", b'{"schema": 1, "payload": 2}')]
    proc = cdc_process(["ingest", "--until-caught-up"], CDC_FAULT_POINT=point, **ONE_FLUSH)
    out = proc.communicate(timeout=600)[0].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    # the kill hit the window it names
    dead, in_a, in_b = _dead_offsets(stack, topic_a), _landed_offsets(stack, tables[0]), _landed_offsets(stack, tables[1])
    if point == "before-dead-letters":
        assert (dead, in_a, in_b) == ([], [], [])
        assert lake.open_catalog(stack).table_exists(lake.changelog_name(tables[0]))  # created and anchored first
    elif point in ("after-dead-letters", "after-write"):
        assert (sorted(dead), in_a, in_b) == (sorted(bad), [], [])
    elif point == "after-table":
        assert sorted(dead) == sorted(bad)
        assert in_a
        assert in_b == []
    else:
        assert sorted(dead) == sorted(bad)
        assert in_a
        assert in_b
    Ingestor(stack, lake.open_catalog(stack)).drain()
    assert_every_offset_once(stack, tables)
    assert_oracle(stack, spark, db, ("a", "b"))


# ---- one table's trouble halts that table alone -------------------------------------------------------


def _status(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["status"])
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


def test_a_table_that_cannot_land_halts_alone(stack: Settings, spark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 8 defects 2 and 3: a column named like a lake column, a truncate as a table's first event, a
    schema change Iceberg cannot take, and a value that does not fit its column. Only the tables concerned
    stop (halted, in the lake and in `cdc status`); every other table lands and equals its source."""
    db = _db()
    q = quote_ident(db)
    create_tables(stack, db, ("ok", "trunc", "narrowing"))
    execute(stack, f"CREATE TABLE {q}.clash (id INT PRIMARY KEY, `_op` VARCHAR(5), `_SEQ` INT)",
             f"ALTER TABLE {q}.narrowing MODIFY note VARCHAR(40) NULL", f"TRUNCATE TABLE {q}.trunc",
             f"INSERT INTO {q}.clash VALUES (1, 'x', 2)")
    write_some(stack, db, random.Random(3), 30, ("ok", "trunc", "narrowing"))
    wait_captured(stack)
    report = Ingestor(stack, lake.open_catalog(stack)).drain()
    clash = TableId(db, "clash")
    assert set(report.halted) >= {str(clash)}
    assert "collide with the lake's own column names" in report.halted[str(clash)]
    assert str(TableId(db, "trunc")) not in report.halted  # a truncate first does not stop the table
    assert _landed_offsets(stack, TableId(db, "trunc"))
    # a schema change the lake cannot take (string -> number), and a value that does not fit its column
    execute(stack, f"UPDATE {q}.narrowing SET note = '7'", f"ALTER TABLE {q}.narrowing MODIFY note INT NULL",
             f"INSERT INTO {q}.narrowing VALUES (5001, 1, 1.5, 8)")
    write_some(stack, db, random.Random(4), 20, ("ok",))
    wait_captured(stack)
    topic_ok = CaptureRules(stack.connect.topic_prefix).topic(TableId(db, "ok"))
    key, value = next((k, v) for _, (k, v) in sorted(_messages(stack, topic_ok).items(), reverse=True) if v)
    doc = json.loads(value or b"")
    image = doc["payload"]["after"] or doc["payload"]["before"]
    image["amount"] = base64.b64encode((10**15).to_bytes(8, "big", signed=True)).decode()  # 16 digits in DECIMAL(12,3)
    doc["payload"].update(op="c", after=image, before=None)
    _produce(stack, topic_ok, [(key, json.dumps(doc).encode())])
    report = Ingestor(stack, lake.open_catalog(stack)).drain()
    narrowing = TableId(db, "narrowing")
    assert "cannot take in place: column 'note' changed from string to int" in report.halted[str(narrowing)]
    misfit = [r for r in dlq.rows(lake.open_catalog(stack)) if r["topic"] == topic_ok]
    assert [r["error_class"] for r in misfit] == ["ValueDoesNotFit"]
    halted = state.halted_tables(lake.open_catalog(stack))
    assert {clash, narrowing} <= set(halted)
    assert halted[narrowing].remedy == f"cdc bootstrap {narrowing} --rebuild"  # takes the new type
    # the others land and merge; a restart keeps the halted ones halted and the others going
    write_some(stack, db, random.Random(5), 10, ("ok", "trunc"))
    wait_captured(stack)
    report = Ingestor(stack, lake.open_catalog(stack)).drain()
    assert {str(clash), str(narrowing)} <= set(report.halted)
    for t in ("ok", "trunc"):
        merge_table(spark, stack.catalog.name, db, t)
        result = compare_table(stack, lake.open_catalog(stack), TableId(db, t))
        assert result.equal, (t, result.missing_in_lake[:2], result.extra_in_lake[:2], result.different[:2])
    code, text = _status(capsys)
    assert code == 1
    assert f"halted: {clash}" in text
    assert f"halted: {narrowing}" in text
    assert f"remedy: rename the columns at the source, then run `cdc bootstrap {clash}`" in text
    assert f"remedy: cdc bootstrap {narrowing} --rebuild" in text
    forget(stack, [clash, narrowing])


# ---- a table added to capture while the consumer runs --------------------------------------------------


def test_a_table_added_to_capture_while_running_lands(stack: Settings) -> None:
    """Issue 8 defect 4: the consumer read its capture rules before `cdc bootstrap` added a database;
    that database's changes land, none is dead-lettered as outside the capture rules."""
    first, added = _db(), _db()
    create_tables(stack, first, ("a",))
    create_tables(stack, added, ("a",))
    wait_captured(stack)
    narrow = stack.model_copy(deep=True)
    narrow.connect.include_databases = [first]
    catalog = lake.open_catalog(narrow)
    running = Ingestor(narrow, catalog)  # its rules: `first` and the marker only
    assert not running.rules.captured(TableId(added, "a"))
    lake.mark_captured(catalog, added)  # what `cdc bootstrap added.a` does before extending the connector
    write_some(stack, added, random.Random(6), 10, ("a",))
    write_some(stack, first, random.Random(7), 10, ("a",))
    wait_captured(stack)
    report = running.drain(tables=[TableId(first, "a"), TableId(added, "a")])
    topic = CaptureRules(stack.connect.topic_prefix).topic(TableId(added, "a"))
    assert _dead_offsets(stack, topic) == []
    assert report.tables[str(TableId(added, "a"))].changes > 0  # landed by this consumer, not dead-lettered
    catalog.update_namespace_properties(added, removals={"cdc.capture"})


# ---- unusual names -----------------------------------------------------------------------------------


def test_unusual_table_names_land_or_are_refused_by_name(stack: Settings, spark: Any) -> None:
    """Issue 8 defect 7: `a b` and `a_b` share a topic, `größe 日本` is sanitised, `my.table` adds a topic
    part, a database with a dot cannot be an Iceberg namespace: each lands under its exact name or is
    halted with the reason; nothing is skipped silently."""
    db = _db()
    dotted = f"{db}.x"
    names = ["a b", "a_b", "größe 日本", "my.table"]  # MariaDB names take no 4-byte UTF-8
    q = quote_ident(db)
    execute(stack, f"CREATE DATABASE {q}", f"CREATE DATABASE {quote_ident(dotted)}",
             f"CREATE TABLE {quote_ident(dotted)}.t (id INT PRIMARY KEY, n INT)",
             f"INSERT INTO {quote_ident(dotted)}.t VALUES (1, 1)",
             *(f"CREATE TABLE {q}.{quote_ident(n)} (id INT PRIMARY KEY, n INT NOT NULL, note VARCHAR(20))" for n in names))
    rng = random.Random(8)
    for i in range(1, 60):
        name = quote_ident(rng.choice(names))
        execute(stack, f"INSERT INTO {q}.{name} VALUES ({i}, {i}, 'x') ON DUPLICATE KEY UPDATE n = n + 1",
                 f"DELETE FROM {q}.{name} WHERE id = {rng.randint(1, i)}")
    wait_captured(stack)
    report = Ingestor(stack, lake.open_catalog(stack)).drain()
    assert "nested namespace" in report.halted[str(TableId(dotted, "t"))]
    for n in names:
        table = TableId(db, n)
        assert _landed_offsets(stack, table), f"{table} was not landed"
        merge_table(spark, stack.catalog.name, db, n)
        result = compare_table(stack, lake.open_catalog(stack), table)
        assert result.equal, (n, result.missing_in_lake[:2], result.extra_in_lake[:2], result.different[:2])
    assert_every_offset_once(stack, [TableId(db, n) for n in names])
    forget(stack, [TableId(dotted, "t")])


# ---- the seam and the remedies: trimmed and recreated topics ------------------------------------------


def _trim(settings: Settings, topic: str, before: int) -> None:
    """What retention does: delete the messages of partition 0 below `before`."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka.client_config())
    for future in admin.delete_records([TopicPartition(topic, 0, before)], operation_timeout=30).values():
        future.result()


def _high(settings: Settings, topic: str) -> int:
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


def _equal(settings: Settings, spark: Any, table: TableId) -> None:
    merge_table(spark, settings.catalog.name, table.db, table.table)
    result = compare_table(settings, lake.open_catalog(settings), table)
    assert result.equal, (str(table), result.missing_in_lake[:2], result.extra_in_lake[:2], result.different[:2])


def test_messages_deleted_before_landing_halt_the_table_never_a_silent_gap(stack: Settings, spark: Any) -> None:
    """Issue 8 defect 5: a bootstrap records in the changelog the Kafka offsets of its snapshot; when
    retention deletes changes after it before they land, the table halts with the reason (never a silent
    start at the topic's new beginning), and `cdc bootstrap --rebuild` brings it back. A table never landed
    whose topic no longer starts at 0 halts too, instead of landing only what is left."""
    from cdc.bootstrap.snapshot import bootstrap

    db = _db()
    create_tables(stack, db, ("a", "fresh"))
    rules = CaptureRules(stack.connect.topic_prefix)
    a, fresh = TableId(db, "a"), TableId(db, "fresh")
    write_some(stack, db, random.Random(9), 20, ("a", "fresh"))
    wait_captured(stack)
    bootstrap(stack, a, chunk_rows=1000)
    anchored = _landed_offsets(stack, a)  # nothing landed yet, but the offsets are recorded
    assert anchored == []
    recorded = landed_offsets(lake.open_catalog(stack).load_table(lake.changelog_name(a)))
    assert recorded[rules.topic(a)][0] == _high(stack, rules.topic(a))
    write_some(stack, db, random.Random(10), 20, ("a", "fresh"))
    wait_captured(stack)
    for t in (a, fresh):
        _trim(stack, rules.topic(t), _high(stack, rules.topic(t)) - 2)
    report = Ingestor(stack, lake.open_catalog(stack)).drain()
    assert "deleted (retention) before they were landed" in report.halted[str(a)]
    assert "no longer start at offset 0" in report.halted[str(fresh)]
    assert _landed_offsets(stack, a) == []  # nothing of what is left was landed over the gap
    assert not lake.open_catalog(stack).table_exists(lake.changelog_name(fresh))
    # the remedies, while a consumer runs and holds both tables' partitions: rebuild the bootstrapped
    # table, bootstrap the fresh one; the running consumer resumes them (no restart)
    running = Watched(cdc_process(["ingest"], CDC_INGEST__FLUSH_SECONDS="0.5", CDC_KAFKA__GROUP_ID=f"g-{db}"))
    try:
        for t in (a, fresh):
            running.wait_for(lambda line, t=t: f"assigned {rules.topic(t)}[0], held" in line, 120)
        bootstrap(stack, a, rebuild=True, chunk_rows=1000)
        bootstrap(stack, fresh, chunk_rows=1000)
        assert not {a, fresh} & set(state.halted_tables(lake.open_catalog(stack)))
        write_some(stack, db, random.Random(11), 20, ("a", "fresh"))
        wait_captured(stack)
        deadline = time.monotonic() + 90
        while not (_landed_offsets(stack, a) and _landed_offsets(stack, fresh)) and time.monotonic() < deadline:
            time.sleep(1)
        assert running.proc.poll() is None  # the same process landed them
        assert _landed_offsets(stack, a)
        assert _landed_offsets(stack, fresh)
    finally:
        out = running.kill(signal.SIGTERM)
    assert running.proc.returncode == 0, out[-3000:]  # no table is halted any more
    for t in (a, fresh):
        assert f"{rules.topic(t)}[0]: its tables are streaming again, resuming at offset" in out, out[-3000:]
    for t in (a, fresh):
        _equal(stack, spark, t)


def _recreate(settings: Settings, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.kafka.client_config())
    admin.delete_topics([topic], operation_timeout=30)[topic].result()
    while topic in admin.list_topics(timeout=10).topics:
        pass
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()


def test_a_recreated_topic_halts_its_table_alone_and_a_rebuild_resumes_it(stack: Settings, spark: Any,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 8 defect 6 (RELIABILITY row 22): topics deleted and recreated (offsets reset). `a`'s new topic
    grows past the offset the lake recorded before the consumer starts (only the Kafka topic id tells the
    topics apart); `c`'s stays short, and its old topic had a dead letter far ahead. Both halt with the
    reason and the remedy, `b` goes on; `cdc bootstrap --rebuild` re-anchors in the new topics, streaming
    resumes, and a bad message in `c`'s new topic still reaches the dead-letter table."""
    db = _db()
    create_tables(stack, db, ("a", "b", "c"))
    a, b, c = TableId(db, "a"), TableId(db, "b"), TableId(db, "c")
    rules = CaptureRules(stack.connect.topic_prefix)
    write_some(stack, db, random.Random(12), 40, ("a", "b", "c"))
    wait_captured(stack)
    _produce(stack, rules.topic(c), [(None, b"garbage in the old topic")])
    Ingestor(stack, lake.open_catalog(stack)).drain()
    recorded_a = landed_offsets(lake.open_catalog(stack).load_table(lake.changelog_name(a)))[rules.topic(a)][0]
    old_dead_c = max(_dead_offsets(stack, rules.topic(c)))
    for t in (a, c):
        _recreate(stack, rules.topic(t))
    conn = connect(stack, database=db)
    try:
        cur = conn.cursor()
        for i in range(recorded_a + 20):  # the new topic of `a` grows past what was landed from the old one
            cur.execute("INSERT INTO a VALUES (%s, 1, NULL, 'new') ON DUPLICATE KEY UPDATE n = n + 1", (5000 + i % 50,))
            conn.commit()
    finally:
        conn.close()
    write_some(stack, db, random.Random(13), 3, ("b", "c"))
    wait_captured(stack)
    assert _high(stack, rules.topic(a)) > recorded_a
    proc = cdc_process(["ingest", "--until-caught-up"])
    out = proc.communicate(timeout=300)[0].decode(errors="replace")
    assert proc.returncode == 1, out[-3000:]
    assert f"halted: {a}: {rules.topic(a)}[0]: the topic was deleted and recreated (its Kafka topic id changed" in out
    assert f"halted: {c}: {rules.topic(c)}[0]: the topic was deleted and recreated" in out
    _equal(stack, spark, b)  # the other table landed in the same run
    code, text = _status(capsys)
    assert code == 1
    assert f"remedy: cdc bootstrap {a} --rebuild" in text
    for t in (a, c):
        rebuild = cdc_process(["bootstrap", str(t), "--rebuild", "--chunk-rows", "1000"])
        out = rebuild.communicate(timeout=600)[0].decode(errors="replace")
        assert rebuild.returncode == 0, out[-3000:]
    assert not {a, c} & set(state.halted_tables(lake.open_catalog(stack)))
    _produce(stack, rules.topic(c), [(None, b"garbage in the new topic")])
    new_dead_c = _high(stack, rules.topic(c)) - 1
    assert new_dead_c < old_dead_c  # below what the dead-letter table recorded for the old topic
    write_some(stack, db, random.Random(14), 10, ("a", "b", "c"))
    wait_captured(stack)
    report = Ingestor(stack, lake.open_catalog(stack)).drain()
    assert {str(a), str(c)} <= set(report.tables)  # streaming resumed in the new topics
    assert not {str(a), str(c)} & set(report.halted)
    assert new_dead_c in _dead_offsets(stack, rules.topic(c))
    for t in (a, b, c):
        _equal(stack, spark, t)


def test_a_bootstrap_on_a_shared_topic_skips_nothing_of_the_other_table(stack: Settings, spark: Any) -> None:
    """`x y` and `x_y` share a topic; bootstrapping `x y` before anything of the topic was landed must not
    anchor past `x_y`'s changes (the anchor is lowered to what `x_y` landed: nothing)."""
    from cdc.bootstrap.snapshot import bootstrap

    db = _db()
    q = quote_ident(db)
    execute(stack, f"CREATE DATABASE {q}",
             *(f"CREATE TABLE {q}.{quote_ident(n)} (id INT PRIMARY KEY, n INT NOT NULL)" for n in ("x y", "x_y")))
    for i in range(1, 40):
        execute(stack, f"INSERT INTO {q}.`x y` VALUES ({i}, {i})", f"INSERT INTO {q}.`x_y` VALUES ({i}, {i})")
    wait_captured(stack)
    bootstrap(stack, TableId(db, "x y"), chunk_rows=1000)
    topic = CaptureRules(stack.connect.topic_prefix).topic(TableId(db, "x y"))
    recorded = landed_offsets(lake.open_catalog(stack).load_table(lake.changelog_name(TableId(db, "x y"))))
    assert recorded[topic][0] == 0  # not the topic's end: `x_y` has landed nothing of it yet
    Ingestor(stack, lake.open_catalog(stack)).drain(tables=[TableId(db, "x y")])
    for n in ("x y", "x_y"):
        _equal(stack, spark, TableId(db, n))
