"""Pure builders of the SQL that folds a keyless table's changelog into its base table, kept as a multiset.

A table without a key (none at the source, none declared) has rows that only their values tell apart,
and identical rows may repeat. The base holds as many copies of each row as the source:
- an insert (`c`, a snapshot read `r`) adds a row;
- a delete (`d`) removes ONE row with equal values in every column (NULLs equal);
- an update lands as two changelog rows at one position: a `d` of its before-image and a `u` of its
  after-image, i.e. a removal and an addition;
- a truncate (`t`) empties the table; only changes after it apply.

Replays and re-runs stay exact by the source position: every streamed change has its own `_seq` (binlog
file, position, row in event), so within a slice copies of one change (`_seq`, `_op`) collapse into one,
and across runs only changes newer than the position the last fold applied (recorded in its commit) apply.
That needs the changes of the table in source order: a keyless table's topic must have one partition
(Kafka spreads messages without a key over partitions). Snapshot reads (`r`) of one Debezium snapshot share
one position and are all kept.

The fold rewrites the (unpartitioned) table in one commit: the base rows and the slice's additions, of which
each distinct row keeps its count minus the slice's removals of it (the newest copies are kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

try:  # as a package (cdc merge) or as a file (spark-submit)
    from spark_jobs.merge_sql import Default, IdentifierError, qualified, quote
except ImportError:  # pragma: no cover
    from merge_sql import Default, IdentifierError, qualified, quote  # type: ignore[no-redef]
from cdc.lake.contract import APPLIED_SEQ as APPLIED_SEQ, KAFKA_OFFSET, KAFKA_PARTITION, OP, RANK, SEQ, SOURCE_TS

SLICE_VIEW = "_cdc_multiset_slice"
_COUNT = "_cdc_count"
_REMOVED = "_cdc_removed"


@dataclass(frozen=True)
class MultisetPlan:
    """What the fold needs to know about one keyless table."""

    target: tuple[str, ...]  # catalog, namespace, table (and `branch_<name>` to write an audit branch)
    source_view: str  # the changelog slice
    columns: tuple[str, ...]  # source columns of the base table, without _seq/_source_ts
    defaults: tuple[Default, ...] = ()  # added columns: rows older than the ADD read the default
    frozen: tuple[str, ...] = ()  # columns dropped at the source and kept: they no longer tell rows apart

    def __post_init__(self) -> None:
        if not [c for c in self.columns if c not in self.frozen]:
            raise IdentifierError("a multiset fold needs at least one column")
        for name in (*self.target, self.source_view, *self.columns):
            quote(name)

    @property
    def identity(self) -> tuple[str, ...]:
        """The columns whose values tell rows apart (every column the source still has)."""
        return tuple(c for c in self.columns if c not in self.frozen)


def _image(plan: MultisetPlan) -> str:
    """A row's columns as the source has them now: a row older than an added column reads its default."""
    defaults = {d.column: d for d in plan.defaults}
    exprs = []
    for c in plan.columns:
        d = defaults.get(c)
        exprs.append(quote(c) if d is None else
                     f"CASE WHEN {quote(SEQ)} < {int(d.below)} THEN {d.literal} ELSE {quote(c)} END AS {quote(c)}")
    return ", ".join(exprs)


def slice_sql(plan: MultisetPlan, applied: int | None, truncated: int | None) -> str:
    """The changes that apply: newer than the last applied position and the newest truncate in the slice
    (snapshot reads at that very position too), one row per streamed change and image (`_seq`, `_op`)."""
    floor = max((v for v in (applied, truncated) if v is not None), default=None)
    newer = "" if floor is None else f" AND (c.{quote(SEQ)} > {int(floor)} OR (c.{quote(OP)} = 'r' AND c.{quote(SEQ)} >= {int(floor)}))"
    return (
        f"SELECT * FROM (SELECT c.*, ROW_NUMBER() OVER (PARTITION BY c.{quote(SEQ)}, c.{quote(OP)} "
        f"ORDER BY c.{quote(KAFKA_PARTITION)}, c.{quote(KAFKA_OFFSET)}) AS {quote(RANK)} "
        f"FROM {quote(plan.source_view)} c WHERE c.{quote(OP)} <> 't'{newer}) "
        f"WHERE {quote(RANK)} = 1 OR {quote(OP)} = 'r'"
    )


