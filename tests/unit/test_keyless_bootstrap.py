"""The bootstrap reads a table without a key in one pass (no key to page by), pure."""

from __future__ import annotations

from cdc.bootstrap.snapshot import chunk_query
from cdc.bootstrap.source_schema import SourceColumn
from cdc.events.model import TableId


def test_a_keyless_table_is_read_in_one_pass() -> None:
    columns = [SourceColumn("a", "int", "int", True), SourceColumn("b", "varchar", "varchar(9)", True)]
    q = chunk_query(TableId("probe", "t"), columns, [], 1000)
    assert (q.first, q.positions, q.width) == ("SELECT `a`, `b` FROM `probe`.`t`", (), 2)
