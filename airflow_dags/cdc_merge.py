"""Airflow 3 DAGs that schedule the lakehouse side of the CDC pipeline.

* ``cdc_merge`` (a tick every 5 minutes): one merge per table on that table's own schedule,
  ``tables.<db.table>.merge_interval`` (15 to 60 minutes, default ``merge.interval``). The first task runs
  ``cdc tables --due`` on the worker: at run time it reads the settings and, from the lake, each table's last
  merge, and lists the tables whose interval has passed since (never merged: due; halted, or nothing landed
  since the last merge: not due). Dynamic task mapping then runs one ``merge`` task instance per due table
  (``cdc merge DB.TABLE``), so one table's failure fails only its own mapped task.
  Why a tick and mapping, not one generated DAG per table: a DAG file only declares, and generated DAGs would
  need the table list and each interval at parse time (the settings file, the catalog). The tick reads them at
  run time instead; a table captured later is merged on the next tick without a new parse, and every merge
  runs in one DAG under one pool. A table is taken up to 150 s before it falls due (half the tick), so a merge
  that commits a minute after its tick keeps its interval instead of slipping a tick.
  Each ``cdc merge`` runs merge -> gate -> publish in one process on purpose: the three share one Spark session
  (starting one costs ~15 s) and the slice the gate checks against. A failed gate keeps ``main`` untouched and
  the audit branch as evidence and exits 1, failing the task. The merge tasks never retry (``retries=0``): a
  failed gate is not transient and a retry would replace its evidence; ``cdc tables`` counts a failed gate's
  branch as an attempt, so the table is tried again after its interval. A merge that failed for a transient
  reason (exit 3) left nothing behind: the next tick takes the table again.
* ``cdc_maintain`` (every 6 hours, ``maintenance.interval``'s default): ``cdc maintain`` compacts, expires
  snapshots, rewrites manifests and removes orphans where the lake's measurements say so.
* ``cdc_bootstrap`` (manual, with params ``table`` and ``rebuild``): ``cdc bootstrap DB.TABLE [--rebuild]``, one run
  at a time (a bootstrap reads a whole source table; two of the same table must never overlap).
  ``table`` must be ``DB.TABLE`` of letters, digits and ``_`` (Airflow refuses the run otherwise, and the task
  checks again); both reach bash as environment variables, never as part of the command text.
* ``cdc_reconcile`` (every 6 hours): ``cdc check`` reconciles the base tables with their MariaDB sources at one
  consistent source position and exits non-zero on a difference.
* ``cdc_ingest_watchdog`` (hourly): ``cdc status --max-lag <CDC_MAX_LAG>``; fails when a table's base is staler
  than the limit or the lake cannot be read. It also catches merges that stopped being scheduled at all.

Merge and maintenance never run at once: both take slots of the Airflow pool ``cdc_lake``. A merge takes one
slot, a maintenance run all of them (``CDC_LAKE_POOL_SLOTS``, which must equal the pool's size), so maintenance
starts only when no merge runs and no merge starts while it runs; its priority weight puts it first in the queue
when slots free up. Create the pool once: ``airflow pools set cdc_lake 1 "cdc Spark jobs"``. With one slot (the
default) the merges also run one at a time: each starts a local Spark, and on a small worker two would compete.
A bigger pool runs that many merges at once (set ``CDC_LAKE_POOL_SLOTS`` to the same size). Tasks of a pool that
does not exist are never scheduled: the watchdog then reports the tables as stale.

Spark: by default each merge is ``cdc merge`` with a local Spark on the worker. With ``CDC_SPARK_SUBMIT=1`` the
mapped merge is a ``SparkSubmitOperator`` (provider ``apache-airflow-providers-apache-spark``, imported only in
that mode) on the Airflow connection ``spark_default`` (master, deploy mode, spark binary, queue: Airflow's
conventions, e.g. ``AIRFLOW_CONN_SPARK_DEFAULT``). It submits ``spark_jobs/merge.py`` with ``--py-files`` of a zip
of the job's sibling modules and the dependency-free ``cdc/lake/contract.py`` and ``cdc/errors.py``, built on the
worker at run time from the installed project; the job's arguments per table (catalog name, tombstone days,
expectations) come from ``cdc tables``. The Spark side's catalog, Iceberg runtime and extensions, and any catalog
secret, come from the cluster's Spark configuration (``spark-defaults.conf``), never from this file or a command line.

This file only declares. At parse time it imports Airflow and the standard library (and the Spark provider in
spark-submit mode), reads a few environment variables, and does nothing else: no settings file, no catalog, no
Kafka, no Spark. The work happens in ``cdc`` subprocesses on the worker, which inherit the worker's environment,
so ``CDC_*`` settings (or ``CDC_CONFIG`` pointing at a cdc.yaml) reach them unchanged; ``cdc`` must be on the
worker's PATH.

Environment read at parse time (all optional):
  CDC_MERGE_SCHEDULE     cron or preset of cdc_merge's tick        (default ``*/5 * * * *``)
  CDC_MAINTAIN_SCHEDULE  cdc_maintain: ``<n>m``/``<n>h`` or cron    (default ``6h``, as ``maintenance.interval``)
  CDC_CHECK_SCHEDULE     cron or preset for cdc_reconcile           (default ``0 */6 * * *``)
  CDC_WATCHDOG_SCHEDULE  cron or preset for cdc_ingest_watchdog     (default ``@hourly``)
  CDC_MERGE_TABLES       DB.TABLE names, space or comma separated: merge (when due), maintain and check only these
  CDC_MAX_LAG            the watchdog's freshness limit, a positive number and s|m|h|d (default ``1h``)
  CDC_SPARK_SUBMIT       ``1``/``true``: merges through spark-submit on ``spark_default`` (default: local Spark)
  CDC_LAKE_POOL_SLOTS    the size of the ``cdc_lake`` pool: what a maintenance run takes (default ``1``)
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, task

log = logging.getLogger(__name__)

MERGE_SCHEDULE = os.environ.get("CDC_MERGE_SCHEDULE", "").strip() or "*/5 * * * *"
CHECK_SCHEDULE = os.environ.get("CDC_CHECK_SCHEDULE", "").strip() or "0 */6 * * *"
WATCHDOG_SCHEDULE = os.environ.get("CDC_WATCHDOG_SCHEDULE", "").strip() or "@hourly"
POOL = "cdc_lake"
DUE_EARLY_SECONDS = 150  # half the default tick: see the module docstring
TABLE_PATTERN = r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$"  # as bash's =~ reads it: `$` is the end of the string
# the same for a param (JSON schema: Python's re.search, where `$` also matches before a final newline)
PARAM_PATTERN = r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+(?![\s\S])"

# Letters, digits and _ only: no quoting, globbing, `$` expansion or Jinja can get through.
_TABLE_RE = re.compile(r"[A-Za-z0-9_]+\.[A-Za-z0-9_]+")


def table_selection(raw: str) -> str:
    """The command-line selection of tables: ``--all``, or validated DB.TABLE names.

    Names are checked against a strict pattern (a ValueError is an import error Airflow shows),
    so nothing from the environment reaches the shell as anything but a table name.
    """
    names = [name for name in re.split(r"[\s,]+", raw.strip()) if name]
    if not names:
        return "--all"
    bad = [name for name in names if not _TABLE_RE.fullmatch(name)]
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

_EVERY_RE = re.compile(r"(\d{1,4})\s*(m|min|h)")


def maintain_schedule(raw: str) -> str | timedelta:
    """``maintenance.interval``'s forms: ``<n>m`` or ``<n>h`` (every so long, at least 15 minutes), else a cron
    expression or preset as Airflow takes it (default ``6h``)."""
    value = raw.strip() or "6h"
    every = _EVERY_RE.fullmatch(value.lower())
    if every is None:
        return value
    delta = timedelta(hours=int(every.group(1))) if every.group(2) == "h" else timedelta(minutes=int(every.group(1)))
    if delta < timedelta(minutes=15):
        raise ValueError(f"CDC_MAINTAIN_SCHEDULE: maintenance more often than every 15 minutes: {value!r}")
    return delta


MAINTAIN_SCHEDULE = maintain_schedule(os.environ.get("CDC_MAINTAIN_SCHEDULE", ""))


def flag(name: str, raw: str) -> bool:
    """An on/off switch from the environment: 1/true/yes or 0/false/no/empty; anything else is an import error."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("", "0", "false", "no"):
        return False
    raise ValueError(f"{name}: expected 1 or 0 (true/false), got {raw!r}")


