"""The exactly-once append: land rows from Kafka into one Iceberg table, each offset at most once.

One attempt: load the table, drop the rows below the offsets it recorded (`offsets.not_landed`),
append the rest in one snapshot whose summary carries the offsets moved forward. Attempts repeat
under the retry policy: a conflict at once, an unavailable catalog or an unknown outcome with
backoff (the next attempt's reload settles whether the earlier one went through), a terminal
error never (the caller halts the table).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import pyarrow as pa
from pyiceberg.table import Table

from cdc.events.model import KafkaCoordinates
from cdc.ingest import offsets as off
from cdc.lake import bookkeeping
from cdc.retry import RetryPolicy, retrying

log = logging.getLogger(__name__)


class Sink(Protocol):
    """A table that takes landing commits (a changelog table, the dead-letter table)."""

    name: str

    def load(self) -> Table: ...

    def write(self, table: Table, rows: pa.Table, record: bookkeeping.Landing) -> None:
        """Append `rows` in one metadata commit that records `record` (summary and table properties)."""


def landed_offsets(table: Table) -> off.Offsets:
    """The offsets a table's newest landing commit recorded."""
    return bookkeeping.landing(table).offsets


def landed_state(table: Table) -> tuple[off.Offsets, dict[str, str]]:
    """The offsets and topic ids of the table's newest landing commit."""
    record = bookkeeping.landing(table)
    return record.offsets, record.topic_ids


def append_once(
    sink: Sink,
    rows: pa.Table,
    coordinates: Sequence[KafkaCoordinates],
    offsets: off.Offsets,
    policy: RetryPolicy,
    replay: bool = False,
    topic_ids: dict[str, str] | None = None,
) -> int:
    """Land the rows (one per entry of `coordinates`) not landed yet; returns how many this call landed.

    `replay` lands rows below the recorded offsets on purpose (dead letters replayed after a fix).
    `topic_ids`: the current id of each topic; offsets recorded for an earlier topic of the same name
    (deleted and recreated) filter nothing and are replaced.
    """
    current = topic_ids or {}
    attempts = 0

    def attempt() -> int:
        nonlocal attempts
        attempts += 1
        table = sink.load()
        before = bookkeeping.landing(table)
        landed_ids = before.topic_ids
        landed = {t: o for t, o in before.offsets.items() if not off.other_incarnation(landed_ids, current, t)}
        keep = [True] * len(coordinates) if replay else off.not_landed(coordinates, lambda c: c, landed)
        fresh = rows if all(keep) else rows.filter(pa.array(keep, type=pa.bool_()))
        if fresh.num_rows == 0:
            if attempts > 1:
                log.info("%s: the earlier attempt had committed (%d records); reconciled from the table", sink.name, len(coordinates))
            elif rows.num_rows:
                log.info("%s: %d records were already in the lake, skipped", sink.name, rows.num_rows)
            return 0
        sink.write(table, fresh, bookkeeping.Landing(off.forward(landed, offsets), {**landed_ids, **current}, before.landed + 1))
        return int(fresh.num_rows)

    return retrying(sink.name, policy, attempt)
