"""The freshness contract's yardstick: points in the source's history, and when a table has landed past one.

A point is read at the source: its clock (NOW()) first, then its binlog `file:pos` (every transaction committed
before that time ends at or before it), then the GTID state at that position. Connect commits a source
offset only once every record before it is acknowledged, and Debezium's offset names the transactions
completed before the record; so once Connect's committed GTIDs cover the point's, every change before the
point is in Kafka, below the end offsets of the topics read after that moment. A table's changelog is then
complete through the point once its partitions have landed up to those end offsets.

Debezium's offset names the transactions completed before its record, so the last transaction before a quiet
moment (or one touching only tables outside capture) is covered only by a later record: after a few seconds
the probe commits markers A and B on the always-captured marker table, and takes the point after A. Later
points where nothing but B happened since are covered already (a marker carries no table data), so an idle
source gets markers once, not on every probe. A change that went to the dead-letter table counts as landed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from pyiceberg.catalog import Catalog

from cdc.config import Settings
from cdc.connectors import committed_gtids, covers, gtid_position, write_markers
from cdc.errors import ServiceError, TransientError
from cdc.events.model import TableId
from cdc.events.position import STREAM, BinlogPosition, binlog_file_index
from cdc.ingest.watermarks import admin_client
from cdc.lake import state
from cdc.lake.state import Through
from cdc.retry import RetryPolicy, retrying

log = logging.getLogger(__name__)

Part = tuple[str, int]
MARKERS_AFTER_SECONDS = 5.0  # Connect commits offsets every second on the local stack (offset.flush.interval.ms)


@dataclass(frozen=True)
class SourcePoint:
    file: str
    pos: int
    gtids: dict[int, int]
    ts_ms: int

    @property
    def seq(self) -> int:
        """The `_seq` of the point: every change before it has a smaller `_seq`."""
        return BinlogPosition(STREAM, binlog_file_index(self.file), self.pos, 0).pack()

    @property
    def through(self) -> Through:
        return Through(self.seq, f"{self.file}:{self.pos}", self.ts_ms)


def _point(cur: Any, host: str) -> SourcePoint:
    # the source's clock, read before the position: a transaction committed before that time ends at or below it
    cur.execute("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)")
    ts_row = cur.fetchone()
    cur.execute("SHOW MASTER STATUS")
    row = cur.fetchone()
    if not row or not ts_row:
        raise ServiceError(f"the source at {host} has no binary log (log_bin is off)")
    file, pos = str(row[0]), int(row[1])
    cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
    gtid_row = cur.fetchone()
    if not gtid_row or gtid_row[0] is None:  # '' is a server that never committed; NULL a position it cannot map
        raise TransientError(f"the source at {host} cannot map {file}:{pos} to GTIDs (binlog rotated or purged meanwhile)")
    return SourcePoint(file, pos, gtid_position(str(gtid_row[0])), int(ts_row[0]))


def read_point(settings: Settings) -> SourcePoint:
    """The source's current point (needs REPLICATION CLIENT, which the admin user has)."""
    from cdc.source import connect

    conn = connect(settings)
    try:
        return _point(conn.cursor(), f"{settings.mariadb.host}:{settings.mariadb.port}")
    finally:
        conn.close()


@dataclass(frozen=True)
class Covered:
    """A point Connect has committed every transaction before, and the GTID state that still means nothing but
    our own marker came after it (None: no marker written)."""

    point: SourcePoint
    quiet: dict[int, int] | None = None


def _markers(settings: Settings) -> Covered:
    """Commit marker A, take the point after it, commit marker B; B's record gives Connect an offset that covers
    that point. When B directly follows the point, a later point with B as its only newer transaction is as
    complete as this one (a marker carries no table data): that is `quiet`."""
    point, after = write_markers(settings, lambda cur: _point(cur, f"{settings.mariadb.host}:{settings.mariadb.port}"))
    quiet = None
    for domain, seq in after.items():
        if point.gtids.get(domain, 0) + 1 == seq:  # B is the next transaction after the point in its domain
            quiet = {**point.gtids, domain: seq}
    return Covered(point, quiet)


def wait_covered(settings: Settings, point: SourcePoint, timeout: float, stop: threading.Event | None = None) -> Covered | None:
    """Wait until Connect has committed every transaction before `point`. Debezium's offset names the
    transactions completed before its record, so the last one before an idle moment is never covered by itself:
    after a few seconds, markers give it a later record (and a later point). None when `stop` was set first;
    ServiceError after `timeout`."""
    started = time.monotonic()
    covered = Covered(point)
    have: dict[int, int] = {}
    while stop is None or not stop.is_set():
        have = committed_gtids(settings)
        if covers(have, covered.point.gtids):
            return covered
        waited = time.monotonic() - started
        if waited > timeout:
            raise ServiceError(f"Debezium has not captured up to the source position {point.file}:{point.pos} (GTID "
                               f"{point.gtids}) within {timeout:.0f} s (committed: {have}): is the connector running? "
                               "(`cdc connectors status`)")
        if covered.quiet is None and covered.point is point and waited > MARKERS_AFTER_SECONDS:
            covered = _markers(settings)
        time.sleep(0.2)
    return None


