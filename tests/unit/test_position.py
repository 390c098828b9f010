"""`_seq`: binlog positions packed into one exact, totally ordered integer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from cdc.events.position import MAX_SEQ, SNAPSHOT, STREAM, BinlogPosition, binlog_file_index

positions = st.builds(
    BinlogPosition,
    phase=st.sampled_from([SNAPSHOT, STREAM]),
    file_index=st.integers(0, 10**7 - 1),
    pos=st.integers(0, 10**18 - 1),
    row=st.integers(0, 10**12 - 1),
)


def as_tuple(p: BinlogPosition) -> tuple[int, int, int, int]:
    return (p.phase, p.file_index, p.pos, p.row)


@settings(database=None)
@given(positions)
def test_pack_unpack_round_trip(p: BinlogPosition) -> None:
    seq = p.pack()
    assert 0 <= seq <= MAX_SEQ  # fits DECIMAL(38,0)
    assert BinlogPosition.unpack(seq) == p


@settings(database=None)
@given(positions, positions)
def test_packed_order_is_the_order_of_phase_file_pos_row(a: BinlogPosition, b: BinlogPosition) -> None:
    assert (a.pack() < b.pack()) == (as_tuple(a) < as_tuple(b))
    assert (a.pack() == b.pack()) == (as_tuple(a) == as_tuple(b))


def test_digit_layout() -> None:
    assert BinlogPosition(STREAM, 1, 2277, 3).pack() == int("1" + "0000001" + "000000000000002277" + "000000000003")
    assert BinlogPosition(SNAPSHOT, 0, 0, 0).pack() == 0
    largest = BinlogPosition(STREAM, 10**7 - 1, 10**18 - 1, 10**12 - 1).pack()
    assert largest == int("1" + "9" * 37)
    assert largest <= MAX_SEQ == 10**38 - 1


def test_any_snapshot_read_ranks_below_any_streamed_change() -> None:
    last_snapshot = BinlogPosition(SNAPSHOT, 10**7 - 1, 10**18 - 1, 10**12 - 1)
    first_stream = BinlogPosition(STREAM, 0, 0, 0)
    assert last_snapshot.pack() < first_stream.pack()


@pytest.mark.parametrize(
    ("position", "message"),
    [
        (BinlogPosition(2, 1, 4, 0), "phase must be 0 or 1, got 2"),
        (BinlogPosition(-1, 1, 4, 0), "phase must be 0 or 1, got -1"),
        (BinlogPosition(STREAM, -1, 4, 0), "binlog file index -1 is outside 0..9999999"),
        (BinlogPosition(STREAM, 10**7, 4, 0), "binlog file index 10000000 is outside 0..9999999"),
        (BinlogPosition(STREAM, 1, -1, 0), "binlog position -1 is outside 0..999999999999999999"),
        (BinlogPosition(STREAM, 1, 10**18, 0), "binlog position 1000000000000000000 is outside"),
        (BinlogPosition(STREAM, 1, 4, -1), "row -1 is outside 0..999999999999"),
        (BinlogPosition(STREAM, 1, 4, 10**12), "row 1000000000000 is outside 0..999999999999"),
    ],
)
def test_out_of_range_parts_are_refused(position: BinlogPosition, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.")):
        position.pack()


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("mysql-bin.000001", 1),
        ("mysql-bin.000042", 42),
        ("mariadb-bin.1000000", 1000000),
        ("/var/lib/mysql/binlog.0000007", 7),
        ("host.with.dots-bin.000010", 10),
    ],
)
def test_binlog_file_index(name: str, index: int) -> None:
    assert binlog_file_index(name) == index


def test_binlog_file_index_orders_numerically_past_the_padding() -> None:
    assert binlog_file_index("mysql-bin.999999") < binlog_file_index("mysql-bin.1000000")


@pytest.mark.parametrize("name", ["mysql-bin", "mysql-bin.", "mysql-bin.00a1", "mysql-bin.000001.gz", ""])
def test_binlog_file_without_a_numeric_suffix_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="has no numeric suffix"):
        binlog_file_index(name)
