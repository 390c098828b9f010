"""The landing protocol as pure functions: the offsets record, the resume rule, and a simulation of
the flush order under crashes at every point (Hypothesis): every offset lands exactly once in
changelog tables ∪ dead-letter table."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings, strategies as st

from cdc.events.model import KafkaCoordinates
from cdc.ingest import offsets as off

T = "cdc.db.t"


def test_encode_decode_roundtrip() -> None:
    o = {T: {0: 5, 3: 7}, "cdc.db.u": {1: 0}}
    assert off.decode(off.encode(o)) == o
    assert off.encode(o) == '{"cdc.db.t":{"0":5,"3":7},"cdc.db.u":{"1":0}}'


def test_recorded_reads_the_newest_landing_commit_through_other_snapshots() -> None:
    summaries = [{"operation": "replace"}, None, {off.OFFSETS: off.encode({T: {0: 9}})}, {off.OFFSETS: off.encode({T: {0: 2}})}]
    assert off.recorded(summaries) == {T: {0: 9}}
    assert off.recorded([{"operation": "append"}]) == {}


def test_forward_never_goes_back() -> None:
    assert off.forward({T: {0: 9, 1: 3}}, {T: {0: 4, 1: 8, 2: 1}}) == {T: {0: 9, 1: 8, 2: 1}}


def test_not_landed_filters_below_the_recorded_offset() -> None:
    coords = [KafkaCoordinates(T, 0, o) for o in (3, 4, 5)] + [KafkaCoordinates(T, 1, 0)]
    assert off.not_landed(coords, lambda c: c, {T: {0: 5}}) == [False, False, True, True]


@pytest.mark.parametrize(
    ("changelogs", "dead", "low", "high", "expected"),
    [
        ([], None, 0, 10, off.Start(0)),  # a new topic, from its start
        ([], None, 4, 10, off.Start(4, unanchored=True)),  # trimmed before anything landed: a first landing halts
        ([], 7, 0, 10, off.Start(7)),  # a topic of nothing but dead letters
        ([6], 9, 0, 10, off.Start(6)),  # dead letters never hold a partition back, nor push it forward
        ([6, 3], None, 0, 10, off.Start(3)),  # two tables share the topic: the smaller
        ([6, None], None, 0, 10, off.Start(0)),  # a table that recorded nothing here: from the start
        ([6, None], None, 2, 10, off.Start(2, unanchored=True)),
        ([12], None, 0, 5, off.Halt),  # recorded past the end: the topic was recreated
        ([3], None, 5, 9, off.Halt),  # the topic now starts after what was landed: lost to retention
        ([5], None, 5, 5, off.Start(5)),
    ],
)
def test_resume_rule(changelogs: list[int | None], dead: int | None, low: int, high: int, expected: object) -> None:
    got = off.resume(changelogs, dead, low, high)
    if expected is off.Halt:
        assert isinstance(got, off.Halt)
    else:
        assert got == expected


# ---- the flush order, simulated ------------------------------------------------------------------
# A message is landed by table "x" or "y" (both fed by one topic, as `a b` and `a_b` are) or is bad.


@dataclass
class Sink:
    recorded: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    rows: list[tuple[int, int]] = field(default_factory=list)

    def commit(self, items: list[tuple[int, int]], ends: dict[int, int]) -> None:
        landed = {T: self.recorded}
        keep = off.not_landed([KafkaCoordinates(T, p, o) for p, o in items], lambda c: c, landed)
        self.rows += [i for i, k in zip(items, keep, strict=True) if k]
        self.recorded = off.forward(landed, {T: ends})[T]


class Crash(Exception):
    pass


@dataclass
class Lake:
    tables: dict[str, Sink] = field(default_factory=dict)
    dlq: Sink = field(default_factory=Sink)


def _flush(lake: Lake, batch: list[tuple[int, int, str]], crash_at: int | None) -> None:
    """The order of cdc.ingest.landing: create+anchor new tables, dead letters, tables in name order."""
    steps = 0

    def step() -> None:
        nonlocal steps
        if crash_at is not None and steps == crash_at:
            raise Crash
        steps += 1

    ends: dict[int, int] = {}
    starts: dict[int, int] = {}
    for p, o, _ in batch:
        ends[p] = o + 1
        starts.setdefault(p, o)
    by_table: dict[str, list[tuple[int, int]]] = {}
    for p, o, what in batch:
        if what != "bad":
            by_table.setdefault(what, []).append((p, o))
    for name in sorted(by_table):
        if name not in lake.tables:
            step()
            lake.tables[name] = Sink(recorded=dict(starts))  # created with its anchor: where this batch starts
    step()
    bad = [(p, o) for p, o, what in batch if what == "bad"]
    if bad:
        lake.dlq.commit(bad, ends)
    for name, items in sorted(by_table.items()):
        step()
        lake.tables[name].commit(items, ends)
    step()


def _start(lake: Lake, partition: int, size: int) -> int:
    decision = off.resume([t.recorded.get(partition) for t in lake.tables.values()], lake.dlq.recorded.get(partition), 0, size)
    assert isinstance(decision, off.Start)
    return decision.offset


@settings(max_examples=300, deadline=None)
@given(
    log=st.lists(st.tuples(st.integers(0, 1), st.sampled_from(["x", "y", "bad"])), min_size=1, max_size=40),
    runs=st.lists(st.tuples(st.integers(1, 12), st.one_of(st.none(), st.integers(0, 6))), min_size=1, max_size=12),
)
def test_every_offset_lands_exactly_once_under_crashes_at_any_point(
    log: list[tuple[int, str]], runs: list[tuple[int, int | None]]
) -> None:
    partitions: dict[int, list[str]] = {0: [], 1: []}
    for p, what in log:
        partitions[p].append(what)
    lake = Lake()
    for flush_size, crash_at in [*runs, (10_000, None)]:  # the last run drains without a crash
        positions = {p: _start(lake, p, len(msgs)) for p, msgs in partitions.items()}
        batch = [(p, o, partitions[p][o]) for p in partitions for o in range(positions[p], len(partitions[p]))][:flush_size]
        try:
            _flush(lake, batch, crash_at)
        except Crash:
            continue
    landed = [r for t in lake.tables.values() for r in t.rows] + lake.dlq.rows
    expected = [(p, o) for p, msgs in partitions.items() for o in range(len(msgs))]
    assert sorted(landed) == sorted(expected)  # each offset once: nothing lost, nothing twice
    for name, sink in lake.tables.items():
        assert all(partitions[p][o] == name for p, o in sink.rows)
    assert all(partitions[p][o] == "bad" for p, o in lake.dlq.rows)


@pytest.mark.parametrize(
    ("recorded", "anchor", "high_now", "expected"),
    [
        ({}, {0: 40}, {0: 45}, {0: 40}),  # a new table: streaming takes over at the anchor
        ({0: 10}, {0: 40}, {0: 45}, {0: 40}),  # what lies between was before the snapshot: skipped
        ({0: 44}, {0: 40}, {0: 45}, {0: 44}),  # a consumer landed past the anchor meanwhile: kept
        ({0: 900}, {0: 3}, {0: 5}, {0: 3}),  # the topic was recreated: back to the new topic's anchor
        ({0: 10, 1: 7}, {0: 40}, {0: 45}, {0: 40, 1: 7}),
    ],
)
def test_reanchor(recorded: dict[int, int], anchor: dict[int, int], high_now: dict[int, int], expected: dict[int, int]) -> None:
    assert off.reanchor(recorded, anchor, high_now) == expected


def test_first_key_columns_iceberg_cannot_bucket() -> None:
    from cdc.events.model import Column, ColumnType, Kind, TableSchema
    from cdc.ingest.landing import unbucketable_key

    def schema(kind: Kind) -> TableSchema:
        return TableSchema((Column("k", ColumnType(kind)), Column("id", ColumnType(Kind.INT))), ("k", "id"))

    for kind in (Kind.BOOLEAN, Kind.FLOAT, Kind.DOUBLE):
        assert unbucketable_key(schema(kind)) == f"the first key column 'k' is {kind.value}: Iceberg cannot bucket it"
    for kind in (Kind.INT, Kind.LONG, Kind.STRING, Kind.DATE, Kind.TIMESTAMP, Kind.BINARY):
        assert unbucketable_key(schema(kind)) is None
