"""The merge job's SQL text: identifiers quoted, latest change per key, newer-only apply."""

from __future__ import annotations

import re

import pytest

from spark_jobs.merge_sql import (
    IdentifierError,
    MergePlan,
    TargetBuckets,
    below_floor_sql,
    changed_buckets_sql,
    expire_tombstones_sql,
    latest_changes_sql,
    merge_sql,
    merged_upto_sql,
    quote,
    set_properties_sql,
    tombstones_sql,
    truncate_seq_sql,
    write_mode_sql,
)

TARGET = ("lake", "probe", "t")
TOMBS = ("lake", "probe", "t_tombstones")
PLAN = MergePlan(TARGET, TOMBS, "changes", ("id",), ("id", "d", "v"))
QUOTED = re.compile(r"`(?:[^`]|``)*`")


def skeleton(sql: str) -> str:
    """The SQL with every quoted identifier replaced: what is left is the statement's structure."""
    return QUOTED.sub("ID", sql)


# ---- quote --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("id", "`id`"),
        ("a`b", "`a``b`"),
        ("``", "``````"),
        ("x; DROP TABLE t; --", "`x; DROP TABLE t; --`"),
        ('it\'s "q"', '`it\'s "q"`'),
        ("caf\u00e9 \U0001f600", "`caf\u00e9 \U0001f600`"),
        ("n" * 255, "`" + "n" * 255 + "`"),
    ],
)
def test_quote(name: str, quoted: str) -> None:
    assert quote(name) == quoted
    assert QUOTED.fullmatch(quoted)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        ("a\nb", "control characters"),
        ("a\x00b", "control characters"),
        ("tab\t", "control characters"),
        ("del\x7f", "control characters"),
        ("n" * 256, "longer than 255"),
    ],
)
def test_quote_refuses(name: str, message: str) -> None:
    with pytest.raises(IdentifierError, match=message):
        quote(name)


# ---- MERGE ------------------------------------------------------------------------------------------


def test_latest_change_per_key() -> None:
    assert latest_changes_sql(PLAN) == (
        "SELECT * FROM (SELECT c.*, ROW_NUMBER() OVER (PARTITION BY c.`id` "
        "ORDER BY c.`_seq` DESC, c.`_kafka_partition` DESC, c.`_kafka_offset` DESC) AS `_cdc_rank` "
        "FROM `changes` c WHERE c.`_op` <> 't') WHERE `_cdc_rank` = 1"
    )


def test_merge_single_key() -> None:
    sql = merge_sql(PLAN)
    lines = sql.split("\n")
    assert lines[0] == "MERGE INTO `lake`.`probe`.`t` AS t"
    assert lines[1] == (
        "USING (SELECT l.* FROM `_cdc_latest` l LEFT JOIN `lake`.`probe`.`t_tombstones` d ON l.`id` = d.`id` "
        "WHERE l.`_op` = 'd' OR d.`_seq` IS NULL OR l.`_seq` > d.`_seq`) AS s"
    )
    assert lines[2:] == [
        "ON t.`id` = s.`id`",
        "WHEN MATCHED AND s.`_op` = 'd' AND s.`_seq` > t.`_seq` THEN DELETE",
        "WHEN MATCHED AND s.`_op` <> 'd' AND s.`_seq` > t.`_seq` THEN UPDATE SET "
        "t.`id` = s.`id`, t.`d` = s.`d`, t.`v` = s.`v`, t.`_seq` = s.`_seq`, t.`_source_ts` = s.`_source_ts`",
        "WHEN NOT MATCHED AND s.`_op` <> 'd' THEN INSERT (`id`, `d`, `v`, `_seq`, `_source_ts`) "
        "VALUES (s.`id`, s.`d`, s.`v`, s.`_seq`, s.`_source_ts`)",
    ]


def test_merge_composite_key() -> None:
    plan = MergePlan(TARGET, TOMBS, "changes", ("tenant", "id"), ("tenant", "id", "v"))
    assert "ROW_NUMBER() OVER (PARTITION BY c.`tenant`, c.`id` ORDER BY c.`_seq` DESC," in latest_changes_sql(plan)
    sql = merge_sql(plan)
    assert "\nON t.`tenant` = s.`tenant` AND t.`id` = s.`id`\n" in sql
    assert "ON l.`tenant` = d.`tenant` AND l.`id` = d.`id` WHERE" in sql


def test_tombstones_record_deletes_and_only_move_forward() -> None:
    assert tombstones_sql(PLAN).split("\n") == [
        "MERGE INTO `lake`.`probe`.`t_tombstones` AS t",
        "USING (SELECT `id`, `_seq`, `_source_ts` FROM `_cdc_latest` WHERE `_op` = 'd') AS s",
        "ON t.`id` = s.`id`",
        "WHEN MATCHED AND s.`_seq` > t.`_seq` THEN UPDATE SET t.`_seq` = s.`_seq`, t.`_source_ts` = s.`_source_ts`, "
        "t.`_ingested_at` = current_timestamp()",
        "WHEN NOT MATCHED THEN INSERT (`id`, `_seq`, `_source_ts`, `_ingested_at`) "
        "VALUES (s.`id`, s.`_seq`, s.`_source_ts`, current_timestamp())",
    ]


