"""The Airflow DAGs under real Airflow 3 (`dag.test()`, a metadata DB in a temporary AIRFLOW_HOME) on the local stack.

One cycle: tables created at the source land in the lake; the merge DAG lists the due ones and maps one `cdc merge`
per table (the base equals the source; a table whose declared expectation fails fails only its own mapped task);
a second tick finds nothing due; the maintenance DAG runs; the bootstrap DAG, with params, bootstraps another
table (and rebuilds it), and refuses a table name that is not DB.TABLE before anything runs. With CDC_SPARK_SUBMIT=1
the merge goes through the Spark provider's spark-submit (a local master on the `spark_default` connection).

Every DAG is restricted to this module's tables (CDC_MERGE_TABLES): the lake is shared with other tests.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc import connectors
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.spark import secret_conf, session_conf
from cdc.verify import compare_table
from tests.e2e.faults_support import create_tables, execute, forget

pytestmark = [
    pytest.mark.e2e,
    # Airflow's in-process execution API imports starlette's TestClient, which warns about its own httpx
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
]

DAGS_DIR = Path(__file__).resolve().parents[2] / "airflow_dags"
DAG_ENV = ("CDC_MERGE_SCHEDULE", "CDC_WATCHDOG_SCHEDULE", "CDC_MERGE_TABLES", "CDC_CHECK_SCHEDULE", "CDC_MAX_LAG",
           "CDC_MAINTAIN_SCHEDULE", "CDC_SPARK_SUBMIT", "CDC_LAKE_POOL_SLOTS")
DB = f"af_{uuid.uuid4().hex[:8]}"
GOOD, BAD, BOOT, SUBMITTED = (TableId(DB, t) for t in ("good", "bad", "boot", "submitted"))
MINE = (GOOD, BAD, BOOT, SUBMITTED)
# the declared expectation `bad` violates: its gate fails, its mapped merge task fails, `good`'s does not
EXPECTATIONS = {str(BAD): {"expectations": [
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0}}]}}


LOG4J2 = """rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


@pytest.fixture(scope="module")
def airflow(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A fresh metadata DB in a temporary AIRFLOW_HOME; `cdc` subprocesses see this lake and these tables only."""
    home = tmp_path_factory.mktemp("airflow_home")
    with pytest.MonkeyPatch.context() as mp:
        for name in DAG_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("AIRFLOW_HOME", str(home))
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_DIR))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv("CDC_HOME", str(stack.home.resolve()))  # BashOperator runs `cdc` in a temporary directory
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # this venv's `cdc`
        mp.setenv("CDC_MERGE_TABLES", f"{GOOD} {BAD}")  # names the lake does not have fail the listing (exit 2)
        mp.setenv("CDC_TABLES", json.dumps(EXPECTATIONS))
        from airflow.utils.db import initdb

        initdb()  # the ORM's tables, stamped at head: seconds, where `airflow db migrate` replays every migration
        create_tables(stack, DB, ("good", "bad"))
        try:
            yield stack
        finally:
            forget(stack, MINE)
            execute(stack, f"DROP DATABASE IF EXISTS `{DB}`")


def _dag(dag_id: str) -> Any:
    """The DAG as Airflow's DagBag parses the folder now (the environment decides tables, schedules, spark-submit)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR), safe_mode=False)
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def _land(settings: Settings, *tables: TableId) -> None:
    connectors.wait_captured(settings, timeout=300)
    Ingestor(settings, lake.open_catalog(settings)).drain(tables=list(tables))


def _states(run: Any) -> dict[str, str]:
    """`task_id` or `task_id[rendered map index]` -> state."""
    out = {}
    for ti in run.get_task_instances():
        name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.rendered_map_index}]"
        out[name] = str(ti.state)
    return out


def _equal(settings: Settings, table: TableId) -> None:
    result = compare_table(settings, lake.open_catalog(settings), table)
    assert result.source_rows > 0
    assert result.equal, (table, result.missing_in_lake[:3], result.extra_in_lake[:3], result.different[:3])


def test_merge_dag_merges_each_due_table_in_its_own_task(airflow: Settings) -> None:
    execute(airflow, *(f"INSERT INTO `{DB}`.{t} VALUES ({i}, {i}, {i}.5, 'x')" for i in range(1, 21) for t in ("good", "bad")),
            f"UPDATE `{DB}`.good SET note = 'changed' WHERE id < 5", f"DELETE FROM `{DB}`.good WHERE id = 7",
            f"INSERT INTO `{DB}`.bad VALUES (99, 1, -1.5, 'negative')")
    _land(airflow, GOOD, BAD)

    run = _dag("cdc_merge").test()
    states = _states(run)
    assert states == {"due_tables": "success", f"merge[{GOOD}]": "success", f"merge[{BAD}]": "failed"}, states
    assert str(run.state) == "failed"
    _equal(airflow, GOOD)
    assert lake.open_catalog(airflow).load_table(lake.base_name(BAD)).current_snapshot() is None  # the gate kept main

    # the next tick: `good` merged a moment ago, `bad` failed its gate a moment ago: neither is due for 15 minutes
    execute(airflow, f"INSERT INTO `{DB}`.good VALUES (100, 1, 1.0, 'later')")
    _land(airflow, GOOD)
    run = _dag("cdc_merge").test()
    assert _states(run) == {"due_tables": "success", "merge": "skipped"}
    assert str(run.state) == "success"


