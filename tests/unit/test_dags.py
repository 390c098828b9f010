"""The Airflow DAG files parse cleanly, declare the expected DAGs, and do nothing at parse time."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "airflow_dags"
DAG_FILE = DAGS_DIR / "cdc_merge.py"
DAG_ENV = ("CDC_MERGE_SCHEDULE", "CDC_WATCHDOG_SCHEDULE", "CDC_MERGE_TABLES", "CDC_CHECK_SCHEDULE", "CDC_MAX_LAG",
           "CDC_MAINTAIN_SCHEDULE", "CDC_SPARK_SUBMIT", "CDC_LAKE_POOL_SLOTS")
DAG_IDS = {"cdc_merge", "cdc_maintain", "cdc_bootstrap", "cdc_reconcile", "cdc_ingest_watchdog"}
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
    assert set(dagbag.dag_ids) == DAG_IDS


def test_merge_dag_maps_one_merge_per_due_table(dagbag: Any) -> None:
    """A tick lists the due tables (`cdc tables --due`); one mapped `cdc merge` per table: a failure fails only its own."""
    dag = dagbag.dags["cdc_merge"]
    assert dag.schedule == "*/5 * * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert sorted(dag.task_ids) == ["due_tables", "merge"]
    merge = dag.get_task("merge")
    assert type(merge).__name__ == "MappedOperator"
    assert merge.operator_class.__name__ == "BashOperator"
    assert merge.upstream_task_ids == {"due_tables"}
    assert merge.partial_kwargs["bash_command"] == 'exec cdc merge -- "$DAG_TABLE"'  # the name comes as a variable
    assert merge.partial_kwargs["retries"] == 0  # a failed gate is not transient: a retry would replace its evidence
    assert merge.partial_kwargs["append_env"] is True
    assert merge.partial_kwargs["skip_on_exit_code"] is None
    assert (merge.partial_kwargs["pool"], merge.partial_kwargs["pool_slots"]) == ("cdc_lake", 1)
    assert set(merge.expand_input.value) == {"env"}
    assert "gate" in (dag.description or "")


def test_maintenance_takes_the_whole_pool_so_no_merge_runs_meanwhile(dagbag: Any) -> None:
    dag = dagbag.dags["cdc_maintain"]
    assert dag.schedule == timedelta(hours=6)  # maintenance.interval's default
    assert dag.max_active_runs == 1
    task = dag.get_task("maintain")
    assert task.bash_command == "cdc maintain --all"
    assert (task.pool, task.pool_slots) == ("cdc_lake", 1)
    assert task.priority_weight > dagbag.dags["cdc_merge"].get_task("merge").partial_kwargs["priority_weight"]


def test_bootstrap_dag_takes_strict_params_and_passes_them_as_variables(dagbag: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags["cdc_bootstrap"]
    assert dag.schedule is None
    assert dag.max_active_runs == 1
    task = dag.get_task("bootstrap")
    assert "params" not in task.bash_command  # never rendered into the command text
    assert task.env["DAG_TABLE"] == "{{ params.table }}"

    def resolve(name: str, *value: object) -> object:
        return copy.deepcopy(dag.params.get_param(name)).resolve(*value)  # resolving keeps the value: use a copy

    assert resolve("table", "shop.orders") == "shop.orders"
    assert resolve("rebuild") is False
    for bad in ("shop", "shop.orders; rm -rf /", "shop.$(id)", "a.b.c", "a.b\n", "shop.{{ ds }}", "", "a." + "b" * 128):
        with pytest.raises(ParamValidationError):
            resolve("table", bad)
    with pytest.raises(ParamValidationError):
        resolve("table")  # no default: a run names its table
    with pytest.raises(ParamValidationError):
        resolve("rebuild", "yes")


@pytest.mark.parametrize(
    ("table", "rebuild", "argv"),
    [("shop.orders", "", ["bootstrap", "--", "shop.orders"]), ("a_1.B2", "yes", ["bootstrap", "--rebuild", "--", "a_1.B2"])],
)
def test_bootstrap_command_runs_cdc_with_exactly_the_table(dagbag: Any, tmp_path: Path, table: str, rebuild: str,
                                                          argv: list[str]) -> None:
    assert _bootstrap_bash(dagbag, tmp_path, table, rebuild) == (0, argv)


@pytest.mark.parametrize("table", ["shop.orders; touch pwned", "$(touch pwned).x", "a.b c", "-rf.x", "a.b\nb.c", ""])
def test_bootstrap_command_refuses_a_table_the_params_would_refuse(dagbag: Any, tmp_path: Path, table: str) -> None:
    """Should a value get past Airflow's param check (a conf from an old run, say), bash checks it before cdc runs."""
    code, argv = _bootstrap_bash(dagbag, tmp_path, table, "")
    assert (code, argv) == (2, None)
    assert not (tmp_path / "pwned").exists()