SPARK_SUBMIT = flag("CDC_SPARK_SUBMIT", os.environ.get("CDC_SPARK_SUBMIT", ""))


def pool_slots(raw: str) -> int:
    """The size of the ``cdc_lake`` pool, which a maintenance run takes whole (default 1)."""
    value = raw.strip() or "1"
    if not value.isdigit() or not 1 <= int(value) <= 128:
        raise ValueError(f"CDC_LAKE_POOL_SLOTS: expected the cdc_lake pool's size, 1 to 128, got {raw!r}")
    return int(value)


LAKE_POOL_SLOTS = pool_slots(os.environ.get("CDC_LAKE_POOL_SLOTS", ""))


def cdc_task(task_id: str, command: str, timeout: timedelta, **kwargs: Any) -> BashOperator:
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
        **kwargs,
    )


def due_tables(names: list[str], spark_submit: bool) -> list[Any]:
    """Run on the worker: `cdc tables --due` as JSON, logged, turned into one mapped merge per due table.

    Returns what the mapped merge expands over: per table the BashOperator's ``env`` (local Spark), or the merge
    job's arguments (spark-submit). `cdc` exits 1 on an empty lake and 2 on a name the lake does not have: both
    fail this task, so a wrong CDC_HOME or catalog never looks like "nothing due".
    """
    argv = ["cdc", "--output", "json", "tables", "--due", "--within", str(DUE_EARLY_SECONDS), *names]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603 - fixed argv, no shell
    for line in proc.stderr.splitlines():
        log.info("cdc tables: %s", line)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"`cdc tables --due` exited {proc.returncode}: {last[0]}")
    doc = json.loads(proc.stdout)
    rows = doc.get("tables", [])
    for row in rows:
        log.info("due: %s (every %s min, last merge %s, last failed gate %s)", row["table"], row["merge_interval_minutes"],
                 row["last_merge"], row["last_failed_gate"])
    if not rows:
        log.info("no table is due")
    if spark_submit:
        return [doc["merge_job_args"][row["table"]] for row in rows]
    return [{"PYTHONUNBUFFERED": "1", "DAG_TABLE": row["table"]} for row in rows]


