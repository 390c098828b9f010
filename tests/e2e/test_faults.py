"""The fault matrix (RELIABILITY.md rows 1-6, 8, 18, 20, 22) on real processes, each ending in the oracle:
source == base row for row, no change landed twice, recorded offsets never go backwards."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from pyiceberg.table import Transaction

from cdc.config import Settings
from cdc.errors import ServiceError
from cdc.events.model import TableId
from cdc.ingest import dlq
from cdc.ingest.capture import CaptureRules
from cdc.ingest.commit import landed_offsets
from cdc.ingest.consumer import Ingestor
from cdc.ingest.replay import replay
from cdc.lake import catalog as lake
from cdc.source import connect, quote_ident
from cdc.stack import services
from cdc.stack.process import alive
from spark_jobs.merge import merge_table
from tests.e2e.faults_support import (
    TABLES,
    Watched,
    Writer,
    assert_oracle,
    cdc_process,
    create_tables,
    kill,
    live_group_members,
    wait_captured,
    write_some,
)

pytestmark = pytest.mark.e2e
FAST_FLUSH = {"CDC_INGEST__FLUSH_SECONDS": "0.3", "CDC_INGEST__FLUSH_ROWS": "40"}


def _db() -> str:
    return f"f_{uuid.uuid4().hex[:8]}"


def _snapshots(settings: Settings, table: TableId) -> list[int]:
    """The changelog's snapshots that added rows (a new table's anchor commit adds none)."""
    catalog = lake.open_catalog(settings)
    if not catalog.table_exists(lake.changelog_name(table)):
        return []
    return [s.snapshot_id for s in lake.ancestors(catalog.load_table(lake.changelog_name(table)))
            if s.summary is not None and int(s.summary.additional_properties.get("added-records", "0")) > 0]


@pytest.mark.parametrize(("point", "commits"), [("after-write", False), ("after-commit", True)])
def test_consumer_killed_around_the_catalog_commit(stack: Settings, spark: Any, point: str, commits: bool) -> None:
    """Rows 1 and 2: SIGKILL after the Parquet write (before the commit) and after the commit (before Kafka)."""
    db = _db()
    create_tables(stack, db)
    write_some(stack, db, random.Random(1), 40)
    wait_captured(stack, db)
    before = _snapshots(stack, TableId(db, "a"))
    proc = cdc_process(["ingest", "--until-caught-up"], CDC_FAULT_POINT=point)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == -signal.SIGKILL, out.decode(errors="replace")[-2000:]
    after = _snapshots(stack, TableId(db, "a"))
    assert (after != before) == commits  # the first table was committed, or nothing was
    assert_oracle(stack, spark, db)


def test_commit_that_raises_although_it_succeeded_is_reconciled(stack: Settings, spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row 3: the catalog commit succeeds, then reports a failure; the consumer settles it from the table."""
    db = _db()
    create_tables(stack, db)
    write_some(stack, db, random.Random(3), 30)
    wait_captured(stack, db)
    original = Transaction.commit_transaction
    lies = {"left": 2}

    def commit_then_fail(self: Transaction) -> Any:
        result = original(self)
        if lies["left"] > 0 and db in str(self._table.name()):  # only this test's tables
            lies["left"] -= 1
            raise OSError("connection reset by peer (after the commit went through)")
        return result

    monkeypatch.setattr(Transaction, "commit_transaction", commit_then_fail)
    report = Ingestor(stack, lake.open_catalog(stack)).drain()
    assert lies["left"] == 0
    assert report.changes > 0
    monkeypatch.undo()
    assert_oracle(stack, spark, db)


