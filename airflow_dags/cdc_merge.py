"""Airflow 3 DAGs that schedule the lakehouse side of the CDC pipeline.

* ``cdc_merge`` (every 15 minutes): merge -> gate -> publish per table. ``cdc merge`` writes each
  table's MERGE to an Iceberg audit branch, runs the quality gate on the branch and fast-forwards
  ``main`` only when it passes; a failed gate leaves ``main`` untouched, keeps the branch as
  evidence and exits 1, which fails the task. With ``CDC_MERGE_TABLES`` set there is one task per
  table (``merge__<db>__<table>``), so one table's failed gate fails only its own task; without it,
  one ``cdc merge --all`` task merges every table (a failed gate or an error stops only its own
  table; the others are still published) and fails when any gate failed or any table errored.
  The three stages run inside one ``cdc merge`` process on purpose: they share one Spark session
  (starting one costs ~15 s) and the slice the gate checks against (the merge's latest-change
  view); split into three tasks each would start a session and recompute the slice,
  and a publish task could run against a branch whose audit task was retried meanwhile.
  The merge tasks never retry (``retries=0``): a failed gate is not transient (the same slice fails the
  same way), and a retry would only replace the evidence branch of the failed run with a new one. A merge
  that failed for a transient reason (exit 3) is picked up by the next scheduled run, which redoes the
  slice from ``main``.
* ``cdc_reconcile`` (every 6 hours): ``cdc check`` reconciles the base tables with their MariaDB
  sources at one consistent source position and exits non-zero on a difference. Slower than the
  merge on purpose: it reads the sources.
* ``cdc_ingest_watchdog`` (hourly): ``cdc status --max-lag <CDC_MAX_LAG>`` reads per-table progress from
  the lake; the run fails when a table's base is staler than the limit (exit 1) or when it cannot read
  (catalog or warehouse unreachable), and its log shows lag and dead letters.

This file only declares. At parse time it imports Airflow and the standard library, reads a few
environment variables, and does nothing else: no settings file, no catalog, no Kafka, no Spark.
The work happens in ``cdc`` subprocesses on the worker, which inherit the worker's environment, so
``CDC_*`` settings (or ``CDC_CONFIG`` pointing at a cdc.yaml) reach them unchanged; ``cdc`` must be
on the worker's PATH.

Environment read at parse time (all optional):
  CDC_MERGE_SCHEDULE     cron or preset for cdc_merge            (default ``*/15 * * * *``)
  CDC_CHECK_SCHEDULE     cron or preset for cdc_reconcile        (default ``0 */6 * * *``)
  CDC_WATCHDOG_SCHEDULE  cron or preset for cdc_ingest_watchdog  (default ``@hourly``)
  CDC_MERGE_TABLES       DB.TABLE names, space or comma separated, to merge (one task each) and
                         check instead of ``--all``
  CDC_MAX_LAG            the watchdog's freshness limit, a positive number and s|m|h|d (default ``1h``)
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

MERGE_SCHEDULE = os.environ.get("CDC_MERGE_SCHEDULE", "").strip() or "*/15 * * * *"
CHECK_SCHEDULE = os.environ.get("CDC_CHECK_SCHEDULE", "").strip() or "0 */6 * * *"
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

# A number and one unit letter, nothing else: a subset of what `cdc status --max-lag` accepts, safe in a shell.
_LAG_RE = re.compile(r"\d{1,9}(?:\.\d{1,6})?[smhd]")


def max_lag(raw: str) -> str:
    """The watchdog's `--max-lag` value (default ``1h``), checked against a strict pattern at parse time."""
    value = raw.strip() or "1h"
    if not _LAG_RE.fullmatch(value) or float(value[:-1]) <= 0:
        raise ValueError(f"CDC_MAX_LAG: not a positive duration like 90s, 30m, 1h or 1d: {value!r}")
    return value


MAX_LAG = max_lag(os.environ.get("CDC_MAX_LAG", ""))


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

def merge_task_id(table: str) -> str:
    """`merge__<db>__<table>` (task ids allow letters, digits, _, - and .; the name is already validated)."""
    db, _, name = table.partition(".")
    return f"merge__{db}__{name}"


with DAG(
    dag_id="cdc_merge",
    description="Per table: MERGE into an audit branch, run the quality gate, publish to main only when it passes",
    schedule=MERGE_SCHEDULE,
    start_date=_START,
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},  # a failed gate is not transient; a retry would replace its evidence branch
    tags=["cdc"],
) as merge_dag:
    if TABLES == "--all":
        cdc_task("merge", "cdc merge --all", timedelta(hours=1))
    else:
        for name in TABLES.split():
            cdc_task(merge_task_id(name), f"cdc merge {name}", timedelta(hours=1))

with DAG(
    dag_id="cdc_reconcile",
    description="Reconcile the base tables with their sources at one consistent source position (`cdc check`)",
    schedule=CHECK_SCHEDULE,
    start_date=_START,
    catchup=False,
    max_active_runs=1,
    tags=["cdc"],
) as reconcile_dag:
    cdc_task("check", f"cdc check {TABLES}", timedelta(hours=2))

with DAG(
    dag_id="cdc_ingest_watchdog",
    description="Per-table ingest/merge progress from the lake (`cdc status`); fails if unreadable",
    schedule=WATCHDOG_SCHEDULE,
    start_date=_START,
    catchup=False,
    max_active_runs=1,
    tags=["cdc"],
) as watchdog_dag:
    cdc_task("status", f"cdc status --max-lag {MAX_LAG}", timedelta(minutes=5))