def package_merge_job(dest: Path) -> tuple[str, str]:
    """Run on the worker: spark_jobs/merge.py's path and a zip for ``--py-files`` with what it imports.

    The zip holds the job's sibling modules (the job imports them as top-level modules when run as a file) and
    the two dependency-free project modules it takes from ``cdc`` under their package names. Everything comes
    from the project installed on the worker, the same one that runs ``cdc``.
    """
    import importlib.util
    import zipfile

    jobs, project = importlib.util.find_spec("spark_jobs"), importlib.util.find_spec("cdc")
    if jobs is None or project is None or not jobs.submodule_search_locations or not project.submodule_search_locations:
        raise RuntimeError("spark-submit needs the cdc project (spark_jobs and cdc) importable on the Airflow worker")
    jobs_dir, cdc_dir = Path(next(iter(jobs.submodule_search_locations))), Path(next(iter(project.submodule_search_locations)))
    archive = dest / "cdc_merge_job.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cdc/__init__.py", "")
        z.writestr("cdc/lake/__init__.py", "")
        z.write(cdc_dir / "errors.py", "cdc/errors.py")
        z.write(cdc_dir / "lake" / "contract.py", "cdc/lake/contract.py")
        for module in sorted(jobs_dir.glob("*.py")):
            if module.name != "__init__.py":
                z.write(module, module.name)
    return str(jobs_dir / "merge.py"), str(archive)