def test_sigkill_at_twenty_random_moments(stack: Settings, spark: Any) -> None:
    """Issue 4: kill -9 the consumer 20 times during a continuous workload, restarting it each time. Every
    kill hits a consumer that holds this test's partitions and has landed a commit of this test's tables
    since it started: it dies at a random moment shortly after such a commit, landing the next flush or
    about to. Its own group and a 6 s session: a dead member blocks the next assignment only that long."""
    db = _db()
    create_tables(stack, db)
    rng = random.Random(20)
    env = {**FAST_FLUSH, "CDC_INGEST__SESSION_TIMEOUT_MS": "6000", "CDC_KAFKA__GROUP_ID": f"g-{db}"}
    topics = [f"{stack.connect.topic_prefix}.{db}.{t}" for t in TABLES]
    kills: list[tuple[float, float, str]] = []  # per kill: s from start to assignment, s from the landing to the kill, the line
    with Writer(stack, db, seed=21):
        for _ in range(20):
            started = time.monotonic()
            consumer = Watched(cdc_process(["ingest"], **env))
            try:
                assigned_at = max(consumer.wait_for(_assigned(topic), timeout=60)[0] for topic in topics)
                landed_at, landed = consumer.wait_for(_landed(db), timeout=60)
                time.sleep(rng.uniform(0.0, 1.0))
                alive = consumer.proc.poll() is None
                killed_at = time.monotonic()
            finally:
                out = consumer.kill()
            assert alive, out[-3000:]
            assert consumer.proc.returncode == -signal.SIGKILL, out[-3000:]
            assert landed_at >= assigned_at, out[-3000:]
            assert killed_at - landed_at < 1.5, (landed, out[-3000:])  # shortly after a commit: landing, or about to
            kills.append((assigned_at - started, killed_at - landed_at, landed))
    print("\n".join(f"assigned after {a:4.1f} s, killed {k:4.2f} s after: {line}" for a, k, line in kills))
    assert len(kills) == 20
    assert_oracle(stack, spark, db)


def _assigned(topic: str) -> Any:
    return lambda line: f"assigned {topic}[" in line and "starting at offset" in line


def _landed(db: str) -> Any:
    """A commit of one of the test's tables: `<db>.<table>: landed N changes, up to <topic>[<p>]@<offset>`."""
    return lambda line: f" {db}." in line and ": landed " in line and " changes, up to " in line


def test_two_consumers_in_one_group_one_killed(stack: Settings, spark: Any) -> None:
    """Two consumers share the topics; one dies with SIGKILL; the other takes its partitions over."""
    db = _db()
    tables = ("a", "b", "c", "d")
    create_tables(stack, db, tables)
    env = {**FAST_FLUSH, "CDC_INGEST__SESSION_TIMEOUT_MS": "6000", "CDC_KAFKA__GROUP_ID": f"g-{db}"}
    with Writer(stack, db, seed=5, tables=tables):
        first = cdc_process(["ingest"], **env)
        second = cdc_process(["ingest"], **env)
        time.sleep(8)
        kill(first)
        time.sleep(12)  # the session times out and the survivor is assigned everything
    wait_captured(stack, db, tables)
    time.sleep(3)
    out = kill(second, signal.SIGTERM)  # SIGTERM: flush, commit, exit 0
    assert second.returncode == 0, out.decode(errors="replace")[-2000:]
    assert_oracle(stack, spark, db, tables)


def test_broker_killed_and_restarted(stack: Settings, spark: Any) -> None:
    """Row 6: kill -9 the Kafka broker under load, start it again; nothing is lost."""
    db = _db()
    create_tables(stack, db)
    consumer = cdc_process(["ingest"], **FAST_FLUSH)
    with Writer(stack, db, seed=6):
        time.sleep(4)
        broker = next(s for s in services.status(stack) if s.name == "kafka")
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGKILL)
        while alive(broker.pid):
            time.sleep(0.1)
        time.sleep(3)
        assert services.up(stack) == ["kafka"]
        time.sleep(6)
    wait_captured(stack, db)
    out = kill(consumer, signal.SIGTERM)
    assert consumer.returncode == 0, out.decode(errors="replace")[-3000:]
    assert_oracle(stack, spark, db)


def test_connect_killed_during_a_100k_row_transaction(stack: Settings, spark: Any) -> None:
    """Row 5: kill -9 the Connect worker while Debezium streams one 100,000-row transaction."""
    db = _db()
    create_tables(stack, db, ("a",))
    conn = connect(stack, database=db)
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO a SELECT seq, seq * 7, seq / 1000, NULL FROM seq_1_to_100000")
        conn.commit()
    finally:
        conn.close()
    time.sleep(1.5)
    worker = next(s for s in services.status(stack) if s.name == "connect")
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    while alive(worker.pid):
        time.sleep(0.1)
    assert services.up(stack) == ["connect"]
    assert_oracle(stack, spark, db, ("a",))
    catalog = lake.open_catalog(stack)
    rows = catalog.load_table(lake.base_name(TableId(db, "a"))).scan(selected_fields=("id",)).to_arrow().num_rows
    assert rows == 100_000


