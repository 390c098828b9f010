"""The `cdc` command in-process, on a temporary SQLite lake: exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdc.cli import main
from cdc.config import load_settings
from cdc.events.model import TableId
from cdc.lake import catalog as lake, state


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_status_of_an_empty_lake(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status"], capsys)
    assert code == 0
    assert "dead letters: 0" in out


def test_a_halted_table_shows_with_its_remedy_and_fails_status(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = lake.open_catalog(load_settings())
    table = TableId("shop", "orders [1]")  # markup-like text is printed as it is
    state.record_halt(catalog, state.halt_record(table, "a [bold]reason[/bold]", "cdc bootstrap shop.orders --rebuild",
                                                 "cdc.shop.orders__1_", {0: 41}))
    code, out, err = run(["status"], capsys)
    assert code == 1
    assert "halted: shop.orders [1] since" in out
    assert "a [bold]reason[/bold]" in out
    assert "remedy: cdc bootstrap shop.orders --rebuild" in out
    assert err.strip().splitlines()[-1] == "error: 1 table(s) halted: shop.orders [1] (see `cdc status` for the remedy)"
    assert state.clear_halt(catalog, table)
    assert run(["status"], capsys)[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "nodot"], "expected DB.TABLE, got 'nodot'"),
        (["merge"], "name tables as DB.TABLE, or pass --all (not both)"),
        (["merge", "--all", "a.b"], "name tables as DB.TABLE, or pass --all (not both)"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, _, err = run(args, capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"error: {message}"]


def test_bad_settings_are_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_INGEST__BUCKETS", "0")
    code, _, err = run(["status"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "ingest.buckets" in err


def test_config_show_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["config", "show", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["catalog"]["properties"]["type"] == "sql"
    assert data["mariadb"]["admin_password"] in (None, "**********")


def test_dlq_list_of_an_empty_lake(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["dlq", "list"], capsys)
    assert code == 0
    assert "dead letters (0 shown)" in out
