"""The `cdc` command: parse, build settings, call one function, map errors to exit codes."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from cdc.config import Settings, load_settings, masked
from cdc.errors import CdcError, CheckFailed, ConfigError, ServiceError, TablesHalted
from cdc.events.model import TableId
from cdc.output import Format, Output

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

F = TypeVar("F", bound=Callable[..., Any])
# librdkafka's own log lines (every reconnect attempt); the clients' error callbacks and errors say what matters
QUIET_LOGGERS = {"py4j": logging.WARNING, "pyiceberg": logging.WARNING, "urllib3": logging.WARNING,
                 "mysql.connector": logging.WARNING, "cdc.librdkafka": logging.CRITICAL}


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    if "settings" not in obj:
        obj["settings"] = load_settings()
    settings: Settings = obj["settings"]
    return settings


def _out(ctx: click.Context) -> Output:
    """The command's output (text or JSON, from `--output`), written by `main` when the command ends."""
    obj = ctx.find_root().obj
    if "output" not in obj:
        obj["output"] = Output(cast(Format, obj.get("format", "text")))
    output: Output = obj["output"]
    return output


def _masked_uri(uri: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", uri)


def _catalog(s: Settings) -> Catalog:
    """The lake's catalog; one that does not answer is a service error (exit 3), not a traceback."""
    from cdc.lake.catalog import open_catalog
    from cdc.retry import error_kind

    try:
        return open_catalog(s)
    except CdcError:
        raise
    except Exception as exc:
        if error_kind(exc) == "terminal":
            raise
        uri = _masked_uri(str(s.catalog_properties().get("uri", s.catalog.name)))
        raise ServiceError(f"the catalog {s.catalog.name} is not reachable at {uri}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _user_tables(catalog: Catalog) -> list[TableId]:
    from cdc.status import user_tables

    return user_tables(catalog)


def _targets(catalog: Catalog, s: Settings, tables: tuple[str, ...], all_tables: bool, what: str) -> list[TableId]:
    """The tables a command works on, checked against the lake before anything slow starts.

    A name not in the lake is a usage error (exit 2); `--all` over an empty lake is a failure (exit 1):
    a scheduler must not see a wrong CDC_HOME or catalog as success.
    """
    if all_tables == bool(tables):
        raise ConfigError("name tables as DB.TABLE, or pass --all (not both)")
    known = _user_tables(catalog)
    where = f"catalog {s.catalog.name} at {_masked_uri(str(s.catalog_properties().get('uri', '')))}"
    if all_tables:
        if not known:
            raise CheckFailed(f"no tables in the lake to {what} ({where}): check CDC_HOME and the catalog settings")
        return known
    named = [_table_id(t) for t in tables]
    missing = [str(t) for t in named if t not in known]
    if missing:
        raise ConfigError(f"not in the lake ({where}): {', '.join(missing)}")
    return named


def _table_id(text: str) -> TableId:
    try:
        return TableId.parse(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _version() -> str:
    """The installed package's version, else the checkout's pyproject.toml (the venv runs the checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cdc-lakehouse")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        try:
            project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
            return str(project["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(dict)
        ctx.find_root().obj["verbose"] = True
        logging.getLogger().setLevel(logging.DEBUG)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)


def _set_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)
        ctx.find_root().obj["format"] = value


def _verbose_option() -> click.Option:
    return click.Option(["--verbose", "-v"], is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
                        help="Show tracebacks and debug logs.")


def _output_option() -> click.Option:
    return click.Option(["--output"], type=click.Choice(["text", "json"]), expose_value=False, callback=_set_format,
                        help="text (default) or one JSON document on stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="cdc", message="%(prog)s %(version)s")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--output", "fmt", type=click.Choice(["text", "json"]), default=None,
              help="text (default) or one JSON document on stdout, for every command that prints a table.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, fmt: str | None) -> None:
    """Change data capture from MariaDB/MySQL into Apache Iceberg."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = ctx.obj.get("verbose", False) or verbose
    if fmt is not None:
        ctx.obj["format"] = fmt
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else level)


# ------------------------------------------------------------------------------------------ stack
@cli.group()
def stack() -> None:
    """The local stack on 127.0.0.1 (state under CDC_HOME)."""


@stack.command("install")
@click.pass_context
def stack_install(ctx: click.Context) -> None:
    """Resolve the JVM artifacts (Kafka, Connect, Debezium, Iceberg runtime) into the cache."""
    from cdc.stack import jars

    s = _settings(ctx)
    jars.install(s.cache)
    _out(ctx).message(f"JVM artifacts ready in {s.cache}")


@stack.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Start MariaDB, Kafka and Kafka Connect (what already runs is left alone)."""
    from cdc.stack import jars, services

    s = _settings(ctx)
    jars.install(s.cache)
    started = services.up(s)
    _out(ctx).message(f"started: {', '.join(started)}" if started else "already running")
    _print_status(_out(ctx), s)


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop what `cdc stack up` started."""
    from cdc.stack import services

    stopped = services.down(_settings(ctx))
    _out(ctx).message(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """What runs: pid, port, version, log file."""
    _print_status(_out(ctx), _settings(ctx))


def _print_status(o: Output, s: Settings) -> None:
    from cdc.stack import services

    rows = [(st.name, "running" if st.running else "stopped", st.pid, f"127.0.0.1:{st.port}", st.version, st.log_file)
            for st in services.status(s)]
    o.table("services", "local stack", ["service", "state", "pid", "address", "version", "log"], rows)


# ------------------------------------------------------------------------------------- connectors
@cli.group()
def connectors() -> None:
    """Debezium connectors defined in connectors/."""


@connectors.command("apply")
@click.pass_context
def connectors_apply(ctx: click.Context) -> None:
    """Create or update the connector and wait until it runs."""
    from cdc import connectors as c

    name = c.apply(_settings(ctx))
    _out(ctx).message(f"connector {name} is running")


@connectors.command("status")
@click.pass_context
def connectors_status(ctx: click.Context) -> None:
    """The connector's and its tasks' states (the first line of a failed one's trace); exit 1 unless all run."""
    from cdc import connectors as c

    s = _settings(ctx)
    rows = c.task_states(s)
    _connector_table(ctx, s, rows)
    if not rows or any(r.state != "RUNNING" for r in rows):
        raise CheckFailed(f"connector {s.connect.connector_name}: " + ("not created (run `cdc connectors apply`)" if not rows
                          else ", ".join(f"{r.task} {r.state}" for r in rows if r.state != "RUNNING")))


@connectors.command("restart")
@click.pass_context
def connectors_restart(ctx: click.Context) -> None:
    """Restart the connector and its tasks, and wait until they run again."""
    from cdc import connectors as c

    s = _settings(ctx)
    _connector_table(ctx, s, c.restart(s))


def _connector_table(ctx: click.Context, s: Settings, rows: Sequence[Any]) -> None:
    _out(ctx).table("connector", f"connector {s.connect.connector_name} at {s.connect.url}",
                    ["name", "task", "state", "worker", "trace"], [tuple(r) for r in rows])


# ----------------------------------------------------------------------------------------- ingest
@cli.command()
@click.option("--until-caught-up", is_flag=True,
              help="Catch up with the source: land every change committed there before the start, commit, exit 0.")
@click.pass_context
def ingest(ctx: click.Context, until_caught_up: bool) -> None:
    """Land change events from Kafka into the Iceberg changelog tables."""
    from cdc.ingest.consumer import Ingestor

    s = _settings(ctx)
    ingestor = Ingestor.open(s)
    report = ingestor.drain(through_source=True) if until_caught_up else ingestor.run()
    rows = [(t.table, t.changes, t.commits) for t in sorted(report.tables.values(), key=lambda r: r.table)]
    o = _out(ctx)
    o.table("landed", "landed", ["table", "changes", "commits"], rows)
    o.value("totals", {"messages": report.messages, "changes": report.changes, "skipped": report.skipped,
                       "dead_letters": report.dead_letters},
            f"{report.messages} messages: {report.changes} changes, {report.skipped} skipped (tombstones), "
            f"{report.dead_letters} dead letters")
    _raise_if_halted(report.halted)


def _raise_if_halted(halted: dict[str, str]) -> None:
    """Halted tables make the exit code 1, one line each on stderr (`cdc status` has the remedy)."""
    if not halted:
        return
    for table, reason in sorted(halted.items()):
        click.echo(f"halted: {table}: {reason}", err=True)
    raise TablesHalted(f"{len(halted)} table(s) halted: {', '.join(sorted(halted))} (see `cdc status` for the remedy)")


# -------------------------------------------------------------------------------------- bootstrap
@cli.command()
@click.argument("table")
@click.option("--buckets", type=click.IntRange(1, 1024), help="Bucket count for new lake tables (default from settings).")
@click.option("--rebuild", is_flag=True, help="Rebuild an existing lake table while writes continue; switch atomically.")
@click.option("--chunk-rows", default=100_000, show_default=True, type=click.IntRange(1_000, 10_000_000))
@click.pass_context
def bootstrap(ctx: click.Context, table: str, buckets: int | None, rebuild: bool, chunk_rows: int) -> None:
    """Load a consistent snapshot of DB.TABLE into the lake and hand off to streaming."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from cdc.bootstrap.snapshot import bootstrap as run

    tid = _table_id(table)
    o = _out(ctx)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]} rows"),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=o.console,
                  disable=o.format == "json") as bar:
        task = bar.add_task(f"bootstrap {tid}", total=None, done="0", rate="")
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=max(total, done), done=f"{done:,}/{total:,}", rate=f"{rate:,.0f} rows/s")

        r = run(_settings(ctx), tid, buckets=buckets, rebuild=rebuild, chunk_rows=chunk_rows, on_progress=progress)
    if o.format == "json":
        o.table("bootstrap", "bootstrap", ["table", "rows", "chunks", "seconds", "rows_per_second", "binlog_position",
                                           "peak_rss_mb", "mode"],
                [(r.table, r.rows, r.chunks, round(r.seconds, 3), round(r.rows_per_second, 1), f"{r.binlog_file}:{r.binlog_position}",
                  round(r.peak_rss_mb, 1), "rebuild" if r.rebuilt else "new")])
        return
    o.table("bootstrap", "bootstrap", ["table", "rows", "chunks", "seconds", "rows/s", "binlog position", "peak RSS MB", "mode"],
            [(r.table, r.rows, r.chunks, f"{r.seconds:.1f}", f"{r.rows_per_second:,.0f}",
              f"{r.binlog_file}:{r.binlog_position}", f"{r.peak_rss_mb:.0f}", "rebuild" if r.rebuilt else "new")])
    o.message(f"bootstrapped {r.table}: {r.rows} rows in {r.seconds:.1f} s ({r.rows_per_second:.0f} rows/s), "
              f"peak RSS {r.peak_rss_mb:.0f} MB, streaming takes over after {r.binlog_file}:{r.binlog_position}")


# ------------------------------------------------------------------------------------------ merge
@cli.command()
@click.argument("tables", nargs=-1)
@click.option("--all", "all_tables", is_flag=True, help="Merge every table that has a changelog.")
@click.pass_context
def merge(ctx: click.Context, tables: tuple[str, ...], all_tables: bool) -> None:
    """Fold changelog tables into base tables through write-audit-publish (exit 1 when a gate fails).

    Each table's MERGE writes an audit branch; the quality gate checks it; only a passing branch is published
    to `main`. A failed gate keeps `main` as it was and the branch as evidence. Every table runs whatever
    another one did; then each failed gate and each errored table is named: exit 1 when a gate failed,
    else 3 (worth running again) or 4 when a table errored.
    """
    s = _settings(ctx)
    if all_tables == bool(tables):
        raise ConfigError("name tables as DB.TABLE, or pass --all (not both)")
    targets = _targets(_catalog(s), s, tables, all_tables, "merge")
    from cdc.retry import error_kind
    from cdc.spark import session
    from spark_jobs.merge import MergeFailed, TableOutcome, merge_table, summarize

    spark = session(s)
    quality_home = str((s.home / "quality").resolve())
    o = _out(ctx)
    rows: list[tuple[object, ...]] = []
    docs = None
    outcomes: list[TableOutcome] = []
    for t in targets:
        try:
            r = merge_table(spark, s.catalog.name, t.db, t.table, s.merge.tombstone_days,
                            s.table_settings(t.db, t.table).expectations, quality_home, s.merge_mode_for(t.db, t.table))
        except Exception as exc:  # noqa: BLE001 - the other tables go on; every error is named after them
            logging.getLogger("cdc.cli").debug("merge %s failed", t, exc_info=True)
            outcome = TableOutcome(str(t), error=exc)
            outcomes.append(outcome)
            rows.append((str(t), outcome.status, "", "", "", "", ""))
            continue
        outcomes.append(TableOutcome(r.table, result=r))
        gate = r.gate
        rows.append((r.table, r.outcome, r.changes, r.changelog_snapshot, "" if r.rows_after < 0 else r.rows_after,
                     "" if gate is None or r.published else gate.branch, f"{r.seconds:.1f}"))
        if gate is not None:
            docs = gate.docs or docs
    summary = summarize(outcomes, classify=lambda exc: 3 if error_kind(exc) == "transient" else 4)
    o.table("merge", "merge", ["table", "result", "changes", "changelog snapshot", "rows", "evidence branch", "seconds"], rows)
    for oc in outcomes:
        gate = oc.result.gate if oc.result is not None else None
        if gate is not None and oc.result is not None and not oc.result.published:
            for c in gate.checks:
                if not c.success:
                    o.message(f"  {oc.table}: gate check {c.check} failed: {c.observed}")
    if docs:
        o.message(f"Data Docs: {docs}")
    for line in [*summary.warnings, *(line for line in summary.lines if line.startswith("error: "))]:
        o.message(f"  {line}")
    if summary.code == 1:
        raise CheckFailed(summary.message)
    if summary.code:
        raise MergeFailed(summary.message, summary.code)


# --------------------------------------------------------------------------------------- maintain
@cli.command()
@click.argument("tables", nargs=-1)
@click.option("--all", "all_tables", is_flag=True, help="Maintain every table that has a changelog.")
@click.option("--dry-run", is_flag=True, help="Measure and print what would run; change nothing.")
@click.pass_context
def maintain(ctx: click.Context, tables: tuple[str, ...], all_tables: bool, dry_run: bool) -> None:
    """Compact, expire snapshots, rewrite manifests and remove orphan files of changelog, base and tombstones tables.

    Each step runs only when the numbers measured in the table's metadata pass the `maintenance` thresholds,
    and is printed with the numbers before and after it. A base or tombstones table with a young audit branch
    (a merge in flight) is not compacted. Every table runs; then each error is named: exit 3 (worth running
    again) or 4.
    """
    s = _settings(ctx)
    if all_tables == bool(tables):
        raise ConfigError("name tables as DB.TABLE, or pass --all (not both)")
    targets = _targets(_catalog(s), s, tables, all_tables, "maintain")
    from cdc.retry import error_kind
    from cdc.spark import session
    from spark_jobs.maintain import COLUMNS, MaintainFailed, maintain_table, rows, summarize, thresholds_from

    thresholds = thresholds_from(s.maintenance.model_dump())
    spark = session(s)
    outcomes = [maintain_table(spark, s.catalog.name, t.db, t.table, thresholds, dry_run=dry_run) for t in targets]
    o = _out(ctx)
    o.table("maintain", "maintenance (dry run: nothing changed)" if dry_run else "maintenance", COLUMNS, rows(outcomes))
    summary = summarize(outcomes, classify=lambda exc: 3 if error_kind(exc) == "transient" else 4)
    for line in summary.lines:
        o.message(f"  {line}")
    if summary.code:
        raise MaintainFailed(summary.message, summary.code)


# ----------------------------------------------------------------------------------------- tables
@cli.command()
@click.argument("tables", nargs=-1)
@click.option("--due", "only_due", is_flag=True, help="Only the tables whose scheduled merge is due.")
@click.option("--within", "within_seconds", default=0, show_default=True, type=click.IntRange(0, 3600),
              help="Also count as due what falls due within this many seconds.")
@click.pass_context
def tables(ctx: click.Context, tables: tuple[str, ...], only_due: bool, within_seconds: int) -> None:
    """Lake tables (or the named ones) with their merge interval, last merge and whether a merge is due (Airflow's merge DAG)."""
    from cdc.schedule import due_tables, merge_job_args, next_merge_ms, read_schedules, when

    s = _settings(ctx)
    catalog = _catalog(s)
    targets = _targets(catalog, s, tables, not tables, "list")
    schedules = read_schedules(s, catalog, targets)
    now_ms = int(time.time() * 1000)
    due = set(due_tables(schedules, now_ms, within_seconds * 1000))
    listed = [(t, sc) for t, sc in zip(targets, schedules, strict=True) if sc.table in due or not only_due]
    o = _out(ctx)
    o.table("tables", "tables", ["table", "state", "merge_interval_minutes", "last_merge", "last_failed_gate", "next_merge",
                                 "pending", "due"],
            [(sc.table, sc.state, sc.interval_minutes, when(sc.last_merge_ms), when(sc.last_failed_ms),
              when(next_merge_ms(sc.last_attempt_ms, sc.interval_minutes)) if sc.last_attempt_ms else "now", sc.pending,
              sc.table in due) for _, sc in listed])
    if o.format == "json":  # what a spark-submit of spark_jobs/merge.py takes per listed table
        o.value("merge_job_args", {sc.table: merge_job_args(s, t) for t, sc in listed}, "")


# ------------------------------------------------------------------------------------------ check
@cli.command()
@click.argument("tables", nargs=-1)
@click.option("--all", "all_tables", is_flag=True)
@click.option("--wait", "wait_seconds", default=300, show_default=True, type=click.IntRange(0, 86_400),
              help="Seconds to wait for the lake to land each table up to the check's source position.")
@click.pass_context
def check(ctx: click.Context, tables: tuple[str, ...], all_tables: bool, wait_seconds: int) -> None:
    """Reconcile lake base tables with their source tables at one consistent source position (exit 1 on a difference)."""
    from cdc.quality.reconcile import check_tables

    s = _settings(ctx)
    if all_tables == bool(tables):
        raise ConfigError("name tables as DB.TABLE, or pass --all (not both)")
    catalog = _catalog(s)
    targets = _targets(catalog, s, tables, all_tables, "check")
    results = check_tables(s, catalog, targets, float(wait_seconds))  # one source position for every table
    _print_reconciliations(_out(ctx), results)
    if any(r.differs for r in results):
        raise CheckFailed("the lake differs from the source")
    unchecked = [r.table for r in results if r.not_comparable]
    if unchecked:  # no difference found, but a table left unchecked must not look green to a scheduler
        raise CheckFailed(f"not compared as of the source position: {', '.join(unchecked)} (the reason is printed above)")


def _print_reconciliations(o: Output, results: Sequence[Any]) -> None:
    o.table("reconciliation", "source vs lake, at one source position",
            ["table", "result", "source position", "source rows", "lake rows", "buckets", "differing buckets", "missing",
             "extra", "different", "not compared", "seconds"],
            [(r.table, r.result, r.position, r.source_rows, r.lake_rows, r.buckets, r.differing_buckets,
              len(r.of_kind("missing")), len(r.of_kind("extra")), len(r.of_kind("different")), r.not_evaluable,
              f"{r.seconds:.1f}") for r in results])
    if o.format == "json":
        o.table("differences", "", ["table", "kind", "key", "columns", "source", "lake"],
                [(r.table, d.kind, d.key, d.columns, d.source, d.lake) for r in results for d in r.diffs])
    for r in results:
        if r.not_comparable:
            o.message(f"  {r.table}: not compared: {r.not_comparable}")
        for text in r.columns_differ:
            o.message(f"  {r.table}: column {text}")
        if o.format != "json":
            for d in r.diffs[:20]:
                key = ", ".join(f"{k}={v}" for k, v in d.key.items())
                where = {"missing": "missing in the lake", "extra": "only in the lake",
                         "different": f"columns differ: {', '.join(d.columns)}"}[d.kind]
                o.message(f"  {r.table}: {key}: {where}")
            if len(r.diffs) > 20:
                o.message(f"  {r.table}: ... and {len(r.diffs) - 20} more keys (--output json lists them all)")
        if r.unexplained_cells:
            o.message(f"  {r.table}: {r.unexplained_cells} differing cells were not listed key by key")
        if r.not_evaluable:
            o.message(f"  {r.table}: {r.not_evaluable} keys changed after the source position were not compared; "
                      "the next check covers them")


# ----------------------------------------------------------------------------------------- repair
@cli.command()
@click.argument("table")
@click.option("--wait", "wait_seconds", default=300, show_default=True, type=click.IntRange(0, 86_400),
              help="Seconds to wait for the lake to land the table up to the check's source position.")
@click.pass_context
def repair(ctx: click.Context, table: str, wait_seconds: int) -> None:
    """Land the keys `cdc check` finds differing, re-read from the source at a new consistent position."""
    from cdc.quality.repair import repair_table

    s = _settings(ctx)
    catalog = _catalog(s)
    target = _targets(catalog, s, (table,), False, "repair")[0]
    r = repair_table(s, catalog, target, float(wait_seconds))
    o = _out(ctx)
    _print_reconciliations(o, [r.check])
    o.table("repair", "repair", ["table", "source position", "rows landed", "deletes landed", "seconds"],
            [(r.table, r.position, r.present, r.absent, f"{r.seconds:.1f}")])
    if r.present or r.absent:
        o.message(f"landed {r.present + r.absent} keys into the changelog at {r.position}: run `cdc merge {r.table}` to apply")
    else:
        o.message(f"{r.table}: nothing to repair")


def _print_comparisons(o: Output, results: Sequence[Any]) -> None:
    rows = [(r.table, r.source_rows, r.lake_rows, len(r.missing_in_lake), len(r.extra_in_lake), len(r.different),
             r.duplicate_keys, "EQUAL" if r.equal else "DIFFERENT") for r in results]
    o.table("comparisons", "source vs lake", ["table", "source rows", "lake rows", "missing", "extra", "different",
                                              "duplicate keys", "result"], rows)
    for r in results:
        for text in r.columns_differ:
            o.message(f"  {r.table}: column {text}")
        for src, lake in r.different[:3]:
            o.message(f"  {r.table}: source {src}\n  {' ' * len(r.table)}  lake   {lake}")
        for row in r.missing_in_lake[:3]:
            o.message(f"  {r.table}: missing in the lake: {row}")
        for row in r.extra_in_lake[:3]:
            o.message(f"  {r.table}: only in the lake: {row}")


# -------------------------------------------------------------------------------------------- dlq
@cli.group()
def dlq() -> None:
    """The dead-letter table cdc_dlq.events."""


@dlq.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.pass_context
def dlq_list(ctx: click.Context, limit: int) -> None:
    """Dead letters with their coordinates and reason."""
    from cdc.ingest import dlq as dead

    found = dead.rows(_catalog(_settings(ctx)), limit)
    cols = ["topic", "partition", "offset", "source_table", "error_class", "message", "first_seen"]
    _out(ctx).table("dead_letters", f"dead letters ({len(found)} shown)", cols, [[r[c] for c in cols] for r in found])


@dlq.command("replay")
@click.pass_context
def dlq_replay(ctx: click.Context) -> None:
    """Decode every dead letter again; land those that decode now and remove them from the table."""
    from cdc.ingest.replay import replay

    s = _settings(ctx)
    r = replay(s, _catalog(s))
    _out(ctx).table("replay", "replay", ["examined", "landed", "skipped", "still failing", "refused"],
                    [(r.examined, r.landed, r.skipped, r.still_failing, len(r.refused))])
    for line in r.refused:
        click.echo(line, err=True)
    if r.refused:
        raise CheckFailed(f"{len(r.refused)} dead letter(s) older than the tombstone window were not replayed")


# -------------------------------------------------------------------------------------------- sql
@cli.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str) -> None:
    """Read-only SQL over the lake tables, named db.table (DuckDB over Iceberg scans)."""
    from cdc.query import run_query

    columns, rows = run_query(_settings(ctx), query)
    if fmt == "json":
        click.echo(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, ensure_ascii=False))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
    else:
        _out(ctx).table("rows", "", columns, rows)


# ----------------------------------------------------------------------------------------- config
@cli.group()
def config() -> None:
    """Settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """The resolved settings, secrets masked."""
    data = masked(_settings(ctx))
    if as_json or _out(ctx).format == "json":
        click.echo(json.dumps(data, indent=2))
        return
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            rows.append((prefix, json.dumps(value) if not isinstance(value, str) else value))

    walk("", data)
    _out(ctx).table("settings", "settings", ["key", "value"], rows)


# ----------------------------------------------------------------------------------------- status
@cli.command()
@click.option("--max-lag", "max_lag", metavar="DURATION", default=None,
              help="Exit 1 when a table's base is not complete through a source point younger than this (30m, 2h, 1d).")
@click.pass_context
def status(ctx: click.Context, max_lag: str | None) -> None:
    """Per table: state, freshness (complete through), Kafka lag, unmerged changes, last merge; dead letters."""
    from cdc.status import as_json, gate_text, stale, table_status, when

    limit = _duration(max_lag) if max_lag is not None else None
    s = _settings(ctx)
    statuses, dead, halted, notes = table_status(s, _catalog(s))
    now_ms = int(time.time() * 1000)
    o = _out(ctx)
    if o.format == "json":  # each table's object carries its freshness and why it is halted
        docs = [as_json(st, now_ms) for st in statuses]
        o.table("tables", "tables", list(docs[0]) if docs else ["table"], [list(d.values()) for d in docs])
    else:
        def age(st: Any) -> str:
            seconds = st.age_seconds(now_ms)
            return "-" if seconds is None else f"{when(st.complete_through.ts_ms)} ({_human(seconds)} ago)"

        o.table("tables", "tables", ["table", "state", "complete through", "kafka lag", "unmerged", "base rows", "last merge",
                                     "last gate", "changelog rows", "last landed"],
                [(st.table, st.state, age(st), "?" if st.kafka_lag is None else st.kafka_lag, st.unmerged, st.base_rows,
                  when(st.last_merge_ms), gate_text(st.gate), st.changelog_rows, when(st.last_landed_ms)) for st in statuses])
    for note in notes:
        o.message(note)
    o.value("dead_letters", dead, f"dead letters: {dead}")
    if o.format == "json":
        o.value("halted", [{"table": f"{h.db}.{h.table}", "since": h.since, "reason": h.reason, "remedy": h.remedy}
                           for h in halted], "")
    else:
        for h in halted:
            o.message(f"halted: {h.db}.{h.table} since {h.since}: {h.reason}\n  remedy: {h.remedy}")
    late = stale([st for st in statuses if st.state != "halted"], limit, now_ms) if limit is not None else []
    if o.format == "json" and limit is not None:
        o.value("stale", late, "")
    for line in late:
        click.echo(f"stale: {line}", err=True)
    _raise_if_halted({f"{h.db}.{h.table}": h.reason for h in halted})
    if late:
        raise CheckFailed(f"{len(late)} table(s) staler than {max_lag}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")


def _duration(text: str) -> float:
    """`30m` -> 1800.0 seconds (s, m, h, d); anything else is a usage error."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"--max-lag: expected a duration like 90s, 30m, 2h or 1d, got {text!r}")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


# ------------------------------------------------------------------------------------------- demo
@cli.command()
@click.option("--transactions", default=40, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--yes", is_flag=True, help="Drop and recreate the demo database even where the settings point beyond the local stack.")
@click.pass_context
def demo(ctx: click.Context, transactions: int, yes: bool) -> None:
    """The whole flow on the local stack with a sample shop database."""
    from cdc import demo as d

    o = _out(ctx)
    results, _ = d.run(_settings(ctx), progress=lambda m: o.message(f"> {m}"), transactions=transactions, yes=yes)
    _print_comparisons(o, results)
    if not all(r.equal for r in results):
        raise CheckFailed("the lake differs from the source")
    o.message("every table in the lake equals its source")


def _add_common_options(group: click.Group) -> None:
    """`-v/--verbose` after the sub-command too, and `--output` on every command but `sql` (it has `--format`)."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _add_common_options(command)
            continue
        command.params.append(_verbose_option())
        if command.name != "sql":
            command.params.append(_output_option())


_add_common_options(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line per failure, exit codes 0/1/2/3/4."""
    args = sys.argv[1:] if argv is None else argv
    obj: dict[str, Any] = {}
    code = 0
    try:
        code = cli.main(args=args, standalone_mode=False, obj=obj) or 0
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message().rstrip('.')} (see cdc -h)", err=True)
        sys.exit(2)
    except CdcError as exc:
        if exc.exit_code == 1 and "output" in obj:
            obj["output"].close()  # a failed check still reports what it found
        if obj.get("verbose") or "--verbose" in args or "-v" in args:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the one place that turns anything into one line
        from cdc.retry import error_kind

        if obj.get("verbose") or "--verbose" in args or "-v" in args:
            traceback.print_exc()
        if error_kind(exc) == "transient":  # a service (catalog database, object store, network) did not answer
            click.echo(f"error: a service did not answer: {type(exc).__name__}: {_first_line(exc)}", err=True)
            sys.exit(3)
        click.echo(f"error: {type(exc).__name__}: {_first_line(exc)} (run with --verbose for the traceback)", err=True)
        sys.exit(4)
    if "output" in obj:
        obj["output"].close()
    sys.exit(code)