@pytest.mark.parametrize("point", ["merge-after-tombstones", "merge-in-merge", "merge-after-floor"])
def test_spark_driver_killed_mid_merge_then_rerun(stack: Settings, spark: Any, point: str) -> None:
    """Row 8: kill -9 `cdc merge` (its process group: driver and Spark JVM) at a named fault point of the
    merge job, then re-run the merge. `merge-after-tombstones`: the tombstones committed on their audit branch,
    the base MERGE not started. `merge-in-merge`: while a Spark job of the base MERGE runs. `merge-after-floor`:
    the base commit on the audit branch recorded a TRUNCATE's floor and deleted the rows below it, nothing is
    published. Each time `main` of the base and of the tombstones is unchanged after the kill (bookkeeping never
    ahead of the base), and the re-run publishes once (one commit with its bookkeeping) and makes source == base."""
    from cdc.lake.contract import TRUNCATED_BEFORE

    db = _db()
    table = TableId(db, "a")
    create_tables(stack, db, ("a",))
    write_some(stack, db, random.Random(8), 120, ("a",))
    wait_captured(stack, db, ("a",))
    Ingestor(stack, lake.open_catalog(stack)).drain()
    merge_table(spark, stack.catalog.name, db, "a")  # the base holds rows before the run that is killed
    if point == "merge-after-floor":
        _truncate(stack, db, "a")
    write_some(stack, db, random.Random(9), 60, ("a",))
    wait_captured(stack, db, ("a",))
    Ingestor(stack, lake.open_catalog(stack)).drain()
    before = _snapshot_of(stack, lake.base_name(table))
    tombstones_before = _snapshot_of(stack, lake.tombstones_name(table))
    assert before is not None
    merge = cdc_process(["merge", f"{db}.a"], CDC_FAULT_POINT=point)
    out = merge.communicate(timeout=600)[0].decode(errors="replace")  # EOF: the JVM's end of the pipe closed too
    assert merge.returncode == -signal.SIGKILL, out[-3000:]
    _assert_group_gone(merge.pid)
    fault = out.index(f"fault point {point}: SIGKILL")
    print("\n".join(line for line in out.splitlines() if f"merge {db}.a:" in line or "fault point" in line))
    started = out.find(f"merge {db}.a: MERGE started")
    if point == "merge-after-tombstones":
        assert started == -1, out[-3000:]
    else:
        assert -1 < started < fault, out[-3000:]
    if point == "merge-in-merge":
        assert "of the MERGE run (not committed)" in out[fault:], out[-3000:]
    catalog = lake.open_catalog(stack)
    base = catalog.load_table(lake.base_name(table))
    branch = _audit_branch(base)
    if point == "merge-after-floor":
        assert -1 < out.find(f"merge {db}.a: truncate floor recorded at _seq") < fault, out[-3000:]
        # the window: the branch's head records the floor and holds no row below it; main has neither
        head = base.snapshot_by_name(branch)
        assert head is not None
        assert head.summary is not None
        floor = int(head.summary.additional_properties[TRUNCATED_BEFORE])
        assert TRUNCATED_BEFORE not in base.properties
        assert any(s < floor for s in _seqs(base)), "no row below the floor on main: the kill missed the window"
    else:  # the killed run committed its tombstones (the slice has deletes) to their audit branch only
        tombstones = catalog.load_table(lake.tombstones_name(table))
        head = tombstones.snapshot_by_name(branch)
        assert head is not None
        assert head.snapshot_id != tombstones_before
    assert _snapshot_of(stack, lake.tombstones_name(table)) == tombstones_before  # bookkeeping not ahead of the base
    assert _snapshot_of(stack, lake.base_name(table)) == before  # main unchanged: no partial publish
    assert_oracle(stack, spark, db, ("a",))  # the re-run (in this process) folds everything in, once
    base = lake.open_catalog(stack).load_table(lake.base_name(table))
    published = list(itertools.takewhile(lambda snap: snap.snapshot_id != before, lake.ancestors(base)))
    assert len(published) == 1, [snap.summary for snap in published]
    assert lake.MERGED_UPTO in published[0].summary.additional_properties
    assert [r for r in base.refs() if r != "main"] == []  # the killed run's branches are gone
    if point == "merge-after-floor":
        assert published[0].summary.additional_properties[TRUNCATED_BEFORE] == str(floor)
        assert all(s >= floor for s in _seqs(base))