def merge_job_operator() -> type:
    """A SparkSubmitOperator that ships the merge job's modules; the provider is imported only in spark-submit mode."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    class MergeJobSubmit(SparkSubmitOperator):
        """spark-submit of spark_jobs/merge.py for one table; the zip is built per run on the submitting worker."""

        def execute(self, context: Any) -> None:
            with tempfile.TemporaryDirectory(prefix="cdc-merge-job-") as tmp:
                self.application, self.py_files = package_merge_job(Path(tmp))
                super().execute(context)

    return MergeJobSubmit


_START = datetime(2025, 1, 1, tzinfo=UTC)

with DAG(
    dag_id="cdc_merge",
    description="Per table on its own interval: MERGE into an audit branch, run the quality gate, publish to main only when "
                "it passes",
    schedule=MERGE_SCHEDULE,
    start_date=_START,
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},  # a failed gate is not transient; a retry would replace its evidence branch
    tags=["cdc"],
) as merge_dag:
    due = task(task_id="due_tables", execution_timeout=timedelta(minutes=10))(due_tables)(
        [] if TABLES == "--all" else TABLES.split(), SPARK_SUBMIT)
    if SPARK_SUBMIT:
        merge_job_operator().partial(
            task_id="merge", conn_id="spark_default", name="cdc-merge", pool=POOL, pool_slots=1,
            execution_timeout=timedelta(hours=1), map_index_template="{{ task.application_args[-1] }}",
        ).expand(application_args=due)
    else:
        BashOperator.partial(
            task_id="merge", bash_command='exec cdc merge -- "$DAG_TABLE"', append_env=True, skip_on_exit_code=None,
            pool=POOL, pool_slots=1, execution_timeout=timedelta(hours=1), map_index_template="{{ task.env.DAG_TABLE }}",
        ).expand(env=due)

with DAG(
    dag_id="cdc_maintain",
    description="Compaction, snapshot expiry, manifest rewrites and orphan removal where measured need says so (`cdc maintain`)",
    schedule=MAINTAIN_SCHEDULE,
    start_date=_START,
    catchup=False,
    max_active_runs=1,
    tags=["cdc"],
) as maintain_dag:
    # every slot of the pool: no merge runs meanwhile (see the module docstring); first in line when slots free up
    cdc_task("maintain", f"cdc maintain {TABLES}", timedelta(hours=3), pool=POOL, pool_slots=LAKE_POOL_SLOTS,
             priority_weight=100, weight_rule="absolute", retries=1, retry_delay=timedelta(minutes=10))

with DAG(
    dag_id="cdc_bootstrap",
    description="Load a consistent snapshot of one source table into the lake (`cdc bootstrap DB.TABLE [--rebuild]`)",
    schedule=None,
    start_date=_START,
    catchup=False,
    max_active_runs=1,
    params={
        "table": Param(type="string", pattern=PARAM_PATTERN, maxLength=129, description="DB.TABLE (letters, digits and _)"),
        "rebuild": Param(False, type="boolean", description="rebuild an existing lake table while writes continue"),
    },
    tags=["cdc"],
) as bootstrap_dag:
    # the params reach bash as variables, never as command text; the pattern is checked again before cdc runs
    BashOperator(
        task_id="bootstrap",
        bash_command=f'[[ "$DAG_TABLE" =~ {TABLE_PATTERN} ]] || {{ echo "not a DB.TABLE name" >&2; exit 2; }}\n'
                     'exec cdc bootstrap ${DAG_REBUILD:+--rebuild} -- "$DAG_TABLE"',
        env={"PYTHONUNBUFFERED": "1", "DAG_TABLE": "{{ params.table }}",
             "DAG_REBUILD": "{{ 'yes' if params.rebuild else '' }}"},
        append_env=True,
        skip_on_exit_code=None,
        execution_timeout=timedelta(hours=12),
        retries=0,
    )

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
