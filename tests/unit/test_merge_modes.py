"""Merge modes per table: the base's write-mode properties at creation, and the names both sides of the lake share."""

from __future__ import annotations

from typing import get_args

import pytest

from cdc.config import MergeMode, Settings
from cdc.lake import catalog as lake
from spark_jobs import merge_sql as q


@pytest.mark.parametrize("mode", ["merge-on-read", "copy-on-write"])
def test_a_base_is_made_with_its_merge_mode(mode: MergeMode) -> None:
    props = lake.base_properties(mode)
    assert {props[k] for k in lake.WRITE_MODE_PROPERTIES} == {mode}
    assert props["format-version"] == "2"  # position deletes: pyiceberg 0.12 cannot write v3 metadata
    assert lake.BASE_PROPERTIES["write.merge.mode"] == "merge-on-read"  # the tombstones stay merge-on-read


def test_the_modes_and_properties_agree_with_the_merge_job() -> None:
    assert lake.WRITE_MODE_PROPERTIES == q.WRITE_MODE_PROPERTIES
    assert get_args(MergeMode) == q.MERGE_MODES


def test_a_table_s_setting_overrides_the_default() -> None:
    settings = Settings(tables={"db.w": {"merge_mode": "copy-on-write"}})  # type: ignore[arg-type]
    assert settings.merge_mode_for("db", "w") == "copy-on-write"
    assert settings.merge_mode_for("db", "r") == "merge-on-read"
