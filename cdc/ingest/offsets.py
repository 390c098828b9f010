"""The offsets record: which Kafka messages a lake table has landed. Pure: no Kafka, no catalog.

Every landing commit (a changelog append, a dead-letter append, a bootstrap anchor) stores in its
snapshot summary (`cdc.kafka-offsets`) the next offset per topic and partition: every message of
that partition below it that belongs to this table is in it. The protocol that keeps this true:

1. A flush lands its dead letters first, then each table's changes (`cdc.ingest.landing`).
2. A table drops, before each attempt, the records below the offsets it recorded (a replay, a
   stale consumer, a retry after an unknown outcome never lands twice).
3. A partition resumes at the smallest offset recorded by the changelog tables its topic feeds
   (`resume`), never from the consumer group. The dead-letter table never holds a partition back:
   a flush commits it before the changelogs, so a changelog's offset implies the dead letters
   below it are in. It decides only where no changelog table exists for the topic yet (a topic
   of nothing but bad messages): every table a flush lands is created before the dead letters
   are committed, so then nothing else was landed from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cdc.events.model import KafkaCoordinates
from cdc.lake.contract import OFFSETS, TOPIC_IDS

T = TypeVar("T")
Offsets = dict[str, dict[int, int]]


def encode(offsets: Mapping[str, Mapping[int, int]]) -> str:
    return json.dumps({t: {str(p): o for p, o in sorted(parts.items())} for t, parts in sorted(offsets.items())},
                      separators=(",", ":"))


def decode(raw: str) -> Offsets:
    data = json.loads(raw)
    return {str(topic): {int(p): int(o) for p, o in parts.items()} for topic, parts in data.items()}


def recorded(summaries: Iterable[Mapping[str, str] | None]) -> Offsets:
    """The offsets of the newest landing commit among snapshot summaries given newest first.

    Snapshots without offsets (a compaction, a schema change, a delete) are passed over.
    """
    for summary in summaries:
        raw = summary.get(OFFSETS) if summary is not None else None
        if raw:
            return decode(raw)
    return {}


def recorded_ids(summaries: Iterable[Mapping[str, str] | None]) -> dict[str, str]:
    """The Kafka topic ids recorded with the newest landing commit (summaries newest first)."""
    for summary in summaries:
        if summary is not None and summary.get(OFFSETS):
            raw = summary.get(TOPIC_IDS)
            return {str(k): str(v) for k, v in json.loads(raw).items()} if raw else {}
    return {}


def encode_ids(ids: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(ids.items())), separators=(",", ":"))


def other_incarnation(recorded: Mapping[str, str], current: Mapping[str, str], topic: str) -> bool:
    """Whether the offsets recorded for `topic` belong to an earlier topic of that name (deleted and
    recreated since). Unknown on either side (records from before ids were kept): not decided here."""
    return topic in recorded and topic in current and recorded[topic] != current[topic]


def forward(old: Mapping[str, Mapping[int, int]], new: Mapping[str, Mapping[int, int]]) -> Offsets:
    """`old` moved forward by `new`, partition by partition; never backwards."""
    out = {topic: dict(parts) for topic, parts in old.items()}
    for topic, parts in new.items():
        mine = out.setdefault(topic, {})
        for p, o in parts.items():
            mine[p] = max(o, mine.get(p, o))
    return out


def not_landed(items: Sequence[T], coordinates: Callable[[T], KafkaCoordinates], landed: Offsets) -> list[bool]:
    """For each item: is it at or above the next offset the table recorded for its partition?"""
    out: list[bool] = []
    for item in items:
        c = coordinates(item)
        out.append(c.offset >= landed.get(c.topic, {}).get(c.partition, -1))
    return out


@dataclass(frozen=True)
class Start:
    """Where a partition resumes. `unanchored`: nothing in the lake vouches for the messages below
    `offset` and the topic no longer starts at 0, so a table first landed from here may have lost
    its older changes to retention (it is halted, not started silently)."""

    offset: int
    unanchored: bool = False


@dataclass(frozen=True)
class Halt:
    """The partition cannot resume: its tables must be rebuilt (the reason says why)."""

    reason: str


def resume(changelogs: Sequence[int | None], dead_letters: int | None, low: int, high: int) -> Start | Halt:
    """The resume rule for one partition.

    `changelogs`: the next offset each changelog table fed by this topic recorded for the partition
    (None: that table recorded nothing for it); `dead_letters`: the dead-letter table's; `low`/`high`:
    the partition's first and next offsets in Kafka now.
    """
    if not changelogs:
        start, vouched = (dead_letters, True) if dead_letters is not None else (low, low == 0)
    elif any(c is None for c in changelogs):
        start, vouched = low, low == 0  # a table that recorded nothing here may hold anything from the start
    else:
        start, vouched = min(c for c in changelogs if c is not None), True
    if start > high:
        return Halt(f"the lake has landed up to offset {start} but the partition ends at {high}: the topic was deleted "
                    "and recreated (offsets reset)")
    if start < low:
        return Halt(f"the next offset to land is {start} but the partition now starts at {low}: messages were deleted "
                    "(retention) before they were landed")
    return Start(start, unanchored=not vouched)


def reanchor(recorded: Mapping[int, int], anchor: Mapping[int, int], high_now: Mapping[int, int],
             same_topic: bool = True) -> dict[int, int]:
    """The offsets a bootstrap records for its table's topic, per partition.

    `anchor`: each partition's end offset read before the snapshot was taken, so every message at or
    after it was written after the snapshot's position or is older (and loses to the snapshot rows in
    the merge). A landed offset past it stays (a consumer went on meanwhile); nothing recorded, or an
    offset past the partition's end, or offsets recorded for an earlier topic of the same name
    (`same_topic` false: it was deleted and recreated), is replaced by the anchor.
    """
    if not same_topic:
        return dict(anchor)
    out = dict(recorded)
    for p, a in anchor.items():
        r = recorded.get(p)
        out[p] = a if r is None or r > high_now.get(p, a) else max(r, a)
    return out
