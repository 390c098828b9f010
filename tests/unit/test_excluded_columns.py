"""Excluded (PII) columns: Debezium's exclude list, and the consumer leaves them out too (RELIABILITY row 24)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.config import load_settings
from cdc.connectors import debezium_config, excluded_column_patterns
from cdc.errors import ConfigError
from cdc.events.model import ChangeEvent, DecodeFailure, KafkaCoordinates
from cdc.ingest.capture import CaptureRules
from cdc.ingest.consumer import classify
from tests.debezium_messages import envelope, field, key, payload, source, value_schema

SENTINEL = "SENTINEL-078-05-1120"
ROW = [field("id", "int32", optional=False), field("name", "string"), field("ssn", "string")]


def _message(db: str, table: str) -> tuple[bytes, bytes]:
    k = key([field("id", "int32", optional=False)], {"id": 1})
    v = envelope(value_schema(ROW, db, table), payload("c", src=source(pos=10, db=db, table=table),
                                                      after={"id": 1, "name": "x", "ssn": SENTINEL}))
    return k, v


def test_the_connector_excludes_them_by_exact_name(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, tables={"shop.customers": {"exclude_columns": ["ssn", "date of birth"]},
                                             "shop.my table": {"exclude_columns": ["x.y"]}})
    assert excluded_column_patterns(s) == [r"shop\.customers\.ssn", r"shop\.customers\.date\ of\ birth",
                                           r"shop\.my\ table\.x\.y"]
    config = debezium_config(s, tmp_path / "secrets")
    assert config["column.exclude.list"] == ",".join(excluded_column_patterns(s))
    assert "column.exclude.list" not in debezium_config(load_settings(home=tmp_path), tmp_path / "secrets")


def test_a_comma_cannot_be_excluded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be excluded"):
        load_settings(home=tmp_path, tables={"shop.t": {"exclude_columns": ["a,b"]}})


def test_the_consumer_leaves_them_out_of_the_change(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, tables={"shop.customers": {"exclude_columns": ["ssn"]}})
    rules = CaptureRules.from_settings(s)
    k, v = _message("shop", "customers")
    event = classify(rules, 10**6, (k, v, ()), KafkaCoordinates("cdc.shop.customers", 0, 0))
    assert isinstance(event, ChangeEvent)
    assert "ssn" not in event.values
    assert "ssn" not in event.schema.names
    assert SENTINEL not in repr(event)
    k2, v2 = _message("shop", "orders")
    other = classify(rules, 10**6, (k2, v2, ()), KafkaCoordinates("cdc.shop.orders", 0, 0))
    assert isinstance(other, ChangeEvent)
    assert other.values["ssn"] == SENTINEL  # only the configured table


def test_a_key_column_cannot_be_excluded(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, tables={"shop.customers": {"exclude_columns": ["id"]}})
    k, v = _message("shop", "customers")
    failure = classify(CaptureRules.from_settings(s), 10**6, (k, v, ()), KafkaCoordinates("cdc.shop.customers", 0, 0))
    assert isinstance(failure, DecodeFailure)
    assert failure.error == "ExcludedKeyColumn"
    assert failure.value is None  # the raw message is not kept: it may hold the excluded values