def test_changes_after_a_merged_position_only() -> None:
    seq = 10**37 + 5  # beyond float precision: must stay an exact integer literal
    sql = latest_changes_sql(PLAN, after_seq=seq)
    assert "WHERE c.`_op` <> 't' AND c.`_seq` > 10000000000000000000000000000000000005)" in sql
    assert "c.`_seq` >" not in latest_changes_sql(PLAN)


def test_hostile_names_stay_inside_their_quotes() -> None:
    hostile = MergePlan(
        ("lake", "db`; DROP TABLE x; --", "t'1"),
        ("lake", "db`; DROP TABLE x; --", "t'1_tombstones"),
        'v"iew',
        ("k`) OR 1=1 --",),
        ("k`) OR 1=1 --", "a;b", "it's", 'say "hi"'),
    )
    plain = MergePlan(("lake", "db", "t"), ("lake", "db", "t_tombstones"), "view", ("k",), ("k", "a", "b", "c"))
    sql = merge_sql(hostile)
    assert skeleton(sql) == skeleton(merge_sql(plain))
    assert skeleton(latest_changes_sql(hostile, 7)) == skeleton(latest_changes_sql(plain, 7))
    assert skeleton(tombstones_sql(hostile)) == skeleton(tombstones_sql(plain))
    assert "`k``) OR 1=1 --`" in sql
    assert "DROP" not in skeleton(sql)
    assert skeleton(merge_sql(hostile, purge_below=3)) == skeleton(merge_sql(plain, purge_below=3))


@pytest.mark.parametrize(
    ("key", "columns", "message"),
    [
        (("nope",), ("id", "v"), r"key columns \['nope'\] are not columns of the table"),
        (("id", "tenant"), ("id", "v"), r"key columns \['tenant'\]"),
        ((), ("id", "v"), "at least one key column"),
        (("id",), ("id", "bad\nname"), "control characters"),
    ],
)
def test_merge_plan_refuses(key: tuple[str, ...], columns: tuple[str, ...], message: str) -> None:
    with pytest.raises(IdentifierError, match=message):
        MergePlan(TARGET, TOMBS, "changes", key, columns)


def test_merge_plan_refuses_a_bad_target_or_view() -> None:
    with pytest.raises(IdentifierError):
        MergePlan(("lake", "", "t"), TOMBS, "changes", ("id",), ("id",))
    with pytest.raises(IdentifierError):
        MergePlan(TARGET, TOMBS, "chan\rges", ("id",), ("id",))
    with pytest.raises(IdentifierError):
        MergePlan(TARGET, ("lake", "probe", "t\x00"), "changes", ("id",), ("id",))


# ---- truncate and bookkeeping ----------------------------------------------------------------------


def test_merge_deletes_the_rows_below_a_truncate_floor_in_the_same_commit() -> None:
    sql = merge_sql(PLAN, purge_below=10**37 + 5)
    assert sql.startswith(merge_sql(PLAN) + "\n")  # the same MERGE, one more clause
    assert sql.split("\n")[-1] == "WHEN NOT MATCHED BY SOURCE AND t.`_seq` < 10000000000000000000000000000000000005 THEN DELETE"
    assert "NOT MATCHED BY SOURCE" not in merge_sql(PLAN)


def test_the_truncate_floor_is_only_an_integer_position() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        merge_sql(PLAN, purge_below="1 OR 1=1")  # type: ignore[arg-type]


def test_below_floor_sql_probes_for_one_row_under_the_floor() -> None:
    assert below_floor_sql(TARGET, 10**37 + 5) == (
        "SELECT 1 FROM `lake`.`probe`.`t` WHERE `_seq` < 10000000000000000000000000000000000005 LIMIT 1"
    )
    with pytest.raises(ValueError, match="invalid literal"):
        below_floor_sql(TARGET, "1 OR 1=1")  # type: ignore[arg-type]


def test_set_properties_sql_escapes_every_literal() -> None:
    assert set_properties_sql(TARGET, {"cdc.truncated-before-seq": "42", "cdc.merged-landed": "7"}) == (
        "ALTER TABLE `lake`.`probe`.`t` SET TBLPROPERTIES ('cdc.merged-landed' = '7', 'cdc.truncated-before-seq' = '42')"
    )
    assert set_properties_sql(TARGET, {"k": "it's \\x"}).endswith("('k' = 'it\\'s \\\\x')")
    with pytest.raises(IdentifierError, match="control characters"):
        set_properties_sql(TARGET, {"k": "a\nb"})


def test_tombstones_age_by_lake_time() -> None:
    """A tombstone expires by how long it has been in the lake (`_ingested_at`, set when the delete landed in it
    and again when a newer delete of the key did), not by the source time of the delete."""
    assert expire_tombstones_sql(PLAN, 7) == (
        "DELETE FROM `lake`.`probe`.`t_tombstones` WHERE coalesce(`_ingested_at`, `_source_ts`) < current_timestamp() "
        "- INTERVAL 7 DAYS")


