"""The landing consumer: the Kafka loop (poll, assign/revoke, signals) around `Batch` and `Lander`.

1. Start offsets come from the lake (`cdc.ingest.offsets.resume` over what the changelog tables
   recorded), never from the consumer group.
2. Every polled message is classified into the batch; a full batch is landed (dead letters,
   then one commit per table: `cdc.ingest.landing`).
3. Only after the lake commits are the Kafka group offsets committed (for monitoring only).
4. The freshness contract: per table, the source point its changelog is complete through
   (`cdc.ingest.progress`), recorded once the table has landed up to the Kafka end offsets that
   point's changes are all below (periodically while running; at the end of `drain(through_source=True)`).
A table that cannot land is halted alone: its partitions are paused, every other table goes on.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition
from pyiceberg.catalog import Catalog

from cdc import faults
from cdc.config import Settings
from cdc.errors import CdcError, DecodeError, ServiceError, TransientError
from cdc.events.booleans import as_booleans
from cdc.events.debezium import decode
from cdc.events.model import ChangeEvent, DecodeFailure, KafkaCoordinates, Skip, TableId
from cdc.ingest import dlq, offsets as off, progress
from cdc.ingest.batch import Batch, Raw
from cdc.ingest.capture import MARKER_DB, CaptureRules, without_columns
from cdc.ingest.commit import landed_state
from cdc.ingest.ddl import DdlHistory
from cdc.ingest.landing import REBUILD, Lander, Outcome
from cdc.ingest.watermarks import admin_client, topic_ids
from cdc.lake import catalog as lake, state
from cdc.retry import RetryPolicy, retrying

log = logging.getLogger(__name__)
HALT_CHECK_SECONDS = 10.0  # how often a running consumer looks whether a halted table was rebuilt


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
    halted: dict[str, str] = field(default_factory=dict)  # table -> reason (halted before or during this run)


Part = tuple[str, int]


def require_broker(settings: Settings, timeout: float = 5.0) -> None:
    """A broker that does not answer is one clear error before any work starts (a probe client without
    error callbacks: librdkafka's reconnect errors go to the `cdc.librdkafka` logger only)."""
    probe = Consumer({**settings.kafka.client_config(), "group.id": "cdc-probe", "enable.auto.commit": False,
                      "logger": logging.getLogger("cdc.librdkafka")})
    try:
        probe.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ServiceError(f"Kafka is not reachable at {settings.kafka.bootstrap_servers}: {exc.args[0].str()}") from exc
    finally:
        probe.close()


class Ingestor:
    """One consumer process. `run()` until stopped, or `drain()` to the end offsets seen at start."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.policy = RetryPolicy(deadline_seconds=settings.ingest.commit_timeout_seconds)
        self.rules = retrying("read the capture rules", self.policy, lambda: CaptureRules.from_settings(settings, catalog))
        self._booleans: Callable[[TableId], Collection[str]] = lambda t: settings.table_settings(t.db, t.table).booleans
        self.lander = Lander(settings, catalog, self.policy, DdlHistory(settings))
        self.report = IngestReport()
        self._batch = Batch()
        self._held: set[Part] = set()  # partitions of halted tables: paused, nothing of them landed
        self._unanchored: set[Part] = set()
        self._assigned: set[Part] = set()
        self._consumed: dict[Part, int] = {}  # next offset per partition after what was polled
        self._landed: dict[Part, int] = {}  # next offset per partition after what the lake holds (or needs not)
        self._owned: set[Part] = set()  # partitions this consumer lands (drain: all it planned; run: its assignment)
        self._freshness = progress.Freshness(catalog, self.policy)
        self._landed_moved = False  # since the last `_advance`
        self._topic_ids: dict[str, str] = {}  # Kafka topic id per topic when it was planned
        self._next_halt_check = 0.0
        self._refreshed_this_poll = False
        self._stop = threading.Event()
        self._fatal: CdcError | None = None
        conf: dict[str, Any] = {
            **settings.kafka.client_config(),
            "group.id": settings.kafka.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # every start offset comes from the lake; a position out of range means the topic was trimmed
            # or recreated under us: an error to plan that partition again, never a silent jump
            "auto.offset.reset": "error",
            "enable.partition.eof": False,
            "max.poll.interval.ms": settings.ingest.max_poll_interval_ms,
            "session.timeout.ms": settings.ingest.session_timeout_ms,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "topic.metadata.refresh.interval.ms": 5_000,
            "error_cb": self._on_error,
            "logger": logging.getLogger("cdc.librdkafka"),  # librdkafka's log lines through `logging`, not stderr
        }
        require_broker(settings)
        self.consumer = Consumer(conf)
        self.admin = admin_client(settings)  # topic ids at assignment and at every flush

    @classmethod
    def open(cls, settings: Settings) -> Ingestor:
        """An ingestor on the settings' catalog, waiting (with backoff) for a catalog that is away at start."""
        policy = RetryPolicy(deadline_seconds=settings.ingest.commit_timeout_seconds)
        return cls(settings, retrying("open the catalog", policy, lambda: lake.open_catalog(settings)))

    # ------------------------------------------------------------------ where to start, from the lake
    def plan(self, parts: list[Part]) -> dict[Part, int | None]:
        """Start offset per partition (None: held, its table is halted). Halts what cannot resume."""
        return retrying("read the landed offsets", self.policy, lambda: self._plan(parts))

    def _plan(self, parts: list[Part]) -> dict[Part, int | None]:
        ids = topic_ids(self.settings, sorted({t for t, _ in parts}), self.admin)
        self._topic_ids.update(ids)
        halted = state.halted_tables(self.catalog)
        held_topics = {h.topic or self.rules.topic(t) for t, h in halted.items()}
        by_topic: dict[str, list[TableId]] = {}
        for table in lake.lake_tables(self.catalog):
            by_topic.setdefault(self.rules.topic(table), []).append(table)
        landed = {t: landed_state(self.catalog.load_table(lake.changelog_name(t)))
                  for topic in {p[0] for p in parts} for t in by_topic.get(topic, [])}
        dead = dlq.committed(self.catalog)
        out: dict[Part, int | None] = {}
        for topic, partition in parts:
            if topic in held_topics:
                out[(topic, partition)] = None
                continue
            low, high = self._watermarks(topic, partition)
            tables = by_topic.get(topic, [])
            recreated = [t for t in tables if off.other_incarnation(landed[t][1], ids, topic)]
            decision: off.Start | off.Halt = off.resume([landed[t][0].get(topic, {}).get(partition) for t in tables],
                                                        dead.get(topic, {}).get(partition), low, high)
            if recreated:
                decision = off.Halt(f"the topic was deleted and recreated (its Kafka topic id changed from "
                                    f"{landed[recreated[0]][1][topic]} to {ids[topic]}): the offsets the lake recorded "
                                    "belong to the old topic")
            if isinstance(decision, off.Halt) and not tables:
                decision = off.Start(low, unanchored=low > 0)  # nothing landed from it: a first landing decides
            if isinstance(decision, off.Halt):
                for t in tables:
                    record = state.halt_record(t, f"{topic}[{partition}]: {decision.reason}", REBUILD.format(table=t), topic,
                                               None)
                    state.record_halt(self.catalog, record)
                    self.report.halted[str(t)] = record.reason
                out[(topic, partition)] = None
                continue
            if decision.unanchored:
                self._unanchored.add((topic, partition))
            out[(topic, partition)] = decision.offset
        for t, h in halted.items():
            if (h.topic or self.rules.topic(t)) in {p[0] for p in parts}:
                self.report.halted[str(t)] = h.reason
        return out

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except KafkaException as exc:
            raise TransientError(f"cannot read the offsets of {topic}[{partition}]: {exc}") from exc
        return int(low), int(high)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            starts = self.plan([(tp.topic, tp.partition) for tp in partitions])
        except CdcError as exc:
            self._fatal = exc
            self._stop.set()
            consumer.assign([])
            return
        held: list[TopicPartition] = []
        for tp in partitions:
            start = starts[(tp.topic, tp.partition)]
            self._assigned.add((tp.topic, tp.partition))
            if start is None:
                self._held.add((tp.topic, tp.partition))
                tp.offset = OFFSET_END  # paused, never fetched; a logical offset raises no out-of-range reset
                held.append(tp)
                log.warning("assigned %s[%d], held: a table of this topic is halted (see cdc status)", tp.topic, tp.partition)
            else:
                tp.offset = start
                self._landed[(tp.topic, tp.partition)] = start
                self._owned.add((tp.topic, tp.partition))
                log.info("assigned %s[%d], starting at offset %s (from the lake)", tp.topic, tp.partition, start)
        consumer.assign(partitions)
        if held:
            consumer.pause(held)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.flush()
        for tp in partitions:
            part = (tp.topic, tp.partition)
            self._assigned.discard(part)
            self._owned.discard(part)
            self._held.discard(part)
            self._unanchored.discard(part)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal Kafka error: %s", err)
            self._stop.set()
        else:
            log.warning("Kafka: %s", err)

    # ------------------------------------------------------------------ the loop
    def stop(self) -> None:
        self._stop.set()

    def run(self, idle_exit: Callable[[], bool] | None = None, tables: Collection[TableId] | None = None) -> IngestReport:
        """Consume by topic pattern (new tables are picked up), or only the topics of `tables`, until SIGTERM/SIGINT
        or `stop()`."""
        subscription = [self.rules.pattern] if tables is None else sorted({self.rules.topic(t) for t in tables})
        self.consumer.subscribe(subscription, on_assign=self._on_assign, on_revoke=self._on_revoke)
        previous = _install_signal_handlers(self._stop)
        interval = self.settings.ingest.progress_seconds
        prober = progress.Prober(self.settings, lambda topic: self.rules.is_data_topic(topic), interval) if interval else None
        next_advance = 0.0
        try:
            if prober is not None:
                prober.start()
            while not self._stop.is_set():
                self._poll_once()
                if prober is not None and time.monotonic() >= next_advance:
                    next_advance = time.monotonic() + 1.0
                    settled = prober.take()
                    if settled or self._landed_moved:
                        self._advance(settled, tables)
                if idle_exit is not None and idle_exit():
                    break
            if self._fatal is not None:
                raise self._fatal
            self.flush()
            if prober is not None:
                self._advance(prober.take(), tables)
        finally:  # handlers stay until the clients are closed: a SIGTERM meanwhile is a stop, not a kill
            if prober is not None:
                prober.stop()
            self.consumer.close()
            self.lander.close()
            _restore_signal_handlers(previous)
        return self.report

    def drain(self, timeout: float = 600.0, tables: Collection[TableId] | None = None,
              through_source: bool = False) -> IngestReport:
        """Consume every captured topic (or those of `tables`) up to the end offsets seen now, commit, return.

        With `through_source`, first take the source's current point and wait until Kafka holds every change
        before it: the drain then lands everything committed at the source before it started, and records
        that point for every table it landed past. Partitions of halted tables are left where they are
        (`report.halted` names the tables).
        """
        probe = None
        if through_source:
            settled = progress.settle(self.settings, self.admin, self.rules.is_data_topic, timeout)
            probe = settled[0] if settled is not None else None
            if probe is not None:
                log.info("catching up with the source's position %s:%d", probe.point.file, probe.point.pos)
        metadata = self.consumer.list_topics(timeout=10)
        wanted = None if tables is None else {self.rules.topic(t) for t in tables}
        parts = [(topic, p) for topic, meta in sorted(metadata.topics.items())
                 if self.rules.is_data_topic(topic) and meta.error is None and (wanted is None or topic in wanted)
                 for p in sorted(meta.partitions)]
        starts = self.plan(parts)
        self._landed.update({p: s for p, s in starts.items() if s is not None})
        self._owned.update(p for p, s in starts.items() if s is not None)
        ends: dict[Part, int] = {}
        assignment: list[TopicPartition] = []
        for part, start in starts.items():
            if start is None:
                continue
            _, high = self._watermarks(*part)
            if start < high:
                ends[part] = high
                assignment.append(TopicPartition(part[0], part[1], start))
                log.info("draining %s[%d] from offset %d to %d", part[0], part[1], start, high)
        if not assignment:
            if probe is not None:
                self._advance([probe], tables)
            self.consumer.close()
            self.lander.close()
            return self.report
        self._assigned = set(ends)
        self.consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        previous = _install_signal_handlers(self._stop)
        try:
            while not self._stop.is_set():
                self._poll_once()
                if all(part in self._held or self._position(part) >= end for part, end in ends.items()):
                    break
                if time.monotonic() > deadline:
                    raise ServiceError(f"ingest did not catch up within {timeout:.0f} s")
            self.flush()
            if probe is not None:
                self._advance([probe], tables)
        finally:
            self.consumer.close()
            self.lander.close()
            _restore_signal_handlers(previous)
        return self.report

    def _position(self, part: Part) -> int:
        return self._consumed.get(part, 0)

    def _poll_once(self) -> None:
        self._refreshed_this_poll = False
        if self._held and time.monotonic() >= self._next_halt_check:
            self._release_rebuilt()
        messages = self.consumer.consume(self.settings.ingest.poll_batch, timeout=0.5)
        for msg in messages:
            self._handle(msg)
        s = self.settings.ingest
        if self._batch.due(time.monotonic(), s.flush_rows, s.flush_bytes, s.flush_seconds):
            self.flush()

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                log.debug("topic not there yet: %s", err)
                return
            if err.code() == KafkaError._AUTO_OFFSET_RESET:  # position out of range: trimmed or recreated
                self._replan((str(msg.topic()), int(msg.partition() or 0)), str(err))
                return
            raise ServiceError(f"Kafka error on {msg.topic()}[{msg.partition()}]: {err}")
        topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
        part = (topic, partition)
        if part in self._held:
            return  # fetched before the pause; read again when its table is rebuilt
        self._consumed[part] = offset + 1
        self.report.messages += 1
        value, key = msg.value(), msg.key()
        raw: Raw = (key if isinstance(key, bytes) else None, value if isinstance(value, bytes) and value else None,
                    tuple((str(h[0]), h[1] if isinstance(h[1], bytes) else b"") for h in (msg.headers() or [])))
        coords = KafkaCoordinates(topic, partition, offset)
        decoded = classify(self.rules, self.settings.ingest.max_message_bytes, raw, coords, self._booleans)
        if isinstance(decoded, DecodeFailure) and decoded.error == "OutsideCaptureRules" and not self._refreshed_this_poll:
            # `cdc bootstrap` may have added the table to capture since the rules were read
            self._refreshed_this_poll = True
            self.rules = retrying("read the capture rules", self.policy,
                                  lambda: CaptureRules.from_settings(self.settings, self.catalog))
            decoded = classify(self.rules, self.settings.ingest.max_message_bytes, raw, coords, self._booleans)
        if isinstance(decoded, DecodeFailure):
            log.warning("dead letter at %s[%d]@%d: %s: %s", topic, partition, offset, decoded.error, decoded.message)
        self._batch.add(decoded, raw, time.monotonic())

    def _replan(self, part: Part, why: str) -> None:
        """A partition's position is out of range: land what is buffered, then ask the lake again
        (a trimmed or recreated topic halts its tables; otherwise seek to where the lake says)."""
        log.warning("%s[%d]: %s; planning it again from the lake", part[0], part[1], why)
        self.flush()
        start = self.plan([part])[part]
        if start is None:
            self._hold([part])
            return
        self._landed[part] = start  # what the lake holds of it now (a recreated topic starts again)
        try:
            self.consumer.seek(TopicPartition(part[0], part[1], start))
        except KafkaException as exc:  # no longer ours (a rebalance): its next owner plans it from the lake
            log.warning("%s[%d]: could not seek to %d: %s", part[0], part[1], start, exc)

    def _hold(self, parts: list[Part]) -> None:
        fresh = [p for p in parts if p not in self._held]
        if not fresh:
            return
        self._held.update(fresh)
        try:
            self.consumer.pause([TopicPartition(t, p) for t, p in fresh])
        except KafkaException as exc:
            log.warning("could not pause %s: %s", fresh, exc)

    def _release_rebuilt(self) -> None:
        """Resume the partitions of tables no longer halted (rebuilt by `cdc bootstrap` while we run)."""
        self._next_halt_check = time.monotonic() + HALT_CHECK_SECONDS
        halted = retrying("read table states", self.policy, lambda: state.halted_tables(self.catalog))
        still = {h.topic or self.rules.topic(t) for t, h in halted.items()}
        self.report.halted = {k: v for k, v in self.report.halted.items() if k in {str(t) for t in halted}}
        released = sorted(p for p in self._held if p[0] not in still)
        if not released:
            return
        starts = self.plan(released)
        for part in released:
            start = starts[part]
            if start is None:
                continue
            self._landed[part] = start  # the rebuilt table's offsets, not the old topic's
            try:
                self.consumer.seek(TopicPartition(part[0], part[1], start))
                self.consumer.resume([TopicPartition(part[0], part[1])])
            except KafkaException as exc:  # no longer ours (a rebalance): its next owner plans it from the lake
                log.warning("%s[%d]: could not resume at %d: %s", part[0], part[1], start, exc)
                continue
            self._held.discard(part)
            log.info("%s[%d]: its tables are streaming again, resuming at offset %d (from the lake)", part[0], part[1], start)

    def _record_halt(self, record: state.Halted) -> None:
        retrying("record the halt", self.policy, lambda: state.record_halt(self.catalog, record))

    def _recreated_topics(self, topics: set[str]) -> set[str]:
        """Topics of this batch whose Kafka id changed since they were assigned (deleted and recreated)."""
        known = {t: self._topic_ids[t] for t in topics if t in self._topic_ids}
        if not known:
            return set()
        now = retrying("describe topics", self.policy, lambda: topic_ids(self.settings, sorted(known), self.admin))
        return {t for t, i in known.items() if now.get(t, i) != i}

    def _hold_recreated(self, batch: Batch, topics: set[str]) -> None:
        """Nothing of a recreated topic lands: its tables halt, its partitions pause."""
        for topic in sorted(topics):
            tables = sorted({t for t, c in batch.tables.items() if c.topic == topic}, key=str)
            for table in tables:
                record = state.halt_record(table, f"{topic} was deleted and recreated while it was being landed (its Kafka "
                                           "topic id changed)", REBUILD.format(table=table), topic, None)
                self._record_halt(record)
                self.report.halted[str(table)] = record.reason
            for table in tables:
                del batch.tables[table]
            batch.failures = [f for f in batch.failures if f.coordinates.topic != topic]
            batch.ends = {k: v for k, v in batch.ends.items() if k[0] != topic}
        self._hold([p for p in self._assigned if p[0] in topics])

    # ------------------------------------------------------------------ freshness
    def _advance(self, settled: list[progress.Probe], only: Collection[TableId] | None = None) -> None:
        """Record the points the tables this consumer lands (not halted, not the marker) have landed past."""
        self._landed_moved = False
        if not self._freshness.pending(settled):
            return
        known = retrying("list the lake tables", self.policy, lambda: lake.lake_tables(self.catalog))
        halted = {str(t) for t in self.report.halted}
        topics = {t: self.rules.topic(t) for t in known  # a table outside capture has no topic: it is not "all landed"
                  if t.db != MARKER_DB and self.rules.captured(t) and str(t) not in halted and (only is None or t in only)}
        self._freshness.advance(topics, self._landed, lambda p: p in self._owned and p not in self._held)

    # ------------------------------------------------------------------ flush
    def flush(self) -> None:
        """Land the batch (see `cdc.ingest.landing`), then commit the Kafka group offsets."""
        batch, self._batch = self._batch, Batch()
        if batch.rows == 0:  # only deletes' tombstones: nothing to land
            self.report.skipped += batch.skipped
            self._landed.update(batch.ends)
            self._landed_moved = True
            return
        s = self.settings.ingest
        failed = len(batch.failures)
        if failed >= s.min_dead_letters and failed > s.max_dead_letter_ratio * batch.messages:
            first = batch.failures[0].coordinates
            raise ServiceError(
                f"{failed} of {batch.messages} messages could not be decoded (over ingest.max_dead_letter_ratio "
                f"{s.max_dead_letter_ratio}): something larger is wrong; nothing of this batch was landed. First: "
                f"{first.topic}[{first.partition}]@{first.offset}: {batch.failures[0].message}"
            )
        recreated = self._recreated_topics(batch.topics())
        if recreated:
            self._hold_recreated(batch, recreated)
        outcome = self.lander.land(batch, self._unanchored, self._topic_ids)
        self._account(batch, outcome)
        self._landed.update({p: o for p, o in batch.ends.items() if p[0] not in outcome.held_topics})
        self._landed_moved = True
        faults.point(faults.AFTER_COMMIT)  # landed in the lake, Kafka group offsets not yet committed
        committed = [TopicPartition(t, p, o) for (t, p), o in batch.ends.items()
                     if t not in outcome.held_topics and (t, p) in self._assigned]
        if committed:
            try:
                self.consumer.commit(offsets=committed, asynchronous=False)
            except KafkaException as exc:  # monitoring only: the lake holds the truth
                log.warning("could not commit group offsets (the lake has them): %s", exc)

    def _account(self, batch: Batch, outcome: Outcome) -> None:
        self.report.skipped += batch.skipped + outcome.skipped_truncates
        self.report.dead_letters += outcome.dead_letters
        self.report.commits += outcome.commits
        for table, n in outcome.landed.items():
            rep = self.report.tables.setdefault(str(table), TableReport(str(table)))
            rep.changes += n
            rep.commits += 1
            self.report.changes += n
        for table, halted in outcome.halted.items():
            self.report.halted[str(table)] = halted.reason
        self._hold([(t, p) for (t, p) in self._assigned if t in outcome.held_topics])


def classify(rules: CaptureRules, max_bytes: int, raw: Raw, coords: KafkaCoordinates,
             booleans: Callable[[TableId], Collection[str]] | None = None) -> ChangeEvent | Skip | DecodeFailure:
    """Pure: what one message is. Size first, then the decoder, then the capture rules and the topic,
    then the table's boolean columns (`booleans`: a table's `tables.<db.table>.booleans`)."""
    key, value, headers = raw
    size = len(value or b"") + len(key or b"")
    if size > max_bytes:
        return DecodeFailure("MessageTooLarge", f"message of {size} bytes exceeds ingest.max_message_bytes ({max_bytes})",
                             key, value, coords, None, headers)
    decoded = decode(key, value, coords)
    if isinstance(decoded, DecodeFailure):
        return DecodeFailure(decoded.error, decoded.message, key, value, coords, decoded.table, headers)
    if isinstance(decoded, Skip):
        return decoded
    table = decoded.table
    if not rules.captured(table):
        return DecodeFailure("OutsideCaptureRules", f"{table} is outside the capture rules (include/exclude databases)",
                             key, value, coords, table, headers)
    if rules.topic(table) != coords.topic:
        return DecodeFailure("WrongTopic", f"a change of {table} on topic {coords.topic} (expected {rules.topic(table)})",
                             key, value, coords, table, headers)
    left_out = rules.columns_left_out(table)
    if left_out & set(decoded.schema.key):
        return DecodeFailure("ExcludedKeyColumn", f"{table}: key columns {sorted(left_out & set(decoded.schema.key))} are "
                             "excluded (tables.<db.table>.exclude_columns): a key cannot be left out", key, None, coords, table, ())
    decoded = without_columns(decoded, left_out) if left_out else decoded
    flags = booleans(table) if booleans is not None else ()
    if flags:
        try:
            decoded = as_booleans(decoded, flags)
        except DecodeError as exc:
            return DecodeFailure(type(exc).__name__, str(exc), key, value, coords, table, headers)
    return decoded


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
