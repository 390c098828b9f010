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

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from cdc import faults
from cdc.config import Settings
from cdc.connectors import MARKER_DB
from cdc.errors import CdcError, ServiceError
from cdc.events.debezium import decode
from cdc.events.model import ChangeEvent, DecodeFailure, KafkaCoordinates, Skip, TableId, TableSchema
from cdc.ingest import dlq
from cdc.ingest.commit import append_once
from cdc.lake import catalog as lake, schema as lake_schema
from cdc.lake.writer import append_changes

log = logging.getLogger(__name__)



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
    """Debezium topic names `<prefix>.<db>.<table>` <-> source tables, and the capture rules."""

    def __init__(self, prefix: str, include: list[str] | None = None, exclude: list[str] | None = None) -> None:
        self.prefix = prefix
        self.include = frozenset(include or ())
        self.exclude = frozenset(exclude or ())
        self.pattern = "^" + re.escape(prefix) + r"\.[^.]+\.[^.]+$"
        self._re = re.compile(self.pattern)

    def table(self, topic: str) -> TableId | None:
        if not self._re.match(topic):
            return None
        _, db, table = topic.split(".")
        return TableId(db, table)

    def topic(self, table: TableId) -> str:
        return f"{self.prefix}.{table.db}.{table.table}"

    def captured(self, table: TableId) -> bool:
        if self.include and table.db not in self.include:
            return False
        return table.db not in self.exclude

    @classmethod
    def from_settings(cls, settings: Settings, catalog: Catalog | None = None) -> TopicNames:
        c = settings.connect
        include = list(c.include_databases)
        if include:
            include.append(MARKER_DB)  # `wait_captured`'s marker table is always captured
            if catalog is not None:
                include += lake.captured_namespaces(catalog)  # added on demand by `cdc bootstrap`
        return cls(c.topic_prefix, include, c.exclude_databases)