def end_offsets(admin: AdminClient, topics: Mapping[str, Collection[int]], timeout: float = 10.0) -> dict[Part, int]:
    """The next offset of every listed partition (one request for all)."""
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    request = {TopicPartition(t, p): latest for t, parts in topics.items() for p in parts}
    if not request:
        return {}
    out: dict[Part, int] = {}
    try:
        for tp, future in admin.list_offsets(request, request_timeout=timeout).items():
            out[(tp.topic, tp.partition)] = int(future.result().offset)
    except Exception as exc:  # noqa: BLE001 - KafkaException and friends: Kafka is away or the topic went
        raise TransientError(f"cannot read the end offsets of {len(topics)} topics: {exc}") from exc
    return out


def data_partitions(admin: AdminClient, is_data_topic: Callable[[str], bool], timeout: float = 10.0) -> dict[str, list[int]]:
    """The partitions of every data topic in Kafka now."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - KafkaException: Kafka is away
        raise TransientError(f"cannot list the topics: {exc}") from exc
    return {t: sorted(m.partitions) for t, m in metadata.topics.items() if m.error is None and is_data_topic(t)}


@dataclass(frozen=True)
class Probe:
    """A point every change before which is in Kafka below `ends`."""

    point: SourcePoint
    ends: dict[Part, int]


def settle(settings: Settings, admin: AdminClient, is_data_topic: Callable[[str], bool], timeout: float,
           stop: threading.Event | None = None, previous: Covered | None = None) -> tuple[Probe, Covered] | None:
    """Read a point, wait until Connect covers it, then read the end offsets (None when stopped). A point at
    which nothing but `previous`'s own marker happened since `previous` is covered by it already."""
    point = read_point(settings)
    covered: Covered | None
    if previous is not None and (point.gtids == previous.point.gtids or point.gtids == previous.quiet):
        covered = Covered(point, previous.quiet if point.gtids == previous.point.gtids else point.gtids)
    else:
        covered = wait_covered(settings, point, timeout, stop)
    if covered is None:
        return None
    return Probe(covered.point, end_offsets(admin, data_partitions(admin, is_data_topic))), covered


def through_tables(probe: Probe, tables: Mapping[TableId, str], landed: Mapping[Part, int],
                   owned: Callable[[Part], bool]) -> list[TableId]:
    """Pure: the tables (with their topics) whose every partition this consumer owns has landed up to the
    probe's end offsets. A table whose topic has partitions owned elsewhere is left to their owner; one whose
    topic does not exist has no change in Kafka at all."""
    out = []
    for table, topic in tables.items():
        parts = [p for p in probe.ends if p[0] == topic]
        if not parts:
            out.append(table)
        elif all(owned(p) for p in parts) and all(landed.get(p, -1) >= probe.ends[p] for p in parts):
            out.append(table)
    return out


class Prober:
    """A background thread settling a probe every `interval` seconds; `take()` hands them over."""

    def __init__(self, settings: Settings, is_data_topic: Callable[[str], bool], interval: float) -> None:
        self._settings, self._is_data_topic, self._interval = settings, is_data_topic, interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._settled: list[Probe] = []
        self._admin = admin_client(settings)
        self._thread = threading.Thread(target=self._loop, name="cdc-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def take(self) -> list[Probe]:
        with self._lock:
            out, self._settled = self._settled, []
        return out

    def _loop(self) -> None:
        previous: Covered | None = None
        while not self._stop.is_set():
            try:
                settled = settle(self._settings, self._admin, self._is_data_topic, max(60.0, 4 * self._interval), self._stop, previous)
            except Exception as exc:  # noqa: BLE001 - a probe that fails only delays freshness: say so, try again
                log.warning("could not read how far the source is captured (freshness not advanced): %s", exc)
                settled = None
            if settled is not None:
                probe, previous = settled
                with self._lock:
                    self._settled = [*self._settled[-4:], probe]
            self._stop.wait(self._interval)


def _order(point: Through) -> tuple[int, int]:
    """Points compare by position, then by time (an idle source's point keeps its position, later)."""
    return point.seq, point.ts_ms


class Freshness:
    """The settled probes some table has not landed past yet, and the point recorded per table (never moved back,
    also not behind another consumer's)."""

    def __init__(self, catalog: Catalog, policy: RetryPolicy) -> None:
        self._catalog, self._policy = catalog, policy
        self._probes: list[Probe] = []
        self._through: dict[TableId, tuple[int, int]] = {}

    def pending(self, settled: list[Probe]) -> bool:
        """Take newly settled probes; whether any probe waits."""
        self._probes = [*self._probes, *settled][-5:]
        return bool(self._probes)

    def advance(self, topics: Mapping[TableId, str], landed: Mapping[Part, int], owned: Callable[[Part], bool]) -> None:
        newest: dict[TableId, Probe] = {}
        for probe in self._probes:  # oldest first: a later point that is reached replaces an earlier one
            for table in through_tables(probe, topics, landed, owned):
                if _order(probe.point.through) > self._through.get(table, (-1, 0)):
                    newest[table] = probe
        if newest:
            recorded = retrying("read the landed points", self._policy, lambda: state.landed_through(self._catalog))
            points = {t: p.point.through for t, p in newest.items()
                      if t not in recorded or _order(p.point.through) > _order(recorded[t])}
            retrying("record the landed points", self._policy, lambda: state.record_landed_through(self._catalog, points))
            for t, p in newest.items():
                self._through[t] = _order(p.point.through)
            if points:
                log.info("%d table(s) complete through the source position %s", len(points), next(iter(points.values())).position)
        # a probe every table has passed is done; keep the newest ones for tables that have not (nor ever will)
        self._probes = [p for p in self._probes if any(self._through.get(t, (-1, 0)) < _order(p.point.through) for t in topics)]
