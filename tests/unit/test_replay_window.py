"""`cdc dlq replay` refuses changes older than the tombstone window: a delete of their key may have left the lake
already (tombstones expire by lake time), and landing them would bring a deleted row back."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cdc.cli import main
from cdc.config import load_settings
from cdc.events.model import DecodeFailure, KafkaCoordinates, TableId
from cdc.ingest import dlq
from cdc.ingest.commit import append_once
from cdc.ingest.landing import DeadLetterSink
from cdc.ingest.replay import replay, too_old
from cdc.lake import catalog as lake
from cdc.lake.writer import plain_arrow
from cdc.retry import RetryPolicy
from tests.debezium_messages import envelope, field, key, payload, source, value_schema

DAY_US = 86_400_000_000
FIELDS = [field("id", "int32", optional=False), field("v", "int64")]


def test_the_window_is_measured_from_now() -> None:
    now = 100 * DAY_US
    assert not too_old(now - 7 * DAY_US + 1, now, 7)
    assert too_old(now - 7 * DAY_US - 1, now, 7)


def _dead_letter(days_ago: float, offset: int) -> DecodeFailure:
    src = source(pos=1000 + offset, db="shop", table="t")
    ts_ms = int((dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).timestamp() * 1000)
    src["ts_ms"], src["ts_us"] = ts_ms, ts_ms * 1000
    value = envelope(value_schema(FIELDS, "shop", "t"), payload("c", after={"id": offset, "v": 1}, src=src))
    k = key([field("id", "int32", optional=False)], {"id": offset})
    return DecodeFailure("Test", "was bad once", k, value, KafkaCoordinates("cdc.shop.t", 0, offset), TableId("shop", "t"))


def test_an_old_dead_letter_is_kept_and_named_a_fresh_one_lands(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, merge={"tombstone_days": 7})
    catalog = lake.open_catalog(settings)
    failures = [_dead_letter(30, 0), _dead_letter(0.01, 1)]
    rows = dlq.to_arrow(failures, dt.datetime.now(dt.UTC), plain_arrow(dlq.SCHEMA.as_arrow()))
    append_once(DeadLetterSink(catalog), rows, [f.coordinates for f in failures], {"cdc.shop.t": {0: 2}}, RetryPolicy())

    report = replay(settings, catalog)

    assert (report.examined, report.landed, len(report.refused)) == (2, 1, 1)
    assert "cdc.shop.t[0]@0 (shop.t)" in report.refused[0]
    assert "older than the tombstone window (merge.tombstone_days = 7)" in report.refused[0]
    assert [r["offset"] for r in dlq.rows(catalog)] == [0]  # kept, with its coordinates
    landed = catalog.load_table(lake.changelog_name(TableId("shop", "t"))).scan(selected_fields=("id",)).to_arrow()
    assert landed.column("id").to_pylist() == [1]


def test_the_command_exits_1_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CDC_HOME", str(tmp_path))
    catalog = lake.open_catalog(load_settings())
    failure = _dead_letter(30, 0)
    rows = dlq.to_arrow([failure], dt.datetime.now(dt.UTC), plain_arrow(dlq.SCHEMA.as_arrow()))
    append_once(DeadLetterSink(catalog), rows, [failure.coordinates], {"cdc.shop.t": {0: 1}}, RetryPolicy())
    with pytest.raises(SystemExit) as exit_info:
        main(["dlq", "replay", "--output", "json"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1, (out, err)
    assert json.loads(out)["replay"][0]["refused"] == 1
    assert "cdc bootstrap shop.t --rebuild" in err