def test_truncate_seq_sql() -> None:
    assert truncate_seq_sql("changes") == "SELECT MAX(`_seq`) AS seq FROM `changes` WHERE `_op` = 't'"


def test_merged_upto_sql_escapes_the_property_literal() -> None:
    sql = merged_upto_sql(TARGET, "cdc.merged-changelog-snapshot")
    assert "FROM `lake`.`probe`.`t`.`snapshots` s JOIN `lake`.`probe`.`t`.`history` h" in sql
    assert "s.summary['cdc.merged-changelog-snapshot'] AS upto" in sql
    assert "s.summary['it\\'s \\\\x'] AS upto" in merged_upto_sql(TARGET, "it's \\x")
    with pytest.raises(IdentifierError, match="control characters"):
        merged_upto_sql(TARGET, "a\nb")


# ---- merge mode and the changed buckets ------------------------------------------------------------------------


def test_the_merge_reads_only_the_buckets_the_changes_touch() -> None:
    sql = merge_sql(PLAN, buckets=TargetBuckets("lake", 16, "id", (9, 3, 3)))
    assert sql.split("\n")[2] == "ON t.`id` = s.`id` AND `lake`.`system`.`bucket`(16, t.`id`) IN (3, 9)"
    assert sql.replace(" AND `lake`.`system`.`bucket`(16, t.`id`) IN (3, 9)", "") == merge_sql(PLAN)


def test_a_composite_key_restricts_on_its_bucket_column() -> None:
    plan = MergePlan(TARGET, TOMBS, "changes", ("tenant", "id"), ("tenant", "id", "v"))
    sql = merge_sql(plan, buckets=TargetBuckets("lake", 8, "tenant", (0,)))
    assert "\nON t.`tenant` = s.`tenant` AND t.`id` = s.`id` AND `lake`.`system`.`bucket`(8, t.`tenant`) IN (0)\n" in sql


@pytest.mark.parametrize(
    ("kwargs", "buckets", "message"),
    [
        ({}, TargetBuckets("lake", 16, "v", (1,)), "not a key column"),  # an update could move the row out of it
        ({"purge_below": 5}, TargetBuckets("lake", 16, "id", (1,)), "reads every bucket"),
    ],
)
def test_the_bucket_restriction_refuses_what_could_miss_a_row(kwargs: dict[str, int], buckets: TargetBuckets, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        merge_sql(PLAN, buckets=buckets, **kwargs)


def test_no_bucket_restriction_beside_a_backfill() -> None:
    from spark_jobs.merge_sql import Default

    plan = MergePlan(TARGET, TOMBS, "changes", ("id",), ("id", "v"), defaults=(Default("v", 10, "CAST(1 AS INT)"),))
    with pytest.raises(ValueError, match="reads every bucket"):
        merge_sql(plan, backfill=True, buckets=TargetBuckets("lake", 16, "id", (1,)))
    assert "`system`.`bucket`" in merge_sql(plan, buckets=TargetBuckets("lake", 16, "id", (1,)))  # nothing pending


@pytest.mark.parametrize(("count", "values"), [(16, ()), (16, (16,)), (16, (-1,)), (1, (1,))])
def test_target_buckets_are_buckets_of_the_spec(count: int, values: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="bucket"):
        TargetBuckets("lake", count, "id", values)


def test_hostile_names_in_the_bucket_restriction_stay_quoted() -> None:
    hostile = MergePlan(TARGET, TOMBS, "changes", ("k`) OR 1=1 --",), ("k`) OR 1=1 --", "v"))
    plain = MergePlan(TARGET, TOMBS, "changes", ("k",), ("k", "v"))
    evil = merge_sql(hostile, buckets=TargetBuckets("la`ke", 4, "k`) OR 1=1 --", (1,)))
    assert skeleton(evil) == skeleton(merge_sql(plain, buckets=TargetBuckets("lake", 4, "k", (1,))))
    assert skeleton(changed_buckets_sql("la`ke", 4, "k`) OR 1=1 --", "v`iew")) == skeleton(changed_buckets_sql("lake", 4, "k", "v"))
    with pytest.raises(IdentifierError):
        TargetBuckets("lake", 4, "bad\ncolumn", (1,))


def test_changed_buckets_sql_uses_the_catalogs_bucket_transform() -> None:
    assert changed_buckets_sql("lake", 16, "id") == (
        "SELECT DISTINCT `lake`.`system`.`bucket`(16, `id`) AS b FROM `_cdc_latest` WHERE `id` IS NOT NULL")


def test_write_mode_sql_sets_the_three_write_modes() -> None:
    assert write_mode_sql(TARGET, "copy-on-write") == (
        "ALTER TABLE `lake`.`probe`.`t` SET TBLPROPERTIES ('write.merge.mode' = 'copy-on-write', "
        "'write.update.mode' = 'copy-on-write', 'write.delete.mode' = 'copy-on-write')")
    assert "'merge-on-read'" in write_mode_sql(TARGET, "merge-on-read")
    with pytest.raises(ValueError, match="a merge mode is one of merge-on-read, copy-on-write"):
        write_mode_sql(TARGET, "merge-on-read'); DROP TABLE x; --")
