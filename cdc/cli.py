"""The `cdc` command: parse, build settings, call one function, map errors to exit codes."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from cdc.config import Settings, load_settings, masked
from cdc.errors import CdcError, CheckFailed, ConfigError, TablesHalted
from cdc.events.model import TableId

out = Console(width=None if sys.stdout.isatty() else 200)
F = TypeVar("F", bound=Callable[..., Any])


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    if "settings" not in obj:
        obj["settings"] = load_settings()
    settings: Settings = obj["settings"]
    return settings


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    return t


def _table_id(text: str) -> TableId:
    try:
        return TableId.parse(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


@click.group()
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Change data capture from MariaDB/MySQL into Apache Iceberg."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "pyiceberg", "urllib3", "mysql.connector"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
    out.print(f"JVM artifacts ready in {s.cache}")


@stack.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Start MariaDB, Kafka and Kafka Connect (what already runs is left alone)."""
    from cdc.stack import jars, services

    s = _settings(ctx)
    jars.install(s.cache)
    started = services.up(s)
    out.print(f"started: {', '.join(started)}" if started else "already running")
    _print_status(s)


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop what `cdc stack up` started."""
    from cdc.stack import services

    stopped = services.down(_settings(ctx))
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """What runs: pid, port, version, log file."""
    _print_status(_settings(ctx))


def _print_status(s: Settings) -> None:
    from cdc.stack import services

    rows = [(st.name, "running" if st.running else "stopped", st.pid, f"127.0.0.1:{st.port}", st.version, st.log_file)
            for st in services.status(s)]
    out.print(_table("local stack", ["service", "state", "pid", "address", "version", "log"], rows))


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
    out.print(f"connector {name} is running")


# ----------------------------------------------------------------------------------------- ingest
@cli.command()
@click.option("--until-caught-up", is_flag=True, help="Drain to the end offsets seen at start, commit, exit 0.")
@click.pass_context
def ingest(ctx: click.Context, until_caught_up: bool) -> None:
    """Land change events from Kafka into the Iceberg changelog tables."""
    from cdc.ingest.consumer import Ingestor
    from cdc.lake.catalog import open_catalog

    s = _settings(ctx)
    ingestor = Ingestor(s, open_catalog(s))
    report = ingestor.drain() if until_caught_up else ingestor.run()
    rows = [(t.table, t.changes, t.commits) for t in sorted(report.tables.values(), key=lambda r: r.table)]
    out.print(_table("landed", ["table", "changes", "commits"], rows))
    out.print(f"{report.messages} messages: {report.changes} changes, {report.skipped} skipped (tombstones), "
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
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]} rows"),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=out) as bar:
        task = bar.add_task(f"bootstrap {tid}", total=None, done="0", rate="")
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=max(total, done), done=f"{done:,}/{total:,}", rate=f"{rate:,.0f} rows/s")

        r = run(_settings(ctx), tid, buckets=buckets, rebuild=rebuild, chunk_rows=chunk_rows, on_progress=progress)
    out.print(_table("bootstrap", ["table", "rows", "chunks", "seconds", "rows/s", "binlog position", "peak RSS MB", "mode"],
                     [(r.table, r.rows, r.chunks, f"{r.seconds:.1f}", f"{r.rows_per_second:,.0f}",
                       f"{r.binlog_file}:{r.binlog_position}", f"{r.peak_rss_mb:.0f}", "rebuild" if r.rebuilt else "new")]))
    click.echo(f"bootstrapped {r.table}: {r.rows} rows in {r.seconds:.1f} s ({r.rows_per_second:.0f} rows/s), "
               f"peak RSS {r.peak_rss_mb:.0f} MB, streaming takes over after {r.binlog_file}:{r.binlog_position}")


# ------------------------------------------------------------------------------------------ merge
@cli.command()
@click.argument("tables", nargs=-1)
@click.option("--all", "all_tables", is_flag=True, help="Merge every table that has a changelog.")
@click.pass_context
def merge(ctx: click.Context, tables: tuple[str, ...], all_tables: bool) -> None:
    """Fold changelog tables into base tables with Spark MERGE INTO."""
    from cdc.lake.catalog import lake_tables, open_catalog

    s = _settings(ctx)
    if all_tables == bool(tables):
        raise ConfigError("name tables as DB.TABLE, or pass --all (not both)")
    targets = lake_tables(open_catalog(s)) if all_tables else [_table_id(t) for t in tables]
    if not targets:
        out.print("no tables to merge")
        return
    from cdc.spark import session
    from spark_jobs.merge import merge_table

    spark = session(s)
    rows = []
    for t in targets:
        r = merge_table(spark, s.catalog.name, t.db, t.table, s.merge.tombstone_days)
        rows.append((r.table, "up to date" if r.skipped else "merged", r.changes, r.changelog_snapshot,
                     "" if r.rows_after < 0 else r.rows_after, f"{r.seconds:.1f}"))
    out.print(_table("merge", ["table", "result", "changes", "changelog snapshot", "rows", "seconds"], rows))


# ------------------------------------------------------------------------------------------ check
@cli.command()
@click.argument("tables", nargs=-1)
@click.option("--all", "all_tables", is_flag=True)
@click.pass_context
def check(ctx: click.Context, tables: tuple[str, ...], all_tables: bool) -> None:
    """Compare lake base tables with their source tables, row for row (exit 1 on a difference)."""
    from cdc.lake.catalog import lake_tables, open_catalog
    from cdc.verify import compare_table

    s = _settings(ctx)
    catalog = open_catalog(s)
    if all_tables == bool(tables):
        raise ConfigError("name tables as DB.TABLE, or pass --all (not both)")
    targets = lake_tables(catalog) if all_tables else [_table_id(t) for t in tables]
    results = [compare_table(s, catalog, t) for t in targets]
    _print_comparisons(results)
    if not all(r.equal for r in results):
        raise CheckFailed("the lake differs from the source")


def _print_comparisons(results: Sequence[Any]) -> None:
    rows = [(r.table, r.source_rows, r.lake_rows, len(r.missing_in_lake), len(r.extra_in_lake), len(r.different),
             r.duplicate_keys, "EQUAL" if r.equal else "DIFFERENT") for r in results]
    out.print(_table("source vs lake", ["table", "source rows", "lake rows", "missing", "extra", "different",
                                        "duplicate keys", "result"], rows))
    for r in results:
        for src, lake in r.different[:3]:
            out.print(f"  {r.table}: source {src}\n  {' ' * len(r.table)}  lake   {lake}")
        for row in r.missing_in_lake[:3]:
            out.print(f"  {r.table}: missing in the lake: {row}")
        for row in r.extra_in_lake[:3]:
            out.print(f"  {r.table}: only in the lake: {row}")


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
    from cdc.lake.catalog import open_catalog

    found = dead.rows(open_catalog(_settings(ctx)), limit)
    cols = ["topic", "partition", "offset", "source_table", "error_class", "message", "first_seen"]
    out.print(_table(f"dead letters ({len(found)} shown)", cols, [[r[c] for c in cols] for r in found]))


@dlq.command("replay")
@click.pass_context
def dlq_replay(ctx: click.Context) -> None:
    """Decode every dead letter again; land those that decode now and remove them from the table."""
    from cdc.ingest.replay import replay
    from cdc.lake.catalog import open_catalog

    s = _settings(ctx)
    r = replay(s, open_catalog(s))
    out.print(_table("replay", ["examined", "landed", "skipped", "still failing"],
                     [(r.examined, r.landed, r.skipped, r.still_failing)]))


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
        out.print(_table("", columns, rows))


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
    if as_json:
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
    out.print(_table("settings", ["key", "value"], rows))


# ----------------------------------------------------------------------------------------- status
@cli.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Per table: changelog and base snapshots, recorded offsets, last merge; dead letters."""
    from cdc.status import table_status

    s = _settings(ctx)
    rows, dead, halted = table_status(s)
    out.print(_table("tables", ["table", "state", "changelog rows", "offsets", "last landed", "base rows", "last merge",
                                "unmerged"], rows))
    out.print(f"dead letters: {dead}")
    for h in halted:
        out.print(f"halted: {h.db}.{h.table} since {h.since}: {h.reason}\n  remedy: {h.remedy}", markup=False)
    _raise_if_halted({f"{h.db}.{h.table}": h.reason for h in halted})


# ------------------------------------------------------------------------------------------- demo
@cli.command()
@click.option("--transactions", default=40, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--yes", is_flag=True, help="Drop and recreate the demo database even where the settings point beyond the local stack.")
@click.pass_context
def demo(ctx: click.Context, transactions: int, yes: bool) -> None:
    """The whole flow on the local stack with a sample shop database."""
    from cdc import demo as d

    results, _ = d.run(_settings(ctx), progress=lambda m: out.print(f"[bold]>[/bold] {m}"), transactions=transactions, yes=yes)
    _print_comparisons(results)
    if not all(r.equal for r in results):
        raise CheckFailed("the lake differs from the source")
    out.print("[green]every table in the lake equals its source[/green]")


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line per failure, exit codes 0/1/2/3."""
    verbose = "--verbose" in (argv or sys.argv[1:]) or "-v" in (argv or sys.argv[1:])
    try:
        cli.main(args=argv, standalone_mode=False, obj={})
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except CdcError as exc:
        if verbose:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the one place that turns anything into one line
        if verbose:
            traceback.print_exc()
        click.echo(f"error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)", err=True)
        sys.exit(4)
    sys.exit(0)