class Ingestor:
    """One consumer process. `run()` until stopped, or `drain()` to the end offsets seen at start."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.names = TopicNames.from_settings(settings, catalog)
        self.report = IngestReport()
        self._buffers: dict[TableId, _Buffer] = {}
        self._failures: list[DecodeFailure] = []
        self._next: dict[tuple[str, int], int] = {}
        self._buffered_bytes = 0
        self._first_buffered: float | None = None
        self._flush_messages = 0
        self._evolved: set[tuple[TableId, TableSchema]] = set()
        self._stop = threading.Event()
        self._fatal: CdcError | None = None
        conf: dict[str, Any] = {
            **settings.kafka.client_config(),
            "group.id": settings.kafka.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "max.poll.interval.ms": settings.ingest.max_poll_interval_ms,
            "session.timeout.ms": settings.ingest.session_timeout_ms,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "topic.metadata.refresh.interval.ms": 5_000,
            "error_cb": self._on_error,
        }
        self.consumer = Consumer(conf)

    # ------------------------------------------------------------------ offsets from the table
    def start_offset(self, topic: str, partition: int, dead_letters: dict[str, dict[int, int]]) -> int:
        """Where to read from: the next offset the lake recorded (changelog or `dead_letters`), checked against the topic."""
        table = self.names.table(topic)
        recorded: int | None = None
        if table is not None:
            try:
                changelog = self.catalog.load_table(lake.changelog_name(table))
            except NoSuchTableError:
                changelog = None
            if changelog is not None:
                recorded = lake.committed_offsets(changelog).get(topic, {}).get(partition)
        dead = dead_letters.get(topic, {}).get(partition)
        if dead is not None and (recorded is None or dead > recorded):
            recorded = dead  # everything before it was landed or dead-lettered
        low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if recorded is None:
            return low
        if recorded > high:
            raise ServiceError(
                f"{topic}[{partition}]: the lake has landed up to offset {recorded} but the topic ends at {high}: "
                "the topic was deleted and recreated (offsets reset). Stopping; re-bootstrap the table "
                f"(cdc bootstrap {table} --rebuild) before ingesting it again"
            )
        if recorded < low:
            raise ServiceError(
                f"{topic}[{partition}]: the next offset to land is {recorded} but the topic now starts at {low}: "
                "messages were deleted before they were landed. Stopping; re-bootstrap the table"
            )
        return recorded

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            dead_letters = dlq.committed(self.catalog)  # read once per assignment, not per partition
            for tp in partitions:
                tp.offset = self.start_offset(tp.topic, tp.partition, dead_letters)
                log.info("assigned %s[%d], starting at offset %s (from the lake)", tp.topic, tp.partition, tp.offset)
        except CdcError as exc:
            self._fatal = exc
            self._stop.set()
            partitions = []
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
            if self._fatal is not None:
                raise self._fatal
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
        dead_letters = dlq.committed(self.catalog)
        for topic, meta in sorted(metadata.topics.items()):
            if self.names.table(topic) is None or meta.error is not None:
                continue
            for p in sorted(meta.partitions):
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                start = self.start_offset(topic, p, dead_letters)
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
        self._flush_messages += 1
        raw_key = key if isinstance(key, bytes) else None
        raw_value = value if isinstance(value, bytes) and value else None
        headers = tuple((str(h[0]), h[1] if isinstance(h[1], bytes) else b"") for h in (msg.headers() or []))
        decoded = classify(self.names, self.settings.ingest.max_message_bytes, raw_key, raw_value, coords, headers)
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
        s = self.settings.ingest
        failed = len(self._failures)
        if failed >= s.min_dead_letters and failed > s.max_dead_letter_ratio * self._flush_messages:
            first = self._failures[0]
            raise ServiceError(
                f"{failed} of {self._flush_messages} messages could not be decoded (over ingest.max_dead_letter_ratio "
                f"{s.max_dead_letter_ratio}): something larger is wrong; nothing of this batch was landed. First: "
                f"{first.coordinates.topic}[{first.coordinates.partition}]@{first.coordinates.offset}: {first.message}"
            )
        self._flush_messages = 0
        committed: list[TopicPartition] = []
        for table, buf in sorted(self._buffers.items(), key=lambda kv: str(kv[0])):
            if not buf.events:
                continue
            topic = self.names.topic(table)
            parts = {p: o for (t, p), o in self._next.items() if t == topic}
            self._commit_table(table, buf, topic, parts, replay=False)
            committed.extend(TopicPartition(topic, p, o) for p, o in parts.items())
        if self._failures:
            # after the tables: the offsets the dead-letter commit records never run ahead of landed changes
            topics = {f.coordinates.topic for f in self._failures}
            dead_offsets = {t: {p: o for (tt, p), o in self._next.items() if tt == t} for t in topics}
            self.report.dead_letters += dlq.append(self.catalog, self._failures, dead_offsets)
            committed.extend(TopicPartition(t, p, o) for t, ps in dead_offsets.items() for p, o in ps.items())
            self._failures = []
        self._buffers.clear()
        self._buffered_bytes = 0
        self._first_buffered = None
        faults.point(faults.AFTER_COMMIT)  # landed in the lake, Kafka group offsets not yet committed
        if committed:
            try:
                self.consumer.commit(offsets=committed, asynchronous=False)
            except KafkaException as exc:  # monitoring only: the lake holds the truth
                log.warning("could not commit group offsets (the lake has them): %s", exc)

    def land_replayed(self, events: list[ChangeEvent]) -> int:
        """Land dead letters that decode now (`cdc dlq replay`): below the recorded offsets, so no offset filter.

        Landing one twice is harmless: the merge keeps one change per key and position.
        """
        by_table: dict[TableId, _Buffer] = {}
        for e in events:
            buf = by_table.setdefault(e.table, _Buffer())
            buf.events.append(e)
            buf.schemas.add(e.schema)
        for table, buf in by_table.items():
            self._commit_table(table, buf, self.names.topic(table), {}, replay=True)
        return sum(len(b.events) for b in by_table.values())

    def _commit_table(self, table: TableId, buf: _Buffer, topic: str, parts: dict[int, int], replay: bool) -> None:
        # a truncate carries no key: create the tables from a keyed schema
        keyed = next((s for s in buf.schemas if s.key), None)
        if keyed is None:
            changelog = self.catalog.load_table(lake.changelog_name(table))
        else:
            changelog = lake.ensure_tables(self.catalog, self.settings, table, keyed)
        for schema in buf.schemas:
            changelog = self._evolve(table, changelog, schema)
        name = lake.changelog_name(table)
        topic_offsets = {topic: parts} if parts else {}
        landed = append_once(str(table), lambda: self.catalog.load_table(name), buf.events,
                             lambda e: e.coordinates, topic_offsets, append_changes, replay=replay,
                             timeout=self.settings.ingest.commit_timeout_seconds)
        if not landed:
            return
        last = max(landed, key=lambda e: e.coordinates.offset).coordinates
        log.info("%s: landed %d changes, up to %s[%d]@%d", table, len(landed), last.topic, last.partition, last.offset)
        rep = self.report.tables.setdefault(str(table), TableReport(str(table)))
        rep.changes += len(landed)
        rep.commits += 1
        self.report.changes += len(landed)
        self.report.commits += 1

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


def classify(
    names: TopicNames,
    max_bytes: int,
    key: bytes | None,
    value: bytes | None,
    coords: KafkaCoordinates,
    headers: tuple[tuple[str, bytes], ...] = (),
) -> ChangeEvent | Skip | DecodeFailure:
    """Pure: what one message is. Capture rules and size first, then the decoder."""
    table = names.table(coords.topic)
    if table is not None and not names.captured(table):
        return DecodeFailure("OutsideCaptureRules", f"{table} is outside the capture rules (include/exclude databases)",
                             key, value, coords, table, headers)
    size = len(value or b"") + len(key or b"")
    if size > max_bytes:
        return DecodeFailure("MessageTooLarge", f"message of {size} bytes exceeds ingest.max_message_bytes ({max_bytes})",
                             key, value, coords, table, headers)
    decoded = decode(key, value, coords, names.table)
    if isinstance(decoded, DecodeFailure):
        return DecodeFailure(decoded.error, decoded.message, key, value, coords, decoded.table, headers)
    return decoded


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
