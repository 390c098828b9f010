"""Reading the physical plan of the base MERGE (the text of `EXPLAIN MERGE INTO ...`): pure, no Spark.

The merge is meant to be bucket-aligned: the base is read bucket by bucket in place (a storage-partitioned join)
and, at most, the small change set is shuffled to the base's buckets. `check_merge_plan` finds the MERGE's join
and says whether an Exchange sits between it and the base's scan; `why_base_shuffled` names the likely reasons
(a conf off, an unbucketed base, bucket counts that differ) from the session's confs and the tables' bucket specs.

The plan text is Spark's tree string: one node per line, a child indented below its parent behind `+- ` (last
child) or `:- `; a cached view's plan and runtime-filter subqueries hang below their nodes the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

# The session confs a bucket-aligned MERGE needs (cdc/spark.py session_conf sets them; a spark-submit user passes
# them, see spark_jobs/merge.py). Without the last one Spark 4.1 shuffles the bucketed base whenever the other
# side is not an Iceberg scan grouped the same way (the change set is a cached view): measured, see STACK.md.
SPJ_CONFS = {
    "spark.sql.sources.v2.bucketing.enabled": "true",
    "spark.sql.iceberg.planning.preserve-data-grouping": "true",
    "spark.sql.requireAllClusterKeysForCoPartition": "false",
    "spark.sql.sources.v2.bucketing.pushPartValues.enabled": "true",
    "spark.sql.sources.v2.bucketing.shuffle.enabled": "true",
}
PLANNING_FAILED = "Error occurred during query planning"

_LINE = re.compile(r"^(?P<pre>[ :|]*?)(?P<mark>[+:]- )?(?P<text>[^ :|+].*)$")
_CODEGEN = re.compile(r"^\*\(\d+\) ")
_NAME = re.compile(r"^[^ \[(]+")
_GROUPED = re.compile(r"groupedBy=([^,)]*)")
_FILTERS = re.compile(r"\bfilters=(.*?), (?:runtimeFilters|groupedBy)=")
# nodes whose subtree is not part of the MERGE's data flow at run time: a cached view's plan was computed
# before, a broadcast's build side and a runtime filter's subquery are not the streamed sides of the join
_OPAQUE = ("InMemoryRelation", "BroadcastExchange", "BroadcastQueryStage", "Subquery", "SubqueryBroadcast",
           "SubqueryAdaptiveBroadcast", "ReusedSubquery")
_SHUFFLES = ("Exchange", "ShuffleQueryStage")
_BROADCASTS = ("BroadcastExchange", "BroadcastQueryStage")


@dataclass
class Node:
    text: str
    column: int
    children: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        found = _NAME.match(_CODEGEN.sub("", self.text))
        return found.group(0) if found else ""

    def walk(self, into_opaque: bool = True) -> Iterator[Node]:
        yield self
        if into_opaque or not self.name.startswith(_OPAQUE):
            for child in self.children:
                yield from child.walk(into_opaque)


def parse(text: str) -> list[Node]:
    """The plan's trees (normally one), nodes nested by their indentation."""
    roots: list[Node] = []
    stack: list[Node] = []
    for line in text.splitlines():
        if not line.strip() or (not stack and line.startswith("== ")):
            continue
        found = _LINE.match(line)
        if found is None:
            continue
        node = Node(found.group("text").rstrip(), len(found.group("pre")) + len(found.group("mark") or ""))
        while stack and stack[-1].column >= node.column:
            stack.pop()
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)
    return roots


def _path(node: Node, match: str) -> list[Node] | None:
    """The nodes from `node` down to the first scan of the table `match` (depth first), both included."""
    if node.name == "BatchScan" and (node.text.startswith(match + "[") or node.text == match
                                     or node.text.startswith(match + " ")):
        return [node]
    for child in node.children:
        below = _path(child, match)
        if below is not None:
            return [node, *below]
    return None


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class PlanCheck:
    """What the MERGE's plan does on each side of its join."""

    planned: bool  # EXPLAIN returned a plan (else `error`)
    error: str = ""
    write: str = ""  # WriteDelta (merge-on-read) or ReplaceData (copy-on-write)
    join: str = ""  # the join's node, e.g. "SortMergeJoin [id#1], [id#2], RightOuter"
    base_scan: str = ""  # the base's scan node ("" when it was not found)
    base_exchanges: tuple[str, ...] = ()  # Exchange nodes between the join and the base scan
    source_exchanges: tuple[str, ...] = ()  # Exchange nodes on the change set's side (not inside its cached plan)
    grouped_by: str | None = None  # the base scan's `groupedBy=` (empty: Spark sees no buckets on it)
    pushed_filters: str | None = None  # the base scan's `filters=` (a bucket restriction shows up here)

    @property
    def base_shuffled(self) -> bool:
        return bool(self.base_exchanges)

    def summary(self) -> str:
        """One line for the log."""
        if not self.planned:
            return f"EXPLAIN failed: {self.error}"
        if not self.base_scan:
            return f"the base scan was not found in the plan ({self.write or 'no write node'})"
        join = _JOIN_KIND.search(self.join)
        parts = [f"{self.join.split(' ', 1)[0]}{' ' + join.group(0) if join else ''}",
                 f"base scan grouped by {self.grouped_by or 'nothing'}",
                 f"pushed filters: {self.pushed_filters or 'none'}"]
        if self.base_exchanges:
            parts.append("base side: " + "; ".join(_short(e, 120) for e in self.base_exchanges))
        if self.source_exchanges:
            kind = "to the base's buckets" if any(e.startswith("Exchange keygroupedpartitioning") for e in
                                                   self.source_exchanges) else "by hash"
            parts.append(f"the change set is shuffled {kind}")
        else:
            parts.append("the change set is not shuffled")
        return ", ".join(parts)


