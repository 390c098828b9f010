"""`_seq`: a totally ordered source position packed into one exact integer (DECIMAL(38,0)).

Layout, most significant first (decimal digits):
  phase (1) | binlog file index (7) | position in file (18) | row in event (12)
Phase 0 is a snapshot read, phase 1 a streamed change, so a snapshot read of a key ranks below
any streamed change of it. Integers compare exactly everywhere (Python, Arrow, Spark, SQL),
unlike file names such as `mysql-bin.000010` compared as text. Ties (same event, same row) are
broken by Kafka partition and offset, which the changelog keeps beside `_seq`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SNAPSHOT = 0
STREAM = 1

_ROW_DIGITS = 12
_POS_DIGITS = 18
_FILE_DIGITS = 7
_ROW_SPAN = 10**_ROW_DIGITS
_POS_SPAN = 10**_POS_DIGITS
_FILE_SPAN = 10**_FILE_DIGITS
MAX_SEQ = 10**38 - 1

_FILE_INDEX_RE = re.compile(r"\.(\d+)$")


@dataclass(frozen=True, slots=True, order=True)
class BinlogPosition:
    phase: int
    file_index: int
    pos: int
    row: int

    def pack(self) -> int:
        """The packed `_seq` value; raises ValueError when a part is out of its range."""
        if self.phase not in (SNAPSHOT, STREAM):
            raise ValueError(f"phase must be 0 or 1, got {self.phase}")
        for name, value, span in (
            ("binlog file index", self.file_index, _FILE_SPAN),
            ("binlog position", self.pos, _POS_SPAN),
            ("row", self.row, _ROW_SPAN),
        ):
            if not 0 <= value < span:
                raise ValueError(f"{name} {value} is outside 0..{span - 1}")
        packed: int = ((self.phase * _FILE_SPAN + self.file_index) * _POS_SPAN + self.pos) * _ROW_SPAN + self.row
        return packed

    @classmethod
    def unpack(cls, seq: int) -> BinlogPosition:
        rest, row = divmod(seq, _ROW_SPAN)
        rest, pos = divmod(rest, _POS_SPAN)
        phase, file_index = divmod(rest, _FILE_SPAN)
        return cls(phase, file_index, pos, row)


def binlog_file_index(file_name: str) -> int:
    """`mysql-bin.000042` -> 42; raises ValueError for a name without a numeric suffix."""
    match = _FILE_INDEX_RE.search(file_name)
    if not match:
        raise ValueError(f"binlog file name {file_name!r} has no numeric suffix")
    return int(match.group(1))
