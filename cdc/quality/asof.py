"""The lake side of a reconciliation: the lake's rows as of a source position S, inside DuckDB.

As of S, a key's row is:
- the base (`main`) row, with the changelog's changes the base has not folded in yet and that are before S
  applied on top, exactly as the merge would: the newest change per key (by `_seq`, then Kafka partition
  and offset) wins when it is newer than the base row (or, without one, than the key's tombstone); a delete
  removes the key; a truncate before S removes every older row;
- for a key the base already holds a change of at or after S for (its row's or its tombstone's `_seq` is
  >= S: merged after S), the key's newest change before S in the whole changelog; without one, the key did
  not exist at S when its first change after S is an insert; otherwise it is *not evaluable* (its value at S
  came from the bootstrap snapshot, which the changelog does not hold) and is left out on both sides.

Which changelog rows are unmerged: those in the data files of the changelog's current snapshot that the
snapshot the base recorded as folded in (`cdc.merged-changelog-snapshot`) does not have, so the slice read
is bounded by the unmerged volume. A changelog file rewritten by maintenance reappears as unmerged: its
changes are then not newer than the base rows (or tombstones) they produced, so applying them again changes
nothing, the same rule that keeps a re-run merge a no-op.

Per bucket, the as-of-S aggregate is computed without joining the whole base: the aggregate of every base
row, minus that of the base rows of the keys touched (by an unmerged change before S, or by a change at or
after S), plus that of those keys' rows as of S. Memory is bounded by the touched keys.

The fold itself is `fold_sql` (pure, unit-tested on tables built in the test).
"""

from __future__ import annotations

from collections.abc import Sequence

from cdc.lake.contract import KAFKA_OFFSET, KAFKA_PARTITION, OP, SEQ
from cdc.quality.checksum_sql import duck_ident

# relations the fold reads (registered by the caller) and writes
UNMERGED = "unmerged"  # unmerged changelog rows: compared columns + _op, _seq, partition, offset
LATE = "late_keys"  # key columns of base rows and tombstones with _seq >= S
TOUCHED_BASE = "touched_base"  # base rows of the touched keys: compared columns + _seq
TOMBS = "touched_tombstones"  # tombstones of the touched keys: key columns + _seq
HISTORY = "late_history"  # every changelog row of the late keys: compared columns + _op, _seq, partition, offset
ASOF = "asof"  # out: the touched keys' rows as of S (compared columns)
NOT_EVALUABLE = "not_evaluable"  # out: key texts


def seq_literal(seq: int) -> str:
    return f"CAST('{int(seq)}' AS DECIMAL(38,0))"


def _newest(relation: str, ascending: bool = False) -> str:
    direction = "ASC" if ascending else "DESC"
    return (f"QUALIFY row_number() OVER (PARTITION BY _k ORDER BY {duck_ident(SEQ)} {direction}, "
            f"{duck_ident(KAFKA_PARTITION)} {direction}, {duck_ident(KAFKA_OFFSET)} {direction}) = 1")


def touched_keys_sql(key_text: str, seq: int, floor: int | None) -> str:
    """Pure: the key texts whose as-of-S row the fold computes (an unmerged change before S, or late)."""
    above = f" AND {duck_ident(SEQ)} > {seq_literal(floor)}" if floor is not None else ""
    return (f"SELECT DISTINCT {key_text} AS _k FROM {duck_ident(UNMERGED)} "  # noqa: S608 - built here
            f"WHERE {duck_ident(SEQ)} < {seq_literal(seq)} AND {duck_ident(OP)} <> 't'{above} "
            f"UNION SELECT DISTINCT {key_text} FROM {duck_ident(LATE)}")


def fold_sql(columns: Sequence[str], key_text: str, seq: int, floor: int | None, trusted_from: int | None) -> tuple[str, str]:
    """Pure: (the touched keys' rows as of S, the key texts not evaluable as of S).

    `floor`: the truncate floor as of S (rows and changes at or below it are gone); `trusted_from`: the
    `_seq` the changelog is complete from (the bootstrap's): older changes are not used for late keys.
    """
    s = seq_literal(seq)
    cols = ", ".join(duck_ident(c) for c in columns)
    q_seq, q_op = duck_ident(SEQ), duck_ident(OP)
    above = f" AND {q_seq} > {seq_literal(floor)}" if floor is not None else ""
    trusted = f" AND {q_seq} > {seq_literal(trusted_from)}" if trusted_from is not None else ""
    ctes = (
        f"WITH late AS (SELECT DISTINCT {key_text} AS _k FROM {duck_ident(LATE)}), "  # noqa: S608 - built here
        f"b AS (SELECT *, {key_text} AS _k FROM {duck_ident(TOUCHED_BASE)} WHERE TRUE{above}), "
        f"t AS (SELECT {key_text} AS _k, max({q_seq}) AS _ts FROM {duck_ident(TOMBS)} GROUP BY 1), "
        f"u AS (SELECT *, {key_text} AS _k FROM {duck_ident(UNMERGED)} WHERE {q_seq} < {s} AND {q_op} <> 't'{above}), "
        f"newer AS (SELECT u.* FROM u LEFT JOIN b ON u._k = b._k LEFT JOIN t ON u._k = t._k "
        f"WHERE u._k NOT IN (SELECT _k FROM late) AND u.{q_seq} > coalesce(b.{q_seq}, t._ts, -1)), "
        f"early AS (SELECT * FROM newer {_newest('newer')}), "
        f"h AS (SELECT *, {key_text} AS _k FROM {duck_ident(HISTORY)} WHERE {q_op} <> 't' "
        f"AND _k IN (SELECT _k FROM late)), "
        f"before AS (SELECT * FROM h WHERE {q_seq} < {s}{above}{trusted} {_newest('h')}), "
        f"after AS (SELECT _k, {q_op} FROM h WHERE {q_seq} >= {s} {_newest('h', ascending=True)}) "
    )
    rows = (
        ctes  # noqa: S608 - built here
        + f"SELECT {cols} FROM early WHERE {q_op} <> 'd' "  # noqa: S608 - built here
        + f"UNION ALL SELECT {cols} FROM b WHERE _k NOT IN (SELECT _k FROM early) AND _k NOT IN (SELECT _k FROM late) "  # noqa: S608 - built here
        + f"UNION ALL SELECT {cols} FROM before WHERE {q_op} <> 'd'"  # noqa: S608 - built here
    )
    unknown = (
        ctes  # noqa: S608 - built here
        + "SELECT _k FROM late WHERE _k NOT IN (SELECT _k FROM before) "
        + f"AND _k NOT IN (SELECT _k FROM after WHERE {q_op} = 'c')"  # noqa: S608 - built here
    )
    return rows, unknown