def test_merge_killed_between_the_base_publish_and_the_tombstones_publish(stack: Settings, spark: Any) -> None:
    """`merge-after-publish`: the base's main is fast-forwarded to the audit branch, its tombstones' main is not.
    The next run publishes the leftover tombstones branch before anything else (its base reached main), and the
    lake ends equal to the source with the deletes' tombstones in place."""
    db = _db()
    table = TableId(db, "a")
    create_tables(stack, db, ("a",))
    write_some(stack, db, random.Random(30), 80, ("a",))
    wait_captured(stack, db, ("a",))
    Ingestor(stack, lake.open_catalog(stack)).drain()
    merge_table(spark, stack.catalog.name, db, "a")
    write_some(stack, db, random.Random(31), 60, ("a",))
    wait_captured(stack, db, ("a",))
    Ingestor(stack, lake.open_catalog(stack)).drain()
    base_before = _snapshot_of(stack, lake.base_name(table))
    tombstones_before = _snapshot_of(stack, lake.tombstones_name(table))
    merge = cdc_process(["merge", f"{db}.a"], CDC_FAULT_POINT="merge-after-publish")
    out = merge.communicate(timeout=600)[0].decode(errors="replace")
    assert merge.returncode == -signal.SIGKILL, out[-3000:]
    _assert_group_gone(merge.pid)
    catalog = lake.open_catalog(stack)
    base = catalog.load_table(lake.base_name(table))
    tombstones = catalog.load_table(lake.tombstones_name(table))
    branch = _audit_branch(base)
    head = tombstones.snapshot_by_name(branch)
    # the window: the base is published (main is the branch's head), its tombstones are not
    assert _snapshot_of(stack, lake.base_name(table)) != base_before
    assert base.current_snapshot().snapshot_id == base.snapshot_by_name(branch).snapshot_id
    assert _snapshot_of(stack, lake.tombstones_name(table)) == tombstones_before
    assert head is not None
    assert head.snapshot_id != tombstones_before
    merge_table(spark, stack.catalog.name, db, "a")  # nothing new to merge: it only repairs
    tombstones = lake.open_catalog(stack).load_table(lake.tombstones_name(table))
    assert tombstones.current_snapshot().snapshot_id == head.snapshot_id
    assert [r for r in tombstones.refs() if r != "main"] == []
    assert [r for r in lake.open_catalog(stack).load_table(lake.base_name(table)).refs() if r != "main"] == []
    assert_oracle(stack, spark, db, ("a",))


def _audit_branch(table: Any) -> str:
    branches = [name for name in table.refs() if name.startswith("audit_")]
    assert len(branches) == 1, branches
    return branches[0]


def _truncate(settings: Settings, db: str, table: str) -> None:
    conn = connect(settings, database=db)
    try:
        conn.cursor().execute(f"TRUNCATE TABLE {quote_ident(table)}")
        conn.commit()
    finally:
        conn.close()


def _snapshot_of(settings: Settings, name: tuple[str, str]) -> int | None:
    snapshot = lake.open_catalog(settings).load_table(name).current_snapshot()
    return snapshot.snapshot_id if snapshot is not None else None


def _seqs(base: Any) -> list[int]:
    return [int(s) for s in base.scan(selected_fields=("_seq",)).to_arrow().column("_seq").to_pylist()]


def _assert_group_gone(pgid: int) -> None:
    """Nothing of the killed process group (the Python driver, the Spark JVM) is left running."""
    deadline = time.monotonic() + 10
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_group_members(pgid) == [], f"process group {pgid} survived the kill"


# ---- bad input ----------------------------------------------------------------------------------


