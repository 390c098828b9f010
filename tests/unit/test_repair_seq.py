"""Where a repair's rows sit in the order of changes (review finding: at the snapshot's own position, a check at
the same position -- a quiet source -- treated the repair as after it and reported the repaired keys again)."""

from __future__ import annotations

from cdc.events.position import STREAM, BinlogPosition
from cdc.quality.reconcile import snapshot_seq
from cdc.quality.repair import repair_seq


def test_a_repair_is_before_a_check_at_its_position_and_after_every_earlier_change() -> None:
    repaired = repair_seq("mysql-bin.000007", 5000)
    assert repaired < snapshot_seq("mysql-bin.000007", 5000)  # a check on a quiet source sees it
    last_before = BinlogPosition(STREAM, 7, 4999, 10**12 - 1).pack()  # the latest row of an event before it
    assert repaired >= last_before
    assert repaired > BinlogPosition(STREAM, 7, 4998, 5).pack()
    assert repaired < BinlogPosition(STREAM, 7, 5000, 0).pack()  # the first change after it wins
