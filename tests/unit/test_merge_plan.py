"""The base MERGE's plan check (spark_jobs/plan.py) on real plan texts: `EXPLAIN MERGE INTO ...` as Spark 4.1 +
Iceberg 1.12 printed it on this stack for the merge job's own statement (an audit-branch target, the latest change
per key as a cached SQL view, the tombstones' broadcast join), in tests/unit/merge_plans/:

- mor_one_bucket / cow_one_bucket: the changes touch 1 of 16 buckets, the base restricted to it (pushed filter);
- mor_all_buckets: every bucket changed, no restriction;
- mor_purge: a truncate floor's purge (NOT MATCHED BY SOURCE: a full outer join, every bucket read);
- shuffle_off / bucketing_off: spark.sql.sources.v2.bucketing.shuffle.enabled / .enabled set to false;
- unbucketed_base: a base without a partition spec;
- changelog_bucket8 / unbucketed_changelog: the changes bucketed bucket(8, id) / not at all (only they are shuffled).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_jobs import plan as p

PLANS = Path(__file__).parent / "merge_plans"
TARGET = "lake.x.base"
ON = dict(p.SPJ_CONFS)


def _plan(name: str) -> str:
    return (PLANS / f"{name}.txt").read_text()


@pytest.mark.parametrize(
    ("name", "target", "write", "join", "base_exchange", "source_shuffle", "pushed", "grouped"),
    [
        ("mor_one_bucket", TARGET, "WriteDelta", "RightOuter", None, None, "bucket[16](id) = 3", "id_bucket"),
        ("mor_all_buckets", TARGET, "WriteDelta", "RightOuter", None, None, "", "id_bucket"),
        ("cow_one_bucket", TARGET, "ReplaceData", "FullOuter", None, None, "bucket[16](id) = 3", "id_bucket"),
        ("mor_purge", TARGET, "WriteDelta", "FullOuter", None, "keygroupedpartitioning", "", "id_bucket"),
        ("shuffle_off", TARGET, "WriteDelta", "RightOuter", "hashpartitioning(id#", "hashpartitioning(id#",
         "bucket[16](id) = 3", "id_bucket"),
        ("bucketing_off", TARGET, "WriteDelta", "RightOuter", "hashpartitioning(id#", None, "bucket[16](id) = 3", "id_bucket"),
        ("unbucketed_base", "lake.x.flat", "WriteDelta", "RightOuter", "hashpartitioning(id#", "hashpartitioning(id#", "", ""),
        ("changelog_bucket8", TARGET, "WriteDelta", "RightOuter", None, "keygroupedpartitioning", "", "id_bucket"),
        ("unbucketed_changelog", TARGET, "WriteDelta", "RightOuter", None, "keygroupedpartitioning", "", "id_bucket"),
    ],
)
def test_where_the_merge_shuffles(name: str, target: str, write: str, join: str, base_exchange: str | None,
                                  source_shuffle: str | None, pushed: str, grouped: str) -> None:
    check = p.check_merge_plan(_plan(name), target)
    assert check.planned
    assert check.write == write
    assert check.join.startswith("SortMergeJoin")
    assert check.join.endswith(join)
    assert check.base_scan.startswith(f"BatchScan {target}[")
    assert "branch=audit_fx" in check.base_scan  # the audit branch is scanned under the table's own name
    if base_exchange is None:
        assert check.base_exchanges == ()
        assert not check.base_shuffled
    else:
        assert len(check.base_exchanges) == 1
        assert check.base_exchanges[0].startswith(f"Exchange {base_exchange}")
    if source_shuffle is None:
        assert check.source_exchanges == ()
    else:
        assert [e.split(" ", 1)[1].startswith(source_shuffle) for e in check.source_exchanges] == [True]
    assert check.pushed_filters == pushed
    assert check.grouped_by == grouped


def test_what_is_not_the_join_s_shuffle_is_not_counted() -> None:
    """The write's own distribution (above MergeRows), the copy-on-write runtime filter's subquery (an Exchange on
    `_file`) and the shuffles inside the cached view's plan (computed before the MERGE) are no base-side exchange."""
    cow = _plan("cow_one_bucket")
    assert "Exchange hashpartitioning(_file#" in cow
    assert "REBALANCE_PARTITIONS_BY_COL" in cow
    check = p.check_merge_plan(cow, TARGET)
    assert check.base_exchanges == ()
    assert check.source_exchanges == ()
    cached = _plan("unbucketed_changelog")
    assert cached.count("Exchange hashpartitioning(id#") == 2  # the window over the unbucketed changelog, cached
    assert [e.split("(", 1)[0] for e in p.check_merge_plan(cached, TARGET).source_exchanges] == ["Exchange keygroupedpartitioning"]


def test_the_summary_says_what_the_log_says() -> None:
    assert p.check_merge_plan(_plan("mor_one_bucket"), TARGET).summary() == (
        "SortMergeJoin RightOuter, base scan grouped by id_bucket, pushed filters: bucket[16](id) = 3, "
        "the change set is not shuffled")
    assert p.check_merge_plan(_plan("changelog_bucket8"), TARGET).summary().endswith(
        "the change set is shuffled to the base's buckets")
    shuffled = p.check_merge_plan(_plan("shuffle_off"), TARGET).summary()
    assert "base side: Exchange hashpartitioning(id#" in shuffled
    assert shuffled.endswith("the change set is shuffled by hash")


