"""A rebuild holds its table from the moment it reshapes the lake tables until it publishes: a rebuild
killed in between leaves the table halted (visible, nothing lands into the half-changed tables), and
running it again makes the table equal and streaming."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

from pyiceberg.types import DecimalType

from cdc.bootstrap.snapshot import bootstrap
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake, state
from cdc.source import quote_ident
from cdc.verify import compare_table
from spark_jobs.merge import merge_table
from tests.e2e.faults_support import cdc_process, execute


def test_a_rebuild_killed_after_reshaping_leaves_the_table_halted(stack: Settings, spark: Any) -> None:
    db = f"rh_{uuid.uuid4().hex[:8]}"
    table = TableId(db, "t")
    q = f"{quote_ident(db)}.t"
    execute(stack, f"CREATE DATABASE {quote_ident(db)}", f"CREATE TABLE {q} (id INT PRIMARY KEY, v INT)",
         f"INSERT INTO {q} VALUES " + ", ".join(f"({i}, {i})" for i in range(50)))
    bootstrap(stack, table)
    execute(stack, f"ALTER TABLE {q} MODIFY v DECIMAL(8,3)", f"UPDATE {q} SET v = v + 0.5 WHERE id < 10")
    proc = cdc_process(["bootstrap", str(table), "--rebuild"], CDC_FAULT_POINT="bootstrap-after-reshape")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -9, out.decode()[-2000:]
    catalog = lake.open_catalog(stack)
    base = catalog.load_table(lake.base_name(table))
    assert base.schema().find_field("v").field_type == DecimalType(8, 3)  # the window: reshaped...
    assert base.scan().to_arrow().column("v").null_count == 50  # ...and not published (the old rows, v under a new id)
    held = state.halted_tables(catalog)[table]
    assert "rebuilding from the source snapshot" in held.reason
    status = subprocess.run([sys.executable, "-m", "cdc", "status"], capture_output=True, text=True, check=False)  # noqa: S603
    assert status.returncode == 1
    assert str(table) in status.stdout + status.stderr
    report = Ingestor(stack, catalog).drain(tables=[table])  # nothing lands into the held table
    assert str(table) in report.halted
    bootstrap(stack, table, rebuild=True)  # run again: equal, and streaming
    assert table not in state.halted_tables(lake.open_catalog(stack))
    execute(stack, f"INSERT INTO {q} VALUES (100, 1.25)")
    Ingestor(stack, lake.open_catalog(stack)).drain(tables=[table])
    merge_table(spark, stack.catalog.name, db, "t")
    result = compare_table(stack, lake.open_catalog(stack), table)
    assert result.equal, (result.missing_in_lake[:2], result.different[:2], result.columns_differ)
    assert result.source_rows == 51
    execute(stack, f"DROP DATABASE {quote_ident(db)}")