def _bootstrap_bash(dagbag: Any, tmp_path: Path, table: str, rebuild: str) -> tuple[int, list[str] | None]:
    """The bootstrap task's bash command with a stand-in `cdc` that records its argv."""
    fake = tmp_path / "bin" / "cdc"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f'#!{sys.executable}\nimport json, sys\nopen({str(tmp_path / "argv")!r}, "w").write(json.dumps(sys.argv[1:]))\n')
    fake.chmod(0o755)
    command = dagbag.dags["cdc_bootstrap"].get_task("bootstrap").bash_command
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "DAG_TABLE": table, "DAG_REBUILD": rebuild}
    proc = subprocess.run(["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)  # noqa: S603, S607
    recorded = tmp_path / "argv"
    return proc.returncode, json.loads(recorded.read_text()) if recorded.exists() else None


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


def test_cdc_tasks_inherit_the_worker_environment_and_fail_on_any_exit_code(dagbag: Any) -> None:
    tasks = [t for dag_id in DAG_IDS for t in dagbag.dags[dag_id].tasks if t.task_id != "due_tables"]
    assert len(tasks) == 5
    for task in tasks:
        kwargs = task.partial_kwargs if type(task).__name__ == "MappedOperator" else vars(task)
        assert kwargs["append_env"] is True, task.task_id  # CDC_* settings reach `cdc`
        assert kwargs["skip_on_exit_code"] in (None, []), task.task_id  # no exit code turns a failure into a skip
        assert kwargs["execution_timeout"] is not None, task.task_id


def _completed(stdout: str, code: int = 0, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], code, stdout, stderr)


LISTING = {"tables": [{"table": "shop.orders", "merge_interval_minutes": 15, "last_merge": "-", "last_failed_gate": "-"},
                      {"table": "shop.items", "merge_interval_minutes": 60, "last_merge": "x", "last_failed_gate": "-"}],
           "merge_job_args": {"shop.orders": ["--catalog", "lake", "--", "shop.orders"], "shop.items": ["--", "shop.items"]}}


def test_due_tables_runs_cdc_tables_and_maps_its_answer(dag_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        assert "shell" not in kwargs
        return _completed(json.dumps(LISTING))

    monkeypatch.setattr(dag_module.subprocess, "run", run)
    assert dag_module.due_tables([], False) == [{"PYTHONUNBUFFERED": "1", "DAG_TABLE": "shop.orders"},
                                                {"PYTHONUNBUFFERED": "1", "DAG_TABLE": "shop.items"}]
    assert calls[-1] == ["cdc", "--output", "json", "tables", "--due", "--within", "150"]
    assert dag_module.due_tables(["shop.orders", "shop.items"], True) == [["--catalog", "lake", "--", "shop.orders"],
                                                                          ["--", "shop.items"]]
    assert calls[-1][-2:] == ["shop.orders", "shop.items"]
    monkeypatch.setattr(dag_module.subprocess, "run", lambda argv, **kw: _completed('{"tables": []}'))
    assert dag_module.due_tables([], False) == []


def test_due_tables_fails_when_cdc_does(dag_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty lake (exit 1) or an unknown name (exit 2) must not look like 'nothing due'."""
    monkeypatch.setattr(dag_module.subprocess, "run",
                        lambda argv, **kw: _completed("", 1, "log line\nerror: no tables in the lake to list (...)\n"))
    with pytest.raises(RuntimeError, match="exited 1: error: no tables in the lake"):
        dag_module.due_tables([], False)


@pytest.mark.usefixtures("dagbag")
def test_schedules_tables_and_pool_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_MERGE_SCHEDULE", "*/10 * * * *")
    monkeypatch.setenv("CDC_WATCHDOG_SCHEDULE", "@daily")
    monkeypatch.setenv("CDC_CHECK_SCHEDULE", "@daily")
    monkeypatch.setenv("CDC_MAINTAIN_SCHEDULE", "0 3 * * *")
    monkeypatch.setenv("CDC_MERGE_TABLES", "shop.orders, shop.order_items")
    monkeypatch.setenv("CDC_MAX_LAG", "30m")
    monkeypatch.setenv("CDC_LAKE_POOL_SLOTS", "4")
    module = load_dag_module("cdc_merge_env_override")
    assert module.watchdog_dag.get_task("status").bash_command == "cdc status --max-lag 30m"
    assert module.merge_dag.schedule == "*/10 * * * *"
    assert module.watchdog_dag.schedule == "@daily"
    assert module.reconcile_dag.schedule == "@daily"
    assert module.maintain_dag.schedule == "0 3 * * *"
    assert module.maintain_dag.get_task("maintain").pool_slots == 4  # the whole pool
    assert module.maintain_dag.get_task("maintain").bash_command == "cdc maintain shop.orders shop.order_items"
    assert module.reconcile_dag.get_task("check").bash_command == "cdc check shop.orders shop.order_items"
    # the listing is asked about these tables only (an unknown one fails it: exit 2)
    assert module.merge_dag.get_task("due_tables").op_args == (["shop.orders", "shop.order_items"], False)


@pytest.mark.usefixtures("dagbag")
def test_spark_submit_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_SPARK_SUBMIT", "1")
    module = load_dag_module("cdc_merge_spark_submit")
    merge = module.merge_dag.get_task("merge")
    assert merge.operator_class.__name__ == "MergeJobSubmit"
    assert [c.__name__ for c in merge.operator_class.__mro__][1] == "SparkSubmitOperator"
    assert merge.partial_kwargs["conn_id"] == "spark_default"  # master, deploy mode, binary: Airflow's connection
    assert (merge.partial_kwargs["pool"], merge.partial_kwargs["retries"]) == ("cdc_lake", 0)
    assert set(merge.expand_input.value) == {"application_args"}
    assert "conf" not in merge.partial_kwargs  # no catalog setting, let alone a secret, on the command line
    assert module.merge_dag.get_task("due_tables").op_args == ([], True)


def test_the_merge_job_zip_carries_what_the_job_imports(dag_module: ModuleType, tmp_path: Path) -> None:
    application, archive = dag_module.package_merge_job(tmp_path)
    assert application.endswith("spark_jobs/merge.py")
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"cdc/__init__.py", "cdc/lake/__init__.py", "cdc/errors.py", "cdc/lake/contract.py", "merge.py", "merge_sql.py",
            "gate.py", "gate_publish.py", "gate_sql.py"} <= names
    # with nothing but the zip and the standard library on the path, the job's pure modules import
    probe = ("import sys; sys.path[:0] = [sys.argv[1]]; import cdc.errors, cdc.lake.contract, merge_sql, gate_sql, multiset_sql; "
             "print(cdc.lake.contract.__file__)")
    proc = subprocess.run([sys.executable, "-I", "-c", probe, archive], capture_output=True, text=True, check=False, cwd=tmp_path)  # noqa: S603
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(archive)


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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", timedelta(hours=6)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)), ("15 min", timedelta(minutes=15)),
     ("@daily", "@daily"), ("0 */4 * * *", "0 */4 * * *")],
)
def test_maintain_schedule(dag_module: ModuleType, raw: str, expected: object) -> None:
    assert dag_module.maintain_schedule(raw) == expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [("CDC_MAINTAIN_SCHEDULE", "5m"), ("CDC_SPARK_SUBMIT", "on"), ("CDC_SPARK_SUBMIT", "2"), ("CDC_LAKE_POOL_SLOTS", "0"),
     ("CDC_LAKE_POOL_SLOTS", "-1"), ("CDC_LAKE_POOL_SLOTS", "all")],
)
@pytest.mark.usefixtures("dagbag")
def test_bad_switches_are_an_import_error(monkeypatch: pytest.MonkeyPatch, name: str, raw: str) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=name):
        load_dag_module("cdc_merge_bad_switch")


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


@pytest.mark.parametrize("spark_submit", ["", "1"])
def test_parsing_imports_nothing_heavy_and_touches_no_file_or_network(tmp_path: Path, spark_submit: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in DAG_ENV}
    env.setdefault("AIRFLOW_HOME", str(tmp_path))
    env["CDC_SPARK_SUBMIT"] = spark_submit  # the Spark provider's operator is light; pyspark stays out
    proc = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", _PROBE, str(DAG_FILE), ",".join(HEAVY)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert [m for m in report["new"] if m.split(".")[0] in HEAVY] == []
    assert report["calls"] == []
    assert any(m.startswith("airflow.providers.apache.spark") for m in report["new"]) == bool(spark_submit)

