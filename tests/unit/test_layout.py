"""The import rules the layout promises, checked on the source (no module is run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the only modules that may start or install the local stack: its own package, its CLI commands, the demo
MAY_USE_THE_STACK = {"cdc/cli.py", "cdc/demo.py"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_no_production_module_imports_the_local_stack() -> None:
    offenders = []
    for path in _modules("cdc") + _modules("spark_jobs") + _modules("airflow_dags"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("cdc/stack/") or rel in MAY_USE_THE_STACK:
            continue
        if any(name == "cdc.stack" or name.startswith("cdc.stack.") for name in _imports(path)):
            offenders.append(rel)
    assert offenders == []


SHIPPED = ("cdc.lake.contract", "cdc.errors")  # dependency-free modules a spark-submit ships with --py-files


def test_spark_jobs_import_only_the_lake_contract_and_the_errors_from_cdc() -> None:
    """Under spark-submit only PySpark is installed: the jobs may take the contract and the error kinds, nothing else."""
    for path in _modules("spark_jobs"):
        from_cdc = {n for n in _imports(path) if n == "cdc" or n.startswith("cdc.")}
        assert from_cdc <= {n for n in from_cdc if n.startswith(SHIPPED)}, path


@pytest.mark.parametrize("module", ["cdc/lake/contract.py", "cdc/errors.py"])
def test_what_spark_jobs_ship_imports_nothing_of_the_project(module: str) -> None:
    assert {n for n in _imports(ROOT / module) if n != "__future__" and not n.startswith("__future__.")} == set()


def test_decoding_imports_nothing_from_kafka_iceberg_or_spark() -> None:
    for path in _modules("cdc/events"):
        heavy = {n for n in _imports(path) if n.split(".")[0] in {"confluent_kafka", "pyiceberg", "pyspark", "pyarrow"}}
        assert heavy == set(), path
