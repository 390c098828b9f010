"""RELIABILITY row 24: excluded (PII) columns reach neither Kafka, the changelog, the base, a bootstrap,
a dead letter, a before-image nor a log line. A sentinel value is written and looked for everywhere."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc import connectors
from cdc.bootstrap.snapshot import bootstrap
from cdc.config import Settings, TableOverride
from cdc.events.model import TableId
from cdc.ingest import dlq
from cdc.ingest.capture import CaptureRules
from cdc.lake import catalog as lake
from cdc.source import connect, quote_ident
from cdc.verify import compare_table
from spark_jobs.merge import merge_table
from tests.e2e.faults_support import cdc_process

pytestmark = pytest.mark.e2e
SENTINEL = "SENTINEL-078-05-1120"


def _topic_bytes(settings: Settings, topic: str) -> bytes:
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        seen, out = 0, b""
        while seen < high - low:
            for m in consumer.consume(1000, timeout=5):
                if m.error() is None:
                    seen += 1
                    out += (m.key() or b"") + (m.value() or b"")
        return out
    finally:
        consumer.close()


def test_excluded_columns_never_leave_the_source(stack: Settings, spark: Any) -> None:
    db = f"px_{uuid.uuid4().hex[:8]}"
    streamed, bootstrapped = TableId(db, "people"), TableId(db, "archive")
    settings = stack.model_copy(deep=True)
    for t in (streamed, bootstrapped):
        settings.tables[str(t)] = TableOverride(exclude_columns=["ssn"])
    conn = connect(stack)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        for t in (streamed, bootstrapped):
            cur.execute(f"CREATE TABLE {quote_ident(db)}.{quote_ident(t.table)} (id INT PRIMARY KEY, name VARCHAR(40), ssn VARCHAR(30))")
        cur.execute("SET SESSION sql_log_bin = 0")  # rows only a bootstrap can see
        cur.executemany(f"INSERT INTO {quote_ident(db)}.archive VALUES (%s, %s, %s)", [(i, f"a{i}", f"{SENTINEL}-{i}") for i in range(50)])
        conn.commit()
    finally:
        conn.close()
    try:
        connectors.apply(settings)  # the connector now leaves `ssn` out of both tables
        conn = connect(stack, database=db)
        try:
            cur = conn.cursor()
            for i in range(40):
                cur.execute("INSERT INTO people VALUES (%s, %s, %s)", (i, f"p{i}", f"{SENTINEL}-{i}"))
                cur.execute("INSERT INTO archive VALUES (%s, %s, %s)", (100 + i, f"a{i}", f"{SENTINEL}-{i}"))
            cur.execute("UPDATE people SET ssn = CONCAT(ssn, '-new'), name = 'changed' WHERE id < 10")
            cur.execute("DELETE FROM people WHERE id >= 30")  # before-images
            conn.commit()
        finally:
            conn.close()
        bootstrap(settings, bootstrapped, chunk_rows=1000)
        connectors.wait_captured(settings)
        env = {"CDC_TABLES": json.dumps({str(t): {"exclude_columns": ["ssn"]} for t in (streamed, bootstrapped)})}
        proc = cdc_process(["ingest", "--until-caught-up"], **env)
        out = proc.communicate(timeout=300)[0]
        assert SENTINEL.encode() not in out  # no log line of the consumer
        catalog = lake.open_catalog(stack)
        rules = CaptureRules(stack.connect.topic_prefix)
        for t in (streamed, bootstrapped):
            assert SENTINEL.encode() not in _topic_bytes(stack, rules.topic(t))  # never reached Kafka
            merge_table(spark, stack.catalog.name, db, t.table)
            for ident in (lake.changelog_name(t), lake.base_name(t)):
                table = catalog.load_table(ident)
                assert "ssn" not in [f.name for f in table.schema().fields]
                assert SENTINEL not in repr(table.scan().to_arrow().to_pylist())
            result = compare_table(settings, catalog, t)  # equal on every column the lake keeps (ssn is excluded)
            assert result.equal, (str(t), result.missing_in_lake[:2], result.extra_in_lake[:2], result.different[:2])
        for row in dlq.raw_rows(catalog):
            assert SENTINEL.encode() not in (row["value"] or b"") + (row["key"] or b"")  # type: ignore[operator]
        connect_log = stack.home / "stack" / "connect" / "connect.log"
        assert SENTINEL.encode() not in connect_log.read_bytes()
    finally:
        connectors.apply(stack)
