"""The commit protocol: append Kafka records to an Iceberg table exactly once.

Each append's snapshot summary carries the next Kafka offset of every partition the table has
seen (`cdc.kafka-offsets`). Before each attempt the table is read again and the records below
the offsets it recorded are dropped, so a replayed range, a stale consumer's batch, or a retry
after a commit whose outcome was unknown (it may have gone through) never lands twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from sqlalchemy.exc import SQLAlchemyError

from cdc.errors import CdcError, ServiceError
from cdc.events.model import KafkaCoordinates
from cdc.lake.catalog import committed_offsets

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 10
T = TypeVar("T")
# a commit that raised one of these may or may not have gone through: settle it from the table
UNKNOWN_OUTCOME = (OSError, CdcError, RuntimeError, ValueError, SQLAlchemyError)
Offsets = dict[str, dict[int, int]]


def merged(recorded: Offsets, new: Offsets) -> Offsets:
    """Pure: the recorded offsets moved forward by `new` (never backwards)."""
    out = {topic: dict(parts) for topic, parts in recorded.items()}
    for topic, parts in new.items():
        mine = out.setdefault(topic, {})
        for p, o in parts.items():
            mine[p] = max(o, mine.get(p, 0))
    return out


def not_yet_landed(items: Sequence[T], coordinates: Callable[[T], KafkaCoordinates], recorded: Offsets) -> list[T]:
    """Pure: the records at or above the next offset the table recorded for their partition."""
    return [
        item for item in items
        if (c := coordinates(item)).offset >= recorded.get(c.topic, {}).get(c.partition, -1)
    ]


def append_once(
    what: str,
    load: Callable[[], Table],
    items: Sequence[T],
    coordinates: Callable[[T], KafkaCoordinates],
    offsets: Offsets,
    append: Callable[[Table, list[T], Offsets], int | None],
    replay: bool = False,
    timeout: float = 300.0,
) -> list[T]:
    """Land `items` with `offsets` in one snapshot; returns the items this call landed.

    Conflicts are retried at once; an unavailable catalog with backoff until `timeout` (consumption
    waits meanwhile: that is the back-pressure). `replay` lands items below the recorded offsets on
    purpose (dead letters replayed after a fix).
    """
    deadline = time.monotonic() + timeout
    conflicts = 0
    attempt = 0
    table = _load_when_available(what, load, deadline)
    while True:
        attempt += 1
        recorded = committed_offsets(table)
        fresh = list(items) if replay else not_yet_landed(items, coordinates, recorded)
        if not fresh:
            if attempt > 1:
                log.info("%s: the earlier attempt had committed (%d records); reconciled from the table", what, len(items))
            else:
                log.info("%s: %d records were already in the lake, skipped", what, len(items))
            return []
        try:
            append(table, fresh, merged(recorded, offsets))
            return fresh
        except CommitFailedException as exc:
            conflicts += 1
            log.warning("%s: commit conflict %d/%d: %s", what, conflicts, CONFLICT_RETRIES, exc)
            if conflicts >= CONFLICT_RETRIES:
                raise ServiceError(f"{what}: gave up after {conflicts} commit conflicts") from exc
        except UNKNOWN_OUTCOME as exc:
            # outcome unknown: it may have committed; the table's recorded offsets decide on the next round
            log.warning("%s: commit outcome unknown (attempt %d), reconciling from the table: %s", what, attempt, exc)
            _backoff(what, attempt, deadline, exc)
        table = _load_when_available(what, load, deadline)


def _backoff(what: str, attempt: int, deadline: float, exc: BaseException) -> None:
    if time.monotonic() > deadline:
        raise ServiceError(f"{what}: the catalog did not take the commit in time: {exc}") from exc
    time.sleep(min(0.2 * 2**attempt, 10.0))


def _load_when_available(what: str, load: Callable[[], Table], deadline: float) -> Table:
    attempt = 0
    while True:
        attempt += 1
        try:
            return load()
        except UNKNOWN_OUTCOME as exc:
            log.warning("%s: catalog unavailable (attempt %d), backing off: %s", what, attempt, exc)
            _backoff(what, attempt, deadline, exc)
