"""The merge's schema-change SQL (spark_jobs/merge_sql.py): typed default literals and frozen columns."""

from __future__ import annotations

import pytest

from spark_jobs import merge_sql as q


@pytest.mark.parametrize(("typ", "text", "literal"), [
    ("int", "5", "CAST(5 AS INT)"),
    ("long", "-9", "CAST(-9 AS BIGINT)"),
    ("decimal(10, 2)", "1.50", "CAST('1.50' AS DECIMAL(10, 2))"),
    ("double", "inf", "CAST('Infinity' AS DOUBLE)"),
    ("string", "it's\na", "'it\\'s\\na'"),
    ("binary", "00ff", "X'00ff'"),
    ("date", "0018-04-01", "DATE '0018-04-01'"),
    ("timestamp", "2024-01-02 03:04:05.000006", "TIMESTAMP_NTZ '2024-01-02 03:04:05.000006'"),
    ("boolean", "true", "TRUE"),
])
def test_default_literals_are_typed(typ: str, text: str, literal: str) -> None:
    assert q.default_literal(typ, text) == literal


@pytest.mark.parametrize(("typ", "text"), [
    ("int", "5); DROP TABLE x; --"), ("decimal(10, 2)", "1' OR '1"), ("date", "now()"), ("binary", "zz"), ("struct", "1"),
])
def test_a_default_that_is_not_a_value_of_its_type_is_refused(typ: str, text: str) -> None:
    with pytest.raises(q.IdentifierError):
        q.default_literal(typ, text)


def _plan(**kw: object) -> q.MergePlan:
    return q.MergePlan(("lake", "db", "t"), ("lake", "db", "t_tombstones"), "v", ("id",), ("id", "k", "gone"), **kw)  # type: ignore[arg-type]


def test_a_default_applies_to_changes_and_rows_older_than_the_column() -> None:
    plan = _plan(defaults=(q.Default("k", 100, "CAST(5 AS INT)"),))
    sql = q.merge_sql(plan, backfill=True)
    assert "t.`k` = CASE WHEN s.`_seq` < 100 THEN CAST(5 AS INT) ELSE s.`k` END" in sql
    assert "WHEN NOT MATCHED BY SOURCE AND ((t.`_seq` < 100 AND t.`k` IS NULL))" in sql
    assert "NOT MATCHED BY SOURCE" not in q.merge_sql(plan)  # no full join unless rows are pending
    assert q.pending_defaults_sql(plan) == "SELECT 1 FROM `lake`.`db`.`t` t WHERE (t.`_seq` < 100 AND t.`k` IS NULL) LIMIT 1"


def test_a_frozen_column_keeps_its_value_as_of_the_drop() -> None:
    plan = _plan(frozen=(("gone", 300),))
    sql = q.merge_sql(plan)
    assert "t.`gone` = CASE WHEN s.`_cdc_rank_frozen_0_seen` = 1 THEN s.`_cdc_rank_frozen_0` ELSE t.`gone` END" in sql
    latest = q.latest_changes_sql(plan)
    # the key's newest change before the drop, even when a later one is the latest (a slice spanning the drop)
    assert ("MAX_BY(CASE WHEN c.`_op` = 'd' THEN NULL ELSE c.`gone` END, CASE WHEN c.`_seq` < 300 THEN c.`_seq` END) "
            "OVER (PARTITION BY c.`id`) AS `_cdc_rank_frozen_0`") in latest