_JOIN_KIND = re.compile(r"\b(Inner|LeftOuter|RightOuter|FullOuter|LeftSemi|LeftAnti)\b")


def check_merge_plan(text: str, target: str) -> PlanCheck:
    """Where the MERGE into `target` (`catalog.db.table` as the plan names it, also for a branch) shuffles.

    The join is the first one under the MergeRows node; its side that reaches `target`'s scan is the base side.
    """
    stripped = text.strip()
    if stripped.startswith(PLANNING_FAILED):
        return PlanCheck(False, error=_short(stripped.replace("\n", " ")))
    roots = parse(text)
    if not roots:
        return PlanCheck(False, error="no plan in the EXPLAIN output")
    root = roots[0]
    write = next((n.text.split(" ", 1)[0] for n in root.walk() if n.name in ("WriteDelta", "ReplaceData")), "")
    merge_rows = next((n for n in root.walk() if n.name.startswith("MergeRows")), None)
    join = None if merge_rows is None else next(
        (n for n in merge_rows.walk(into_opaque=False) if n.name.endswith(("Join", "CartesianProduct"))), None)
    if join is None:
        return PlanCheck(True, write=write)
    match = f"BatchScan {target}"
    for i, side in enumerate(join.children):
        path = _path(side, match)
        if path is None:
            continue
        scan = path[-1].text
        grouped = _GROUPED.search(scan)
        pushed = _FILTERS.search(scan)
        others = [c for j, c in enumerate(join.children) if j != i]
        return PlanCheck(
            True,
            write=write,
            join=_short(join.text),
            base_scan=_short(scan, 400),
            base_exchanges=tuple(_short(n.text) for n in path if n.name in (*_SHUFFLES, *_BROADCASTS)),
            source_exchanges=tuple(_short(n.text) for c in others for n in c.walk(into_opaque=False)
                                   if n.name in _SHUFFLES),
            grouped_by=grouped.group(1) if grouped else None,
            pushed_filters=pushed.group(1) if pushed else None,
        )
    return PlanCheck(True, write=write, join=_short(join.text))


EMPTY_BASE = "the base holds no data file yet: its scan has no bucket to group by, and nothing to shuffle"


def why_base_shuffled(check: PlanCheck, confs: Mapping[str, str | None], base_bucket: tuple[int, str] | None,
                      changes_bucket: tuple[int, str] | None, base_has_files: bool = True) -> list[str]:
    """The reasons, most fundamental first, that Spark shuffles the base (empty when it does not). An empty base
    (a table's first merge) reports no grouping: that is the whole story then."""
    if not check.base_shuffled:
        return []
    if not base_has_files and not check.grouped_by:
        return [EMPTY_BASE]

    def off(name: str) -> bool:
        return (confs.get(name) or "").strip().lower() != SPJ_CONFS[name]

    reasons = []
    if any(e.startswith(_BROADCASTS) for e in check.base_exchanges):
        reasons.append("the base is broadcast")
    for name in ("spark.sql.sources.v2.bucketing.enabled", "spark.sql.iceberg.planning.preserve-data-grouping"):
        if off(name):
            reasons.append(f"{name} is {confs.get(name) or 'unset'} (needs {SPJ_CONFS[name]})")
    if base_bucket is None:
        reasons.append("the base is not bucketed (no bucket(N, column) in its partition spec)")
    elif not check.grouped_by:
        reasons.append("the base scan reports no bucket grouping (groupedBy is empty: an older partition spec "
                       "without the bucket, or data grouping off)")
    if off("spark.sql.sources.v2.bucketing.shuffle.enabled"):
        reasons.append("spark.sql.sources.v2.bucketing.shuffle.enabled is "
                       f"{confs.get('spark.sql.sources.v2.bucketing.shuffle.enabled') or 'unset'}: the change set "
                       "is a cached view, not an Iceberg scan grouped like the base, and without one-side shuffle "
                       "Spark shuffles both sides")
    if base_bucket is not None and changes_bucket != base_bucket:
        theirs = "unbucketed" if changes_bucket is None else f"bucket({changes_bucket[0]}, {changes_bucket[1]})"
        reasons.append(f"the changes are bucketed differently: base bucket({base_bucket[0]}, {base_bucket[1]}), "
                       f"changelog {theirs}")
    for name in ("spark.sql.requireAllClusterKeysForCoPartition", "spark.sql.sources.v2.bucketing.pushPartValues.enabled"):
        if off(name):
            reasons.append(f"{name} is {confs.get(name) or 'unset'} (needs {SPJ_CONFS[name]})")
    return reasons or ["not recognised: the whole plan is logged at DEBUG"]
