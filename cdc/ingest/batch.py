"""One flush's worth of classified messages. Pure: no Kafka client, no catalog.

The consumer adds every message it polls; `cdc.ingest.landing` lands a full batch. Every offset
added is accounted for: a change of some table, a dead letter, or a skip (a delete's tombstone).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdc.events.model import ChangeEvent, DecodeFailure, KafkaCoordinates, Skip, TableId

Raw = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]  # key, value, headers


@dataclass
class TableChanges:
    """The changes of one table in arrival order, with each message's raw bytes (for the dead-letter
    table, should a value turn out not to fit the lake's column)."""

    events: list[ChangeEvent] = field(default_factory=list)
    raws: list[Raw] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.events[0].coordinates.topic


@dataclass
class Batch:
    tables: dict[TableId, TableChanges] = field(default_factory=dict)
    failures: list[DecodeFailure] = field(default_factory=list)
    skipped: int = 0
    messages: int = 0
    bytes: int = 0
    first_at: float | None = None
    # next offset per (topic, partition) after the messages added; first offset added per partition
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    starts: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, decoded: ChangeEvent | Skip | DecodeFailure, raw: Raw, now: float) -> None:
        c: KafkaCoordinates = decoded.coordinates
        part = (c.topic, c.partition)
        self.starts.setdefault(part, c.offset)
        self.ends[part] = c.offset + 1
        self.messages += 1
        if isinstance(decoded, Skip):
            self.skipped += 1
            return
        self.bytes += len(raw[0] or b"") + len(raw[1] or b"")
        if self.first_at is None:
            self.first_at = now
        if isinstance(decoded, ChangeEvent):
            changes = self.tables.setdefault(decoded.table, TableChanges())
            changes.events.append(decoded)
            changes.raws.append(raw)
        else:
            self.failures.append(decoded)

    @property
    def rows(self) -> int:
        return sum(len(t.events) for t in self.tables.values()) + len(self.failures)

    def due(self, now: float, max_rows: int, max_bytes: int, max_seconds: float) -> bool:
        if self.rows == 0:
            return False
        age = now - (self.first_at if self.first_at is not None else now)
        return self.rows >= max_rows or self.bytes >= max_bytes or age >= max_seconds

    def ends_for(self, topic: str) -> dict[int, int]:
        """The next offset of every partition of `topic` this batch read."""
        return {p: o for (t, p), o in self.ends.items() if t == topic}

    def starts_for(self, topic: str) -> dict[int, int]:
        """The first offset of every partition of `topic` this batch read."""
        return {p: o for (t, p), o in self.starts.items() if t == topic}

    def topics(self) -> set[str]:
        return {t for t, _ in self.ends}