def test_maintenance_dag_runs(airflow: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cdc maintain` runs with the worker's settings: two small files in a bucket are enough to compact here."""
    for n in (1, 2):  # row 1's changelog bucket gets a small file per landing
        execute(airflow, f"INSERT INTO `{DB}`.good VALUES (1, {n}, 1.0, 'again') ON DUPLICATE KEY UPDATE n = n + {n}")
        _land(airflow, GOOD)
    before = _rows(airflow, GOOD)
    landed = lake.open_catalog(airflow).load_table(lake.changelog_name(GOOD)).current_snapshot().snapshot_id
    monkeypatch.setenv("CDC_MAINTENANCE__MIN_SMALL_FILES", "2")
    run = _dag("cdc_maintain").test()
    assert _states(run) == {"maintain": "success"}
    assert str(run.state) == "success"
    assert _rows(airflow, GOOD) == before  # maintenance rewrites files, never what the tables hold
    changelog = lake.open_catalog(airflow).load_table(lake.changelog_name(GOOD))
    since = list(itertools.takewhile(lambda s: s.snapshot_id != landed, lake.ancestors(changelog)))
    operations = {s.summary.operation.value for s in since if s.summary is not None}
    assert operations == {"replace"}, since  # compacted (bucket by bucket: one commit or more), nothing else written


def _rows(settings: Settings, table: TableId) -> list[list[str]]:
    """What the base and the changelog hold, in a comparable form."""
    catalog = lake.open_catalog(settings)
    return [sorted(str(row) for row in catalog.load_table(ident).scan().to_arrow().to_pylist())
            for ident in (lake.base_name(table), lake.changelog_name(table))]


def test_bootstrap_dag_bootstraps_a_table_named_in_its_params(airflow: Settings) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    execute(airflow, f"CREATE TABLE `{DB}`.boot (id INT PRIMARY KEY, n BIGINT NOT NULL, amount DECIMAL(12,3) NULL, note VARCHAR(40) NULL)",
            *(f"INSERT INTO `{DB}`.boot VALUES ({i}, {i}, {i}.25, 'b')" for i in range(1, 31)))
    dag = _dag("cdc_bootstrap")
    with pytest.raises(ParamValidationError):
        dag.test(run_conf={"table": f"{BOOT}; touch /tmp/pwned"})

    run = dag.test(run_conf={"table": str(BOOT)})
    assert _states(run) == {"bootstrap": "success"}
    _equal(airflow, BOOT)
    first = lake.open_catalog(airflow).load_table(lake.base_name(BOOT)).current_snapshot().snapshot_id

    execute(airflow, f"UPDATE `{DB}`.boot SET note = 'rebuilt' WHERE id <= 10")
    run = dag.test(run_conf={"table": str(BOOT), "rebuild": True})
    assert _states(run) == {"bootstrap": "success"}
    assert lake.open_catalog(airflow).load_table(lake.base_name(BOOT)).current_snapshot().snapshot_id != first
    _equal(airflow, BOOT)


def test_merge_through_spark_submit(airflow: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CDC_SPARK_SUBMIT=1: spark-submit of spark_jobs/merge.py on `spark_default` (here a local master); the Spark
    configuration (catalog, Iceberg runtime) comes from spark-defaults.conf, as it would on a cluster."""
    execute(airflow, f"CREATE TABLE `{DB}`.submitted (id INT PRIMARY KEY, n BIGINT NOT NULL, amount DECIMAL(12,3), note VARCHAR(40))",
            *(f"INSERT INTO `{DB}`.submitted VALUES ({i}, {i}, {i}.75, 's')" for i in range(1, 16)),
            f"DELETE FROM `{DB}`.submitted WHERE id = 3")
    _land(airflow, SUBMITTED)
    conf = {**session_conf(airflow), **secret_conf(airflow), "spark.master": "local[1]"}
    (tmp_path / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in conf.items()))
    (tmp_path / "log4j2.properties").write_text(LOG4J2)  # the JVM's INFO lines would each become a task log line
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[1]"}))
    monkeypatch.setenv("CDC_MERGE_TABLES", str(SUBMITTED))
    monkeypatch.setenv("CDC_SPARK_SUBMIT", "1")
    dag = _dag("cdc_merge")
    monkeypatch.delenv("CDC_SPARK_SUBMIT")  # a parse-time switch of the DAG file, no setting of `cdc`
    assert type(dag.get_task("merge")).__name__ == "MappedOperator"
    run = dag.test()
    assert _states(run) == {"due_tables": "success", f"merge[{SUBMITTED}]": "success"}
    _equal(airflow, SUBMITTED)
