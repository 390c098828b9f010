"""Exit codes as documented, in-process: 1 a check failed, 2 usage, 3 a service is away; one line each."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cdc.cli import main
from cdc.config import load_settings
from cdc.events.model import TableId
from cdc.ingest.capture import MARKER_DB
from cdc.lake import catalog as lake, state


def run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `cdc` in-process; capfd also catches what C libraries (librdkafka) write to the file descriptors.

    As in a real process, `cdc`'s logging.basicConfig writes log lines to stderr (pytest's own handler on the
    root logger would make it a no-op and swallow them).
    """
    root = logging.getLogger()
    handlers = root.handlers
    root.handlers = []
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    finally:
        root.handlers = handlers
    captured = capfd.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def _changelog(catalog: Any, db: str, table: str) -> None:
    """A lake table pair as `cdc ingest` leaves it (what `lake_tables` lists)."""
    schema = pa.schema([pa.field("id", pa.int64())])
    try:
        catalog.create_namespace(db)
    except Exception:  # noqa: BLE001, S110 - already there
        pass
    catalog.create_table((db, table + lake.CHANGELOG_SUFFIX), schema=schema)
    catalog.create_table((db, table), schema=schema)


def test_kafka_unreachable_is_one_line_and_exit_3(home: Path, capfd: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    started = time.monotonic()
    code, out, err = run(["ingest", "--until-caught-up"], capfd)
    assert time.monotonic() - started < 15
    assert code == 3
    assert err.strip().splitlines() == ["error: Kafka is not reachable at 127.0.0.1:1: Failed to get metadata: Local: "
                                        "Broker transport failure"]


def test_catalog_unreachable_is_one_line_and_exit_3(home: Path, capfd: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_CATALOG__URI", "postgresql+psycopg2://cdc:s3cret@127.0.0.1:1/iceberg")
    for args in (["status"], ["dlq", "list"], ["merge", "--all"], ["check", "shop.orders"]):
        code, out, err = run(args, capfd)
        assert code == 3, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (args, lines)
        assert lines[0].startswith("error: the catalog lake is not reachable at postgresql+psycopg2://***@127.0.0.1:1/iceberg")
        assert "s3cret" not in err


@pytest.mark.parametrize("command", ["merge", "check"])
def test_a_table_not_in_the_lake_is_exit_2_before_spark_or_mariadb(home: Path, capfd: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.setenv("CDC_MARIADB__PORT", "1")  # `check` must not even try the source
    _changelog(lake.open_catalog(load_settings()), "shop", "orders")
    started = time.monotonic()
    code, _, err = run([command, "shop.orders", "shop.nothing"], capfd)
    assert time.monotonic() - started < 2
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: not in the lake (catalog lake at sqlite:///")
    assert lines[0].endswith("): shop.nothing")


@pytest.mark.parametrize("command", ["merge", "check"])
def test_all_over_an_empty_lake_is_not_success(home: Path, capfd: pytest.CaptureFixture[str], command: str) -> None:
    code, _, err = run([command, "--all"], capfd)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: no tables in the lake to {command} (catalog lake at sqlite:///")
    assert lines[0].endswith("): check CDC_HOME and the catalog settings")


def test_the_marker_database_is_not_a_user_table(home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    catalog = lake.open_catalog(load_settings())
    _changelog(catalog, MARKER_DB, "ping")
    state.record_halt(catalog, state.halt_record(TableId(MARKER_DB, "ping"), "a reason", "a remedy", None, None))
    code, out, err = run(["status"], capfd)
    assert code == 0, err
    assert MARKER_DB not in out
    for command in ("merge", "check"):
        code, _, err = run([command, "--all"], capfd)
        assert code == 1
        assert "no tables in the lake" in err
    code, _, err = run(["check", f"{MARKER_DB}.ping"], capfd)
    assert code == 2
    code, _, err = run(["sql", f"SELECT * FROM {MARKER_DB}.ping"], capfd)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    _changelog(catalog, "shop", "orders")
    code, out, err = run(["status", "--output", "json"], capfd)
    assert code == 0, err
    assert MARKER_DB not in out
    assert "shop.orders" in out


def test_a_click_usage_error_is_one_line_and_exit_2(home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["status", "--no-such-flag"], capfd)
    assert code == 2
    assert err.strip().splitlines() == ["error: No such option '--no-such-flag' (see cdc -h)"]
