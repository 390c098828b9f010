"""Error kinds decide retries (one policy); the capture rules and names the lake can take."""

from __future__ import annotations

import sqlite3

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException, ValidationError
from sqlalchemy.exc import OperationalError

from cdc.errors import ServiceError
from cdc.events.model import TableId
from cdc.ingest.capture import CaptureRules, sanitize, unsupported_name
from cdc.lake.contract import reserved_name
from cdc.retry import RetryPolicy, error_kind, retrying


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (CommitFailedException("x"), "conflict"),
        (OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")), "transient"),
        (ConnectionRefusedError(), "transient"),
        (CommitStateUnknownException("?"), "transient"),
        (pa.ArrowInvalid("Rescaling Decimal value would cause data loss"), "terminal"),
        (ValueError("does not fit"), "terminal"),
        (ValidationError("cannot promote"), "terminal"),
        (KeyError("k"), "terminal"),
    ],
)
def test_error_kinds(exc: BaseException, kind: str) -> None:
    assert error_kind(exc) == kind


def test_a_data_error_is_not_retried() -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise pa.ArrowInvalid("Rescaling Decimal value would cause data loss")

    with pytest.raises(pa.ArrowInvalid):
        retrying("t", RetryPolicy(deadline_seconds=60), attempt, sleep=lambda s: None)
    assert len(calls) == 1


def test_transient_errors_back_off_until_the_deadline_then_one_service_error() -> None:
    pauses: list[float] = []

    def attempt() -> None:
        raise ConnectionRefusedError("catalog down")

    with pytest.raises(ServiceError, match="did not answer within 0 s: catalog down"):
        retrying("t", RetryPolicy(deadline_seconds=0), attempt, sleep=pauses.append)
    outcomes = iter([OSError("down"), OSError("down"), 7])

    def flaky() -> int:
        o = next(outcomes)
        if isinstance(o, Exception):
            raise o
        return o

    assert retrying("t", RetryPolicy(deadline_seconds=60, first_delay=1), flaky, sleep=pauses.append) == 7
    assert len(pauses) == 2
    assert 0.5 <= pauses[0] <= 1
    assert 1 <= pauses[1] <= 2


def test_conflicts_retry_at_once_up_to_a_limit() -> None:
    def attempt() -> None:
        raise CommitFailedException("someone else committed")

    with pytest.raises(ServiceError, match="gave up after 3 commit conflicts"):
        retrying("t", RetryPolicy(max_conflicts=3), attempt, sleep=lambda s: pytest.fail("no pause on a conflict"))


def test_topics_follow_debeziums_sanitising() -> None:
    rules = CaptureRules("cdc")
    assert sanitize("a b") == sanitize("a_b") == "a_b"
    assert rules.topic(TableId("shop", "größe")) == "cdc.shop.gr__e"
    assert rules.topic(TableId("shop", "my.table")) == "cdc.shop.my.table"
    assert rules.is_data_topic("cdc.shop.orders")
    assert rules.is_data_topic("cdc.shop.my.table")
    assert not rules.is_data_topic("cdc.transaction")
    assert not rules.is_data_topic("cdc")
    assert not rules.is_data_topic("other.a.b")


def test_capture_rules() -> None:
    rules = CaptureRules("cdc", include=frozenset({"shop"}), exclude=frozenset({"hr"}))
    assert rules.captured(TableId("shop", "a"))
    assert not rules.captured(TableId("crm", "a"))
    assert not CaptureRules("cdc", exclude=frozenset({"hr"})).captured(TableId("hr", "a"))
    assert CaptureRules("cdc").captured(TableId("anything", "a"))


@pytest.mark.parametrize(
    ("table", "refused"),
    [
        (TableId("shop", "a b"), None),
        (TableId("shop", "größe 🙂"), None),
        (TableId("shop", "my.table"), None),
        (TableId("sh.op", "t"), "nested namespace"),
        (TableId("shop", " "), "blank"),
        (TableId("shop", "a\x01"), "control characters"),
    ],
)
def test_names_the_lake_takes(table: TableId, refused: str | None) -> None:
    reason = unsupported_name(table)
    assert (reason is None) if refused is None else (reason is not None and refused in reason)


@pytest.mark.parametrize("name", ["_op", "_seq", "_SEQ", "_Source_Ts", "_kafka_offset", "_cdc_rank", "_CDC_anything"])
def test_reserved_column_names(name: str) -> None:
    assert reserved_name(name)


@pytest.mark.parametrize("name", ["op", "seq_", "_sequence", "cdc_rank", "_opt"])
def test_ordinary_column_names(name: str) -> None:
    assert not reserved_name(name)