def _produce(settings: Settings, topic: str, items: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({**settings.kafka.client_config(), "message.max.bytes": 16 * 1024 * 1024})
    for key, value in items:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def _last_message(settings: Settings, topic: str) -> tuple[bytes, bytes]:
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"probe-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        for back in range(1, high + 1):
            consumer.assign([TopicPartition(topic, 0, high - back)])
            msg = consumer.poll(10)
            if msg is not None and msg.value():
                return msg.key(), msg.value()
    finally:
        consumer.close()
    raise AssertionError(f"no message in {topic}")


def test_bad_messages_go_to_the_dead_letter_table_and_replay(stack: Settings, spark: Any) -> None:
    """Row 18 and friends: every bad message lands in cdc_dlq.events with its coordinates and reason,
    the valid messages around it are landed, and `dlq replay` lands what a fix makes decodable."""
    db = _db()
    create_tables(stack, db, ("a",))
    names = CaptureRules(stack.connect.topic_prefix)
    topic = names.topic(TableId(db, "a"))
    write_some(stack, db, random.Random(18), 20, ("a",))
    wait_captured(stack, db, ("a",))
    key, value = _last_message(stack, topic)
    doc = json.loads(value)
    doc["payload"]["op"] = "x"
    unknown_op = json.dumps(doc).encode()
    doc["payload"]["op"] = "c"
    doc["payload"]["after"] = doc["payload"]["after"] or doc["payload"]["before"]
    doc["payload"]["before"] = None
    doc["payload"]["after"]["note"] = "y" * 30  # valid, but larger than the limit set below
    doc["payload"]["source"]["pos"] = 10**12  # ranks after every real change, like a late re-send
    oversized = json.dumps(doc).encode() + b" " * 70_000
    outside_db = f"{db}_other"
    bad = [(key, b"{not json"), (key, b'{"schema": null, "payload": {"a": 1}}'), (key, unknown_op), (key, oversized)]
    _produce(stack, topic, bad)
    outside = json.loads(value)
    outside["payload"]["source"]["db"] = outside_db  # a change of a table outside the capture rules
    # ...and, on the same topic, a change whose source block names a captured table: misrouted
    _produce(stack, names.topic(TableId(outside_db, "a")), [(key, json.dumps(outside).encode()), (key, value)])
    write_some(stack, db, random.Random(19), 20, ("a",))  # valid messages after the bad ones
    narrow = stack.model_copy(deep=True)
    narrow.connect.include_databases = [db]
    narrow.ingest.max_message_bytes = 64 * 1024
    wait_captured(narrow, db, ("a",))
    # its own topics only: with the narrowed rules, other tests' topics would all be outside them
    report = Ingestor(narrow, lake.open_catalog(narrow)).drain(tables=[TableId(db, "a"), TableId(outside_db, "a")])
    assert report.dead_letters >= 5
    rows = [r for r in dlq.rows(lake.open_catalog(narrow)) if str(r["topic"]).startswith(f"{stack.connect.topic_prefix}.{db}")]
    reasons = {r["error_class"]: r for r in rows}
    assert "not valid JSON" in str(next(r for r in rows if r["error_class"] == "DecodeError" and "JSON" in str(r["message"]))["message"])
    assert any("not a Connect JSON envelope" in str(r["message"]) or "payload has no source" in str(r["message"]) for r in rows)
    assert any("unknown op code 'x'" in str(r["message"]) for r in rows)
    assert "MessageTooLarge" in reasons
    assert "exceeds ingest.max_message_bytes" in str(reasons["MessageTooLarge"]["message"])
    assert "OutsideCaptureRules" in reasons
    assert reasons["WrongTopic"]["message"] == f"a change of {db}.a on topic {names.topic(TableId(outside_db, 'a'))} (expected {topic})"
    for r in rows:
        assert r["partition"] == 0
        assert isinstance(r["offset"], int)
    # the valid messages on the same partition, before and after the bad ones, are all landed
    merge_table(spark, narrow.catalog.name, db, "a")
    from cdc.verify import compare_table

    assert compare_table(narrow, lake.open_catalog(narrow), TableId(db, "a")).equal
    # a fix (a larger limit) makes the oversized one decodable: replay lands it, the rest stay
    narrow.ingest.max_message_bytes = 1024 * 1024
    result = replay(narrow, lake.open_catalog(narrow))
    assert result.landed == 1
    assert result.still_failing >= 4
    left = [r for r in dlq.rows(lake.open_catalog(narrow)) if r["error_class"] == "MessageTooLarge"]
    assert [r for r in left if str(r["topic"]) == topic] == []


def test_error_rate_threshold_stops_the_consumer(stack: Settings) -> None:
    db = _db()
    create_tables(stack, db, ("a",))
    topic = CaptureRules(stack.connect.topic_prefix).topic(TableId(db, "a"))
    _produce(stack, topic, [(None, b"garbage %d" % i) for i in range(30)])
    strict = stack.model_copy(deep=True)
    strict.connect.include_databases = [db]
    strict.ingest.min_dead_letters = 10
    with pytest.raises(ServiceError, match=r"30 of 30 messages could not be decoded .* something larger is wrong"):
        Ingestor(strict, lake.open_catalog(strict)).drain(tables=[TableId(db, "a")])
    assert not any(str(r["topic"]) == topic for r in dlq.rows(lake.open_catalog(strict)))


def test_duplicate_redelivery_changes_nothing(stack: Settings, spark: Any) -> None:
    """Row 20: a range of messages produced again (as a Connect restart would) leaves the base unchanged."""
    db = _db()
    create_tables(stack, db, ("a",))
    write_some(stack, db, random.Random(20), 60, ("a",))
    wait_captured(stack, db, ("a",))
    assert_oracle(stack, spark, db, ("a",))
    catalog = lake.open_catalog(stack)
    before = catalog.load_table(lake.base_name(TableId(db, "a"))).scan().to_arrow().sort_by("id").to_pylist()
    topic = CaptureRules(stack.connect.topic_prefix).topic(TableId(db, "a"))
    consumer = Consumer({**stack.kafka.client_config(), "group.id": f"copy-{db}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    copies = [(m.key(), m.value()) for m in consumer.consume(10_000, timeout=5) if m.error() is None]
    consumer.close()
    assert len(copies) > 50
    _produce(stack, topic, copies)
    report = Ingestor(stack, lake.open_catalog(stack)).drain()
    assert report.changes > 50  # the copies are new Kafka messages and land as changes...
    merge_table(spark, stack.catalog.name, db, "a")
    after = lake.open_catalog(stack).load_table(lake.base_name(TableId(db, "a"))).scan().to_arrow().sort_by("id").to_pylist()
    assert after == before  # ...that change nothing


def test_paused_consumer_cannot_land_stale_data(stack: Settings, spark: Any) -> None:
    """Row 4: a consumer frozen (SIGSTOP) past its session loses its partitions to a second one; when it
    resumes (SIGCONT) and flushes its stale buffer, the table's offsets reject what was landed meanwhile."""
    db = _db()
    create_tables(stack, db, ("a",))
    group = {"CDC_KAFKA__GROUP_ID": f"g-{db}", "CDC_INGEST__SESSION_TIMEOUT_MS": "6000",
             "CDC_INGEST__MAX_POLL_INTERVAL_MS": "7000"}
    with Writer(stack, db, seed=4, tables=("a",)):
        stale = cdc_process(["ingest"], **group, CDC_INGEST__FLUSH_SECONDS="20", CDC_INGEST__FLUSH_ROWS="1000000")
        time.sleep(8)  # it holds an unflushed buffer
        os.killpg(stale.pid, signal.SIGSTOP)
        fresh = cdc_process(["ingest"], **group, **FAST_FLUSH)
        time.sleep(20)  # the frozen one's session expires; the fresh one lands its range
        os.killpg(stale.pid, signal.SIGCONT)
        time.sleep(20)  # the stale buffer flushes against offsets that moved on
    wait_captured(stack, db, ("a",))
    time.sleep(3)
    out_stale = kill(stale, signal.SIGTERM).decode(errors="replace")
    out_fresh = kill(fresh, signal.SIGTERM).decode(errors="replace")
    assert fresh.returncode == 0, out_fresh[-2000:]
    assert stale.returncode == 0, out_stale[-2000:]
    assert "already in the lake, skipped" in out_stale, out_stale[-3000:]  # its stale batch was refused
    assert_oracle(stack, spark, db, ("a",))


def test_catalog_unavailable_during_commits(stack: Settings, spark: Any) -> None:
    """Row 7: the catalog database refuses writes for a while (an exclusive lock on the SQLite catalog):
    the consumer backs off, recorded offsets do not advance, and it lands everything when the catalog returns."""
    import sqlite3

    uri = stack.catalog_uri
    assert uri.startswith("sqlite:///")
    db = _db()
    create_tables(stack, db, ("a",))
    write_some(stack, db, random.Random(7), 20, ("a",))
    wait_captured(stack, db, ("a",))
    Ingestor(stack, lake.open_catalog(stack)).drain()
    table = TableId(db, "a")
    recorded = landed_offsets(lake.open_catalog(stack).load_table(lake.changelog_name(table)))
    consumer = cdc_process(["ingest"], **FAST_FLUSH)
    reader = lake.open_catalog(stack)  # WAL: reads go on while the writer lock is held
    lock = sqlite3.connect(uri.removeprefix("sqlite:///"), timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        write_some(stack, db, random.Random(8), 40, ("a",))
        time.sleep(15)  # commits fail with "database is locked" and back off
        during = landed_offsets(reader.load_table(lake.changelog_name(table)))
        lock.rollback()
    finally:
        lock.close()
    assert during == recorded  # nothing advanced while the catalog was away
    time.sleep(10)
    out = kill(consumer, signal.SIGTERM).decode(errors="replace")
    assert consumer.returncode == 0, out[-2000:]
    assert "catalog" in out or "commit outcome unknown" in out, out[-2000:]
    assert_oracle(stack, spark, db, ("a",))
