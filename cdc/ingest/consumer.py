"""The landing consumer: Kafka -> decode -> one Iceberg changelog append per table per flush.

Commit protocol (exactly-once landing):
1. Start offsets come from the changelog tables (`cdc.kafka-offsets` in the newest snapshot
   summary that has it), never from the consumer group.
2. A flush appends each table's buffered changes in one snapshot whose summary carries the next
   offset of every partition of that table's topic.
3. Only after that Iceberg commit are the Kafka group offsets committed (for monitoring only).
A crash before (2) replays from the table's offsets; a crash after (2) but before (3) is harmless.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.table import Table

from cdc.config import Settings
from cdc.errors import CdcError, ServiceError
from cdc.events.debezium import decode
from cdc.events.model import ChangeEvent, DecodeFailure, KafkaCoordinates, Skip, TableId, TableSchema
from cdc.ingest import dlq
from cdc.lake import catalog as lake
from cdc.lake import schema as lake_schema
from cdc.lake.writer import append_changes

log = logging.getLogger(__name__)

COMMIT_RETRIES = 5


@dataclass
class TableReport:
    table: str
    changes: int = 0
    commits: int = 0


@dataclass
class IngestReport:
    messages: int = 0
    changes: int = 0
    skipped: int = 0
    dead_letters: int = 0
    commits: int = 0
    tables: dict[str, TableReport] = field(default_factory=dict)


@dataclass
class _Buffer:
    events: list[ChangeEvent] = field(default_factory=list)
    schemas: set[TableSchema] = field(default_factory=set)


class TopicNames:
    """Debezium topic names `<prefix>.<db>.<table>` <-> source tables."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pattern = "^" + re.escape(prefix) + r"\.[^.]+\.[^.]+$"
        self._re = re.compile(self.pattern)

    def table(self, topic: str) -> TableId | None:
        if not self._re.match(topic):
            return None
        _, db, table = topic.split(".")
        return TableId(db, table)

    def topic(self, table: TableId) -> str:
        return f"{self.prefix}.{table.db}.{table.table}"