def fold_sql(plan: MultisetPlan, keep_base: bool, slice_view: str = SLICE_VIEW) -> str:
    """The whole new content of the base table: base rows (unless a truncate emptied it) and the slice's
    additions, each distinct row keeping its count minus the slice's removals of it, newest copies first.
    Rows are told apart by every column the source still has, NULLs equal; a frozen column keeps its value."""
    image = _image(plan)
    meta = f"{quote(SEQ)}, {quote(SOURCE_TS)}"
    ident = ", ".join(quote(c) for c in plan.identity)
    by = ", ".join(f"r.{quote(c)}" for c in plan.identity)
    null_safe = " AND ".join(f"r.{quote(c)} <=> d.{quote(c)}" for c in plan.identity)
    base = f"SELECT {image}, {meta} FROM {qualified(*plan.target)} UNION ALL " if keep_base else ""
    rows = f"{base}SELECT {image}, {meta} FROM {quote(slice_view)} WHERE {quote(OP)} <> 'd'"
    removed = (f"SELECT {ident}, COUNT(*) AS {quote(_COUNT)} FROM (SELECT {image}, {meta} FROM {quote(slice_view)} "
               f"WHERE {quote(OP)} = 'd') GROUP BY {ident}")
    select = ", ".join(f"r.{quote(c)}" for c in (*plan.columns, SEQ, SOURCE_TS))
    return (
        f"SELECT {', '.join(quote(c) for c in (*plan.columns, SEQ, SOURCE_TS))} FROM (\n"
        f"SELECT {select}, ROW_NUMBER() OVER (PARTITION BY {by} ORDER BY r.{quote(SEQ)} DESC, r.{quote(SOURCE_TS)} DESC) AS {quote(RANK)}, "
        f"COUNT(*) OVER (PARTITION BY {by}) AS {quote(_COUNT)}, COALESCE(d.{quote(_COUNT)}, 0) AS {quote(_REMOVED)}\n"
        f"FROM ({rows}) r LEFT JOIN ({removed}) d ON {null_safe}\n"
        f") WHERE {quote(RANK)} <= {quote(_COUNT)} - {quote(_REMOVED)}"
    )


def overwrite_sql(plan: MultisetPlan, fold_view: str, table_order: Sequence[str]) -> str:
    """Replace the unpartitioned base table's content in one commit (columns in the table's own order:
    an added column sits after `_seq` and `_source_ts`)."""
    if sorted(table_order) != sorted((*plan.columns, SEQ, SOURCE_TS)):
        raise IdentifierError(f"the table's columns {list(table_order)} are not the fold's")
    return f"INSERT OVERWRITE {qualified(*plan.target)} SELECT {', '.join(quote(c) for c in table_order)} FROM {quote(fold_view)}"


def truncate_seq_sql(source_view: str) -> str:
    """The newest truncate's position in the slice (NULL when there is none)."""
    return f"SELECT MAX({quote(SEQ)}) FROM {quote(source_view)} WHERE {quote(OP)} = 't'"


def newest_seq_sql(slice_view: str = SLICE_VIEW) -> str:
    """The newest position among the changes that apply (NULL when none does)."""
    return f"SELECT MAX({quote(SEQ)}) FROM {quote(slice_view)}"


def partitions_sql(source_view: str) -> str:
    """How many Kafka partitions the slice came from (a keyless table's order needs exactly one)."""
    return f"SELECT COUNT(DISTINCT {quote(KAFKA_PARTITION)}) FROM {quote(source_view)}"
