"""`cdc.quality.gate_results.last_gate`: the newest gate run per table, read with pyiceberg (for `cdc status`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa

from cdc.config import load_settings
from cdc.events.model import TableId
from cdc.lake import catalog as lake
from cdc.quality.gate_results import RESULTS_TABLE, GateSummary, last_gate

SCHEMA = pa.schema([("run_id", pa.string()), ("table", pa.string()), ("branch", pa.string()), ("check", pa.string()),
                    ("success", pa.bool_()), ("observed", pa.string()), ("detail", pa.string()),
                    ("checked_at", pa.timestamp("us")), ("published", pa.bool_())])


def _row(run: str, table: str, check: str, success: bool, at: datetime, published: bool) -> dict[str, object]:
    return {"run_id": run, "table": table, "branch": f"audit_1_{run}", "check": check, "success": success,
            "observed": "", "detail": "", "checked_at": at, "published": published}


def test_no_results_table_yet(home: Path) -> None:
    assert last_gate(lake.open_catalog(load_settings())) == {}


def test_the_newest_run_per_table_wins(home: Path) -> None:
    catalog = lake.open_catalog(load_settings())
    catalog.create_namespace(RESULTS_TABLE[0])
    table = catalog.create_table(RESULTS_TABLE, schema=SCHEMA)
    t1, t2 = datetime(2026, 11, 26, 7, 0), datetime(2026, 11, 26, 7, 15)  # noqa: DTZ001 - the table stores UTC without zone
    rows = [
        _row("r1", "shop.orders", "schema", True, t1, True),
        _row("r2", "shop.orders", "schema", True, t2, False),
        _row("r2", "shop.orders", "expect_column_values_to_be_between(amount)", False, t2, False),
        _row("r2", "shop.orders", "conservation", False, t2, False),
        _row("r3", "shop.items", "schema", True, t1, True),
        _row("r4", "shop.my.table", "schema", True, t1, True),  # a dot in the table's name (it broke `cdc status`)
    ]
    table.append(pa.Table.from_pylist(rows, schema=SCHEMA))
    assert last_gate(catalog) == {
        TableId("shop", "orders"): GateSummary(False, ("conservation", "expect_column_values_to_be_between(amount)"),
                                               "audit_1_r2", t2, published=False),
        TableId("shop", "items"): GateSummary(True, (), None, t1, published=True),
        TableId("shop", "my.table"): GateSummary(True, (), None, t1, published=True),
    }