@pytest.mark.parametrize(
    ("name", "confs", "base_bucket", "changes_bucket", "expected"),
    [
        ("shuffle_off", {**ON, "spark.sql.sources.v2.bucketing.shuffle.enabled": "false"}, (16, "id"), (16, "id"),
         ["spark.sql.sources.v2.bucketing.shuffle.enabled is false: the change set is a cached view, not an Iceberg "
          "scan grouped like the base, and without one-side shuffle Spark shuffles both sides"]),
        ("bucketing_off", {**ON, "spark.sql.sources.v2.bucketing.enabled": "false"}, (16, "id"), (16, "id"),
         ["spark.sql.sources.v2.bucketing.enabled is false (needs true)"]),
        ("unbucketed_base", ON, None, (16, "id"), ["the base is not bucketed (no bucket(N, column) in its partition spec)"]),
        ("shuffle_off", ON, (16, "id"), (8, "id"),
         ["the changes are bucketed differently: base bucket(16, id), changelog bucket(8, id)"]),
        ("shuffle_off", ON, (16, "id"), None, ["the changes are bucketed differently: base bucket(16, id), changelog unbucketed"]),
        ("shuffle_off", ON, (16, "id"), (16, "id"), ["not recognised: the whole plan is logged at DEBUG"]),
        ("shuffle_off", {}, (16, "id"), (16, "id"), [
            "spark.sql.sources.v2.bucketing.enabled is unset (needs true)",
            "spark.sql.iceberg.planning.preserve-data-grouping is unset (needs true)",
            "spark.sql.sources.v2.bucketing.shuffle.enabled is unset: the change set is a cached view, not an Iceberg "
            "scan grouped like the base, and without one-side shuffle Spark shuffles both sides",
            "spark.sql.requireAllClusterKeysForCoPartition is unset (needs false)",
            "spark.sql.sources.v2.bucketing.pushPartValues.enabled is unset (needs true)",
        ]),
        ("mor_one_bucket", {}, None, None, []),  # no exchange on the base side: nothing to explain
    ],
)
def test_why_the_base_is_shuffled(name: str, confs: dict[str, str], base_bucket: tuple[int, str] | None,
                                  changes_bucket: tuple[int, str] | None, expected: list[str]) -> None:
    check = p.check_merge_plan(_plan(name), "lake.x.flat" if name == "unbucketed_base" else TARGET)
    assert p.why_base_shuffled(check, confs, base_bucket, changes_bucket) == expected


def test_a_base_scan_without_grouping_is_named() -> None:
    check = p.check_merge_plan(_plan("shuffle_off").replace("groupedBy=id_bucket", "groupedBy="), TARGET)
    assert check.grouped_by == ""
    assert p.why_base_shuffled(check, ON, (16, "id"), (16, "id"))[0].startswith("the base scan reports no bucket grouping")
    # a base without data files (a table's first merge) has nothing to group, and nothing to shuffle
    assert p.why_base_shuffled(check, ON, (16, "id"), (16, "id"), base_has_files=False) == [p.EMPTY_BASE]
    grouped = p.check_merge_plan(_plan("shuffle_off"), TARGET)
    assert p.EMPTY_BASE not in p.why_base_shuffled(grouped, ON, (16, "id"), (16, "id"), base_has_files=False)


def test_a_plan_that_failed_or_does_not_scan_the_target() -> None:
    failed = p.check_merge_plan("Error occurred during query planning: \nNo plan for TableReference\n", TARGET)
    assert not failed.planned
    assert failed.summary() == "EXPLAIN failed: Error occurred during query planning:  No plan for TableReference"
    assert not failed.base_shuffled
    elsewhere = p.check_merge_plan(_plan("mor_one_bucket"), "lake.x.other")
    assert elsewhere.planned
    assert elsewhere.base_scan == ""
    assert not elsewhere.base_shuffled
    assert elsewhere.summary() == "the base scan was not found in the plan (WriteDelta)"
    # a table whose name another one extends (its changelog) is not taken for it
    assert p.check_merge_plan(_plan("mor_one_bucket"), "lake.x.bas").base_scan == ""
    assert not p.check_merge_plan("", TARGET).planned


def test_the_tree_nests_by_indentation() -> None:
    roots = p.parse(
        "== Physical Plan ==\n"
        "WriteDelta w\n"
        "+- MergeRowsExec[a#1]\n"
        "   +- SortMergeJoin [id#1], [id#2], RightOuter\n"
        "      :- *(1) Sort [id#1 ASC NULLS FIRST], false, 0\n"
        "      :  +- BatchScan lake.x.base[id#1] IcebergScan(table=lake.x.base, filters=, groupedBy=id_bucket)\n"
        "      +- Exchange hashpartitioning(id#2, 4)\n"
        "         +- Scan In-memory table v [id#2]\n"
        "               +- InMemoryRelation [id#2]\n"
        "                     +- == Final Plan ==\n"
        "                        Exchange hashpartitioning(id#9, 4)\n"
    )
    assert len(roots) == 1
    join = roots[0].children[0].children[0]
    assert [c.name for c in join.children] == ["Sort", "Exchange"]  # the codegen stage `*(1) ` is not the name
    assert join.children[0].children[0].name == "BatchScan"
    assert [n.name for n in join.children[1].walk(into_opaque=False)] == ["Exchange", "Scan", "InMemoryRelation"]


def test_the_session_sets_every_conf_the_check_expects(settings: object) -> None:
    from cdc.spark import session_conf

    conf = session_conf(settings)  # type: ignore[arg-type]
    assert {k: conf.get(k) for k in p.SPJ_CONFS} == p.SPJ_CONFS
