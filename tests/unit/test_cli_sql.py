"""`cdc sql` in-process on a temporary SQLite lake: a sandboxed, read-only DuckDB that scans only what it needs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cdc import query
from cdc.cli import main
from cdc.config import load_settings
from cdc.lake import catalog as lake

FILES = 30
ROWS_PER_FILE = 100


@pytest.fixture
def orders(home: Path) -> Any:
    """shop.orders in FILES data files (one append each) of ROWS_PER_FILE rows; ids 0.. in order."""
    catalog = lake.open_catalog(load_settings())
    catalog.create_namespace("shop")
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("note", pa.string()), pa.field("amount", pa.float64())])
    table = catalog.create_table(("shop", "orders"), schema=schema)
    for f in range(FILES):
        ids = list(range(f * ROWS_PER_FILE, (f + 1) * ROWS_PER_FILE))
        notes = [f"note {i}" for i in ids]
        if f == 0:
            notes[:4] = ["[/bold]", "3:x:4", "a;b", ":thumbs_up: [red]x[/red]"]
        table.append(pa.table({"id": ids, "note": notes, "amount": [i / 2 for i in ids]}, schema=schema))
    return catalog.load_table(("shop", "orders"))


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, tuple[str, ...]]]:
    """Every data file `cdc sql` reads: (file path, rows read, columns read)."""
    seen: list[tuple[str, int, tuple[str, ...]]] = []
    real = query._read_file

    def counting(arrow_scan: Any, task: Any) -> Iterator[pa.RecordBatch]:
        rows = 0
        columns: tuple[str, ...] = ()
        try:
            for batch in real(arrow_scan, task):
                rows += batch.num_rows
                columns = tuple(batch.schema.names)
                yield batch
        finally:  # also when the reader is dropped early (a LIMIT)
            seen.append((task.file.file_path, rows, columns))

    monkeypatch.setattr(query, "_read_file", counting)
    return seen


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM shop.orders, read_csv_auto('/etc/passwd')",
        "SELECT * FROM 'x.parquet'",
    ],
)
def test_host_files_are_refused(orders: Any, capsys: pytest.CaptureFixture[str], statement: str) -> None:
    code, out, err = run(["sql", statement], capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: ")
    assert "root:" not in err


@pytest.mark.parametrize(
    ("statement", "word"),
    [
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access=true", "SET"),
        ("SET lock_configuration=false", "SET"),
        ("INSERT INTO shop.orders VALUES (1, 'x', 1.0)", "INSERT"),
        ("UPDATE shop.orders SET note = 'x'", "UPDATE"),
        ("DELETE FROM shop.orders", "DELETE"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
        ("ATTACH '/tmp/x.db'", "ATTACH"),
        ("PRAGMA version", "PRAGMA"),
        ("CALL pragma_version()", "CALL"),
        ("EXPORT DATABASE '/tmp/x'", "EXPORT"),
    ],
)
def test_statements_that_are_not_a_read_are_refused(orders: Any, capsys: pytest.CaptureFixture[str], statement: str,
                                                    word: str) -> None:
    code, out, err = run(["sql", statement], capsys)
    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == [f"error: cdc sql runs one read-only query (SELECT, WITH, VALUES, DESCRIBE); "
                                        f"this is a {word} statement"]


def test_settings_cannot_be_changed_from_inside_a_query(orders: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["sql", "SELECT set_config('enable_external_access', 'true')"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    code, out, err = run(["sql", "SELECT current_setting('enable_external_access') AS v, "
                                 "current_setting('lock_configuration') AS l, "
                                 "current_setting('autoload_known_extensions') AS a, "
                                 "current_setting('autoinstall_known_extensions') AS i", "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out) == [{"v": False, "l": True, "a": False, "i": False}]


def test_two_statements_are_refused_but_a_semicolon_in_a_string_is_not(orders: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["sql", "SELECT 1; SELECT 2"], capsys)
    assert code == 2
    assert err.strip().splitlines() == ["error: cdc sql runs one statement, this text holds 2"]
    code, out, err = run(["sql", "SELECT id FROM shop.orders WHERE note = 'a;b';", "--format", "csv"], capsys)
    assert code == 0, err
    assert out.splitlines() == ["id", "2"]


def test_quoted_names(orders: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["sql", 'SELECT count(*) AS n FROM "shop"."orders"', "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out) == [{"n": FILES * ROWS_PER_FILE}]


def test_an_unknown_table_is_one_line_exit_2(orders: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["sql", "SELECT * FROM shop.nothing"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "nothing" in err


def test_values_are_printed_as_text_not_markup(orders: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["sql", 'SELECT note AS "[/b]" FROM shop.orders WHERE id < 4 ORDER BY id'], capsys)
    assert code == 0, err
    assert "[/b]" in out
    for text in ("[/bold]", "3:x:4", "a;b", ":thumbs_up: [red]x[/red]"):
        assert text in out
    assert "\N{THUMBS UP SIGN}" not in out


def test_limit_reads_one_file_not_the_table(orders: Any, capsys: pytest.CaptureFixture[str],
                                           reads: list[tuple[str, int, tuple[str, ...]]]) -> None:
    assert len(orders.inspect.files()) == FILES
    code, out, err = run(["sql", "SELECT * FROM shop.orders LIMIT 5", "--format", "json"], capsys)
    assert code == 0, err
    assert len(json.loads(out)) == 5
    assert 1 <= len(reads) <= 2, reads
    assert sum(rows for _, rows, _ in reads) <= 2 * ROWS_PER_FILE


def test_only_the_columns_a_query_needs_are_read(orders: Any, capsys: pytest.CaptureFixture[str],
                                                reads: list[tuple[str, int, tuple[str, ...]]]) -> None:
    code, out, err = run(["sql", "SELECT sum(amount) AS s FROM shop.orders", "--format", "json"], capsys)
    assert code == 0, err
    n = FILES * ROWS_PER_FILE
    assert json.loads(out) == [{"s": sum(i / 2 for i in range(n))}]
    assert len(reads) == FILES
    assert {columns for _, _, columns in reads} == {("amount",)}


def test_a_filter_prunes_files(orders: Any, capsys: pytest.CaptureFixture[str],
                               reads: list[tuple[str, int, tuple[str, ...]]]) -> None:
    code, out, err = run(["sql", "SELECT note FROM shop.orders WHERE id >= 2950 AND id < 2953 ORDER BY id", "--format", "csv"], capsys)
    assert code == 0, err
    assert out.splitlines() == ["note", "note 2950", "note 2951", "note 2952"]
    assert len(reads) == 1, reads  # min/max statistics of the other 29 files rule them out


def test_a_filter_pyiceberg_cannot_take_still_gives_exact_rows(orders: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["sql", "SELECT id FROM shop.orders WHERE note LIKE 'note 29_' OR id IN (1, 2) ORDER BY id",
                          "--format", "csv"], capsys)
    assert code == 0, err
    assert out.splitlines() == ["id", "1", "2", *[str(i) for i in range(290, 300)]]


def test_sql_is_quick_on_a_small_lake(orders: Any, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, _, err = run(["sql", "SELECT count(*) FROM shop.orders WHERE id = 7"], capsys)
    assert code == 0, err
    assert time.monotonic() - started < 10
