"""The Airflow DAG files parse cleanly, declare the expected DAGs, and do nothing at parse time."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "airflow_dags"
DAG_FILE = DAGS_DIR / "cdc_merge.py"
DAG_ENV = ("CDC_MERGE_SCHEDULE", "CDC_WATCHDOG_SCHEDULE", "CDC_MERGE_TABLES", "CDC_CHECK_SCHEDULE", "CDC_MAX_LAG")
# What a DAG file must never pull in at parse time: the engines and clients the tasks use.
HEAVY = ("pyspark", "pyiceberg", "confluent_kafka", "cdc", "spark_jobs", "great_expectations",
         "mysql", "pandas", "pyarrow", "fastavro")


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        # Airflow reads its home on first import; never let a test write to ~/airflow.
        if "AIRFLOW_HOME" not in os.environ:
            mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
        for name in DAG_ENV:
            mp.delenv(name, raising=False)
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(dag_folder=str(DAGS_DIR), safe_mode=False)


@pytest.fixture(scope="module")
def dag_module(dagbag: Any) -> ModuleType:
    """The DAG file as a plain module, parsed with the defaults (the dagbag fixture cleared the env)."""
    return load_dag_module("cdc_merge_under_test")


def load_dag_module(name: str) -> ModuleType:
    """Execute the DAG file as a fresh module (reads the environment as it is now)."""
    spec = importlib.util.spec_from_file_location(name, DAG_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dag_files_parse_without_errors_or_warnings(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert dagbag.captured_warnings == {}
    assert set(dagbag.dag_ids) == {"cdc_merge", "cdc_reconcile", "cdc_ingest_watchdog"}


def test_merge_dag(dagbag: Any) -> None:
    """One `cdc merge` task: merge -> gate -> publish inside it; a failed gate exits 1 and fails the task."""
    dag = dagbag.dags["cdc_merge"]
    assert dag.schedule == "*/15 * * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.task_ids == ["merge"]
    assert dag.get_task("merge").bash_command == "cdc merge --all"
    assert dag.get_task("merge").retries == 0  # a failed gate is not transient: a retry would replace its evidence
    assert "gate" in (dag.description or "")


def test_reconcile_dag_runs_on_a_slower_schedule(dagbag: Any) -> None:
    dag = dagbag.dags["cdc_reconcile"]
    assert dag.schedule == "0 */6 * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.task_ids == ["check"]
    assert dag.get_task("check").bash_command == "cdc check --all"


def test_watchdog_dag(dagbag: Any) -> None:
    dag = dagbag.dags["cdc_ingest_watchdog"]
    assert dag.schedule == "@hourly"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.task_ids == ["status"]
    assert dag.get_task("status").bash_command == "cdc status --max-lag 1h"  # a stale table fails the run


def test_tasks_inherit_the_worker_environment_and_fail_on_any_exit_code(dagbag: Any) -> None:
    for dag_id in ("cdc_merge", "cdc_reconcile", "cdc_ingest_watchdog"):
        for task in dagbag.dags[dag_id].tasks:
            assert task.task_type == "BashOperator"
            assert task.append_env is True, task.task_id  # CDC_* settings reach `cdc`
            assert task.env == {"PYTHONUNBUFFERED": "1"}
            assert task.skip_on_exit_code == []  # no exit code turns a failure into a skip
            assert task.execution_timeout is not None


@pytest.mark.usefixtures("dagbag")
def test_schedule_and_tables_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_MERGE_SCHEDULE", "*/5 * * * *")
    monkeypatch.setenv("CDC_WATCHDOG_SCHEDULE", "@daily")
    monkeypatch.setenv("CDC_CHECK_SCHEDULE", "@daily")
    monkeypatch.setenv("CDC_MERGE_TABLES", "shop.orders, shop.order_items")
    monkeypatch.setenv("CDC_MAX_LAG", "30m")
    module = load_dag_module("cdc_merge_env_override")
    assert module.watchdog_dag.get_task("status").bash_command == "cdc status --max-lag 30m"
    assert [t.retries for t in module.merge_dag.tasks] == [0, 0]
    assert module.merge_dag.schedule == "*/5 * * * *"
    assert module.watchdog_dag.schedule == "@daily"
    assert module.reconcile_dag.schedule == "@daily"
    # one task per table, independent: one table's failed gate fails only its task
    assert sorted(module.merge_dag.task_ids) == ["merge__shop__order_items", "merge__shop__orders"]
    assert module.merge_dag.get_task("merge__shop__orders").bash_command == "cdc merge shop.orders"
    assert module.merge_dag.get_task("merge__shop__orders").upstream_task_ids == set()
    assert module.merge_dag.get_task("merge__shop__order_items").bash_command == "cdc merge shop.order_items"
    assert module.reconcile_dag.get_task("check").bash_command == "cdc check shop.orders shop.order_items"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", "--all"), ("  ", "--all"), ("a.b", "a.b"), ("a.b,c.d", "a.b c.d"), ("a.b \n c_1.D2", "a.b c_1.D2")],
)
def test_table_selection(dag_module: ModuleType, raw: str, expected: str) -> None:
    assert dag_module.table_selection(raw) == expected


@pytest.mark.parametrize(
    "raw", ["orders", "a.b.c", "a.b;rm -rf /", "a.$(id)", "a.b`id`", "a.{{ ds }}", "a.b'c", "a.b&&x"]
)
@pytest.mark.usefixtures("dagbag")
def test_unsafe_table_names_are_an_import_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CDC_MERGE_TABLES", raw)
    with pytest.raises(ValueError, match="CDC_MERGE_TABLES"):
        load_dag_module("cdc_merge_bad_tables")


@pytest.mark.parametrize(("raw", "expected"), [("", "1h"), (" ", "1h"), ("90s", "90s"), ("1.5h", "1.5h"), ("2d", "2d")])
def test_max_lag(dag_module: ModuleType, raw: str, expected: str) -> None:
    assert dag_module.max_lag(raw) == expected


@pytest.mark.parametrize("raw", ["1", "h", "1 h", "1H", "-1h", "0s", "0.0m", "1h;id", "$(id)h", "1w", "{{ ds }}", "1h\n1h"])
@pytest.mark.usefixtures("dagbag")
def test_bad_max_lag_is_an_import_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CDC_MAX_LAG", raw)
    with pytest.raises(ValueError, match="CDC_MAX_LAG"):
        load_dag_module("cdc_merge_bad_max_lag")


_PROBE = textwrap.dedent(
    """
    import builtins, importlib.util, io, json, os, socket, subprocess, sys

    import airflow.sdk  # the baseline: what the DAG file may rely on being imported already
    import airflow.providers.standard.operators.bash

    path, heavy = sys.argv[1], tuple(sys.argv[2].split(","))
    before = set(sys.modules)
    calls = []

    def importing():
        # I/O done while some module is being imported (a lazy import inside Airflow, say
        # croniter probing the platform) is an import's business, not the DAG file's.
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_name == "_find_and_load":
                return True
            frame = frame.f_back
        return False

    def guard(kind, real, method=False):
        def wrapper(*args, **kwargs):
            if not importing():
                calls.append([kind, repr(args[1:2] if method else args[:1])])
            return real(*args, **kwargs)
        return wrapper

    builtins.open = io.open = guard("open", builtins.open)
    socket.socket.connect = guard("connect", socket.socket.connect, method=True)
    socket.getaddrinfo = guard("getaddrinfo", socket.getaddrinfo)
    os.listdir = guard("listdir", os.listdir)
    os.scandir = guard("scandir", os.scandir)
    subprocess.Popen.__init__ = guard("subprocess", subprocess.Popen.__init__, method=True)

    spec = importlib.util.spec_from_file_location("cdc_merge_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    new = sorted(set(sys.modules) - before)
    present = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
    print(json.dumps({"new": new, "heavy": present, "calls": calls}))
    """
)


def test_parsing_imports_nothing_heavy_and_touches_no_file_or_network(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in DAG_ENV}
    env.setdefault("AIRFLOW_HOME", str(tmp_path))
    proc = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", _PROBE, str(DAG_FILE), ",".join(HEAVY)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert [m for m in report["new"] if m.split(".")[0] in HEAVY] == []
    assert report["calls"] == []
