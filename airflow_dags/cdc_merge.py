"""Airflow 3 DAGs that schedule the lakehouse side of the CDC pipeline.

* ``cdc_merge`` (every 15 minutes): ``cdc merge --all`` folds the Iceberg changelog tables into
  their base tables (Spark MERGE INTO), then ``cdc check --all`` compares the base tables with
  their MariaDB sources row for row and exits non-zero on a difference.
* ``cdc_ingest_watchdog`` (hourly): ``cdc status`` reads per-table progress from the lake; the run
  fails when it cannot (catalog or warehouse unreachable), and its log shows lag and dead letters.

This file only declares. At parse time it imports Airflow and the standard library, reads a few
environment variables, and does nothing else: no settings file, no catalog, no Kafka, no Spark.
The work happens in ``cdc`` subprocesses on the worker, which inherit the worker's environment, so
``CDC_*`` settings (or ``CDC_CONFIG`` pointing at a cdc.yaml) reach them unchanged; ``cdc`` must be
on the worker's PATH.

Environment read at parse time (all optional):
  CDC_MERGE_SCHEDULE     cron or preset for cdc_merge            (default ``*/15 * * * *``)
  CDC_WATCHDOG_SCHEDULE  cron or preset for cdc_ingest_watchdog  (default ``@hourly``)
  CDC_MERGE_TABLES       DB.TABLE names, space or comma separated, to merge and check instead of
                         ``--all``
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

MERGE_SCHEDULE = os.environ.get("CDC_MERGE_SCHEDULE", "").strip() or "*/15 * * * *"
WATCHDOG_SCHEDULE = os.environ.get("CDC_WATCHDOG_SCHEDULE", "").strip() or "@hourly"

# Letters, digits and _ only: no quoting, globbing, `$` expansion or Jinja can get through.
_TABLE_RE = re.compile(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")


def table_selection(raw: str) -> str:
    """The command-line selection of tables: ``--all``, or validated DB.TABLE names.

    Names are checked against a strict pattern (a ValueError is an import error Airflow shows),
    so nothing from the environment reaches the shell as anything but a table name.
    """
    names = [name for name in re.split(r"[\s,]+", raw.strip()) if name]
    if not names:
        return "--all"
    bad = [name for name in names if not _TABLE_RE.match(name)]
    if bad:
        raise ValueError(f"CDC_MERGE_TABLES: not DB.TABLE names: {', '.join(bad)}")
    return " ".join(names)


TABLES = table_selection(os.environ.get("CDC_MERGE_TABLES", ""))


def cdc_task(task_id: str, command: str, timeout: timedelta) -> BashOperator:
    """A BashOperator running one `cdc` command in the worker's inherited environment.

    append_env=True keeps the worker's environment (PYTHONUNBUFFERED is added so the logs stream);
    skip_on_exit_code=None makes every non-zero exit a failure (BashOperator would skip on 99).
    """
    return BashOperator(
        task_id=task_id,
        bash_command=command,
        env={"PYTHONUNBUFFERED": "1"},
        append_env=True,
        skip_on_exit_code=None,
        execution_timeout=timeout,
    )


_START = datetime(2025, 1, 1, tzinfo=UTC)

with DAG(
    dag_id="cdc_merge",
    description="MERGE the changelog tables into the base tables, then compare them with the source",
    schedule=MERGE_SCHEDULE,
    start_date=_START,
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    tags=["cdc"],
) as merge_dag:
    merge = cdc_task("merge", f"cdc merge {TABLES}", timedelta(hours=1))
    check = cdc_task("check", f"cdc check {TABLES}", timedelta(minutes=30))
    merge >> check

with DAG(
    dag_id="cdc_ingest_watchdog",
    description="Per-table ingest/merge progress from the lake (`cdc status`); fails if unreadable",
    schedule=WATCHDOG_SCHEDULE,
    start_date=_START,
    catchup=False,
    max_active_runs=1,
    tags=["cdc"],
) as watchdog_dag:
    cdc_task("status", "cdc status", timedelta(minutes=5))