class Ingestor:
    """One consumer process. `run()` until stopped, or `drain()` to the end offsets seen at start."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.names = TopicNames(settings.connect.topic_prefix)
        self.report = IngestReport()
        self._buffers: dict[TableId, _Buffer] = {}
        self._failures: list[DecodeFailure] = []
        self._next: dict[tuple[str, int], int] = {}
        self._buffered_bytes = 0
        self._first_buffered: float | None = None
        self._evolved: set[tuple[TableId, TableSchema]] = set()
        self._stop = threading.Event()
        conf: dict[str, Any] = {
            **settings.kafka.client_config(),
            "group.id": settings.kafka.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "max.poll.interval.ms": 600_000,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "topic.metadata.refresh.interval.ms": 5_000,
            "error_cb": self._on_error,
        }
        self.consumer = Consumer(conf)

    # ------------------------------------------------------------------ offsets from the table
    def start_offset(self, topic: str, partition: int) -> int:
        table = self.names.table(topic)
        if table is None:
            return OFFSET_BEGINNING
        try:
            changelog = self.catalog.load_table(lake.changelog_name(table))
        except NoSuchTableError:
            return OFFSET_BEGINNING
        return lake.committed_offsets(changelog).get(topic, {}).get(partition, OFFSET_BEGINNING)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            tp.offset = self.start_offset(tp.topic, tp.partition)
            log.info("assigned %s[%d], starting at offset %s (from the lake)", tp.topic, tp.partition, tp.offset)
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.flush()
        for tp in partitions:
            self._next.pop((tp.topic, tp.partition), None)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal Kafka error: %s", err)
            self._stop.set()
        else:
            log.warning("Kafka: %s", err)

    # ------------------------------------------------------------------ the loop
    def stop(self) -> None:
        self._stop.set()

    def run(self, idle_exit: Callable[[], bool] | None = None) -> IngestReport:
        """Consume by topic pattern (new tables are picked up) until SIGTERM/SIGINT or `stop()`."""
        self.consumer.subscribe([self.names.pattern], on_assign=self._on_assign, on_revoke=self._on_revoke)
        previous = _install_signal_handlers(self._stop)
        try:
            while not self._stop.is_set():
                self._poll_once()
                if idle_exit is not None and idle_exit():
                    break
            self.flush()
        finally:
            _restore_signal_handlers(previous)
            self.consumer.close()
        return self.report

    def drain(self, timeout: float = 600.0) -> IngestReport:
        """Consume every captured topic up to the end offsets seen now, commit, and return."""
        metadata = self.consumer.list_topics(timeout=10)
        assignment: list[TopicPartition] = []
        ends: dict[tuple[str, int], int] = {}
        for topic, meta in sorted(metadata.topics.items()):
            if self.names.table(topic) is None or meta.error is not None:
                continue
            for p in sorted(meta.partitions):
                low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                start = self.start_offset(topic, p)
                if start == OFFSET_BEGINNING:
                    start = low
                if start < high:
                    ends[(topic, p)] = high
                    assignment.append(TopicPartition(topic, p, start))
                    log.info("draining %s[%d] from offset %d to %d", topic, p, start, high)
        if not assignment:
            self.consumer.close()
            return self.report
        self.consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        previous = _install_signal_handlers(self._stop)
        try:
            while not self._stop.is_set():
                self._poll_once()
                if all(self._next.get(tp, 0) >= end for tp, end in ends.items()):
                    break
                if time.monotonic() > deadline:
                    raise ServiceError(f"ingest did not catch up within {timeout:.0f} s")
            self.flush()
        finally:
            _restore_signal_handlers(previous)
            self.consumer.close()
        return self.report

    def _poll_once(self) -> None:
        messages = self.consumer.consume(self.settings.ingest.poll_batch, timeout=0.5)
        for msg in messages:
            self._handle(msg)
        if self._due():
            self.flush()

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                log.debug("topic not there yet: %s", err)
                return
            raise ServiceError(f"Kafka error on {msg.topic()}[{msg.partition()}]: {err}")
        topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
        self.report.messages += 1
        self._next[(topic, partition)] = offset + 1
        value = msg.value()
        key = msg.key()
        coords = KafkaCoordinates(topic, partition, offset)
        decoded = decode(key if isinstance(key, bytes) else None, value if isinstance(value, bytes) and value else None,
                         coords, self.names.table)
        if isinstance(decoded, ChangeEvent):
            buf = self._buffers.setdefault(decoded.table, _Buffer())
            buf.events.append(decoded)
            buf.schemas.add(decoded.schema)
            self._buffered_bytes += len(value or b"")
            if self._first_buffered is None:
                self._first_buffered = time.monotonic()
        elif isinstance(decoded, Skip):
            self.report.skipped += 1
        else:
            log.warning("dead letter at %s[%d]@%d: %s: %s", topic, partition, offset, decoded.error, decoded.message)
            self._failures.append(decoded)
            if self._first_buffered is None:
                self._first_buffered = time.monotonic()

    def _due(self) -> bool:
        s = self.settings.ingest
        buffered = sum(len(b.events) for b in self._buffers.values()) + len(self._failures)
        if buffered == 0:
            return False
        age = time.monotonic() - (self._first_buffered or time.monotonic())
        return buffered >= s.flush_rows or self._buffered_bytes >= s.flush_bytes or age >= s.flush_seconds

    # ------------------------------------------------------------------ flush = the commit protocol
    def flush(self) -> None:
        """Land everything buffered: dead letters first, then one append per table; then Kafka offsets."""
        if self._failures:
            dlq.append(self.catalog, self._failures)
            self.report.dead_letters += len(self._failures)
            self._failures = []
        committed: list[TopicPartition] = []
        for table, buf in sorted(self._buffers.items(), key=lambda kv: str(kv[0])):
            if not buf.events:
                continue
            topic = self.names.topic(table)
            parts = {p: o for (t, p), o in self._next.items() if t == topic}
            self._commit_table(table, buf, topic, parts)
            committed.extend(TopicPartition(topic, p, o) for p, o in parts.items())
        self._buffers.clear()
        self._buffered_bytes = 0
        self._first_buffered = None
        if committed:
            try:
                self.consumer.commit(offsets=committed, asynchronous=False)
            except KafkaException as exc:  # monitoring only: the lake holds the truth
                log.warning("could not commit group offsets (the lake has them): %s", exc)

    def _commit_table(self, table: TableId, buf: _Buffer, topic: str, parts: dict[int, int]) -> None:
        # a truncate carries no key: create the tables from a keyed schema
        keyed = next((s for s in buf.schemas if s.key), None)
        if keyed is None:
            changelog = self.catalog.load_table(lake.changelog_name(table))
        else:
            changelog = lake.ensure_tables(self.catalog, self.settings, table, keyed)
        for schema in buf.schemas:
            changelog = self._evolve(table, changelog, schema)
        events = buf.events
        for attempt in range(1, COMMIT_RETRIES + 1):
            recorded = lake.committed_offsets(changelog)
            already = recorded.get(topic, {})
            # a replayed range (another consumer or an earlier run committed it) is skipped, not landed twice
            fresh = [e for e in events if e.coordinates.offset >= already.get(e.coordinates.partition, -1)]
            if not fresh:
                log.info("%s: %d changes were already in the lake, skipped", table, len(events))
                return
            offsets = {**recorded, topic: {**already, **{p: max(o, already.get(p, 0)) for p, o in parts.items()}}}
            try:
                snapshot = append_changes(changelog, fresh, offsets)
            except CommitFailedException as exc:
                log.warning("%s: commit conflict (attempt %d/%d): %s", table, attempt, COMMIT_RETRIES, exc)
                changelog = self.catalog.load_table(lake.changelog_name(table))
                continue
            last = max(fresh, key=lambda e: e.coordinates.offset).coordinates
            log.info("%s: landed %d changes in snapshot %s, up to %s[%d]@%d", table, len(fresh), snapshot,
                     last.topic, last.partition, last.offset)
            rep = self.report.tables.setdefault(str(table), TableReport(str(table)))
            rep.changes += len(fresh)
            rep.commits += 1
            self.report.changes += len(fresh)
            self.report.commits += 1
            return
        raise ServiceError(f"{table}: gave up after {COMMIT_RETRIES} commit conflicts")

    def _evolve(self, table: TableId, changelog: Table, source: TableSchema) -> Table:
        """Additive and widening schema changes flow into both tables; anything else stops with a message."""
        if (table, source) in self._evolved:
            return changelog
        for ident, is_changelog in ((lake.base_name(table), False), (lake.changelog_name(table), True)):
            target = changelog if is_changelog else self.catalog.load_table(ident)
            wanted = lake_schema.iceberg_schema(lake_schema.lake_columns(source, changelog=is_changelog))
            current = {f.name for f in target.schema().fields}
            if {f.name for f in wanted.fields} <= current and _same_types(target, wanted):
                continue
            try:
                with target.update_schema() as update:
                    update.union_by_name(wanted)
            except (ValueError, CdcError) as exc:
                raise CdcError(f"{table}: incompatible schema change, the table is stopped: {exc}") from exc
            log.info("%s: evolved the schema of %s", table, ".".join(ident))
            if is_changelog:
                changelog = self.catalog.load_table(ident)
        self._evolved.add((table, source))
        return changelog


def _same_types(table: Table, wanted: Any) -> bool:
    have = {f.name: f.field_type for f in table.schema().fields}
    return all(have.get(f.name) == f.field_type for f in wanted.fields)


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: flushing and stopping", signum)
        stop.set()

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
