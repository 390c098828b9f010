"""B3 commit cost: one changelog commit through the landing path, 1k rows vs 1M rows, on changelogs with
0 / 1k (/ 10k) earlier snapshots, with and without snapshot expiry; SQLite and PostgreSQL catalogs.

The commit is the consumer's own: `cdc.ingest.commit.append_once` with `cdc.ingest.landing.ChangelogSink`
(load the table, read the offsets its ancestry recorded, drop what is already landed, append in one
snapshot whose summary carries the offsets). The rows are built before the clock starts (decoding is B1's).

History: `history` earlier landing commits of `history_rows` rows each, made through the same path.
"With expiry": a copy of that table (registered on the same metadata file, so the history is built once)
whose snapshots are expired down to the newest `retain` with pyiceberg's `expire_snapshots` (what
`cdc maintain` does by its retain-count rule; the manifests of the live files stay). A history built
with expiry from the start (`expire_every`) is used where building it without is not affordable.
PostgreSQL: the same tables registered in a private PostgreSQL catalog (tests/e2e/postgres.py).

Reported per case: median ms per commit for each size; fixed ms per commit (the small commit),
ms per extra 1k rows, growth with history (median at H / median at 0), and where the time goes at the
small size (loading the table, reading the recorded offsets through the ancestry).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyiceberg.catalog import Catalog

from benchmarks import common as c
from cdc.events.model import KafkaCoordinates, TableId
from cdc.ingest.commit import append_once, landed_state
from cdc.ingest.landing import ChangelogSink
from cdc.lake import catalog as lake
from cdc.lake.writer import plain_arrow
from cdc.retry import RetryPolicy

log = logging.getLogger("benchmarks.b3")

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"sizes": [1_000, 100_000], "histories": [0, 200], "history_rows": 100, "retain": 10, "postgres": True,
              "expire_every": 100, "expired_only": []},
    "medium": {"sizes": [1_000, 1_000_000], "histories": [0, 1_000], "history_rows": 100, "retain": 10, "postgres": True,
               "expire_every": 100, "expired_only": []},
    # 10k earlier commits without expiry is not built: pyiceberg's commit time grows with the history
    # (~1 ms per snapshot), so 10k commits would take hours; with expiry every 100 commits it takes ~1 h
    "full": {"sizes": [1_000, 1_000_000], "histories": [0, 1_000], "history_rows": 100, "retain": 10, "postgres": True,
             "expire_every": 100, "expired_only": [10_000]},
}
TOPIC = "cdc.bn_bench.b3"


@dataclass
class Case:
    name: str
    table: TableId
    catalog_kind: str  # sqlite | postgres
    catalog: Catalog
    history: int
    expired: bool
    offset: int = 0  # the next Kafka offset of the case's topic partition
    seq: int = 0


def _rows(schema: pa.Schema, n: int, case: Case,
          rng: np.random.Generator) -> tuple[pa.Table, list[KafkaCoordinates], dict[str, dict[int, int]]]:
    ids = rng.integers(0, 20_000_000, n)
    rows = c.arrow_rows(schema, ids, 1, c.change_ops(n, rng), seq_start=case.seq, topic=TOPIC, offset_start=case.offset)
    coords = [KafkaCoordinates(TOPIC, 0, o) for o in range(case.offset, case.offset + n)]
    offsets = {TOPIC: {0: case.offset + n}}
    case.offset += n
    case.seq += n
    return rows, coords, offsets


def _commit(case: Case, schema: pa.Schema, n: int, rng: np.random.Generator, policy: RetryPolicy) -> float:
    rows, coords, offsets = _rows(schema, n, case, rng)
    elapsed, landed = c.seconds(lambda: append_once(ChangelogSink(case.catalog, case.table), rows, coords, offsets, policy))
    if landed != n:
        raise RuntimeError(f"{case.name}: landed {landed} of {n} rows")
    return elapsed


def _expire(catalog: Catalog, table: TableId, retain: int) -> int:
    """Expire every snapshot but the newest `retain` of the current ancestry (and any outside it)."""
    tbl = catalog.load_table(lake.changelog_name(table))
    keep = {s.snapshot_id for _, s in zip(range(retain), lake.ancestors(tbl), strict=False)}
    doomed = [s.snapshot_id for s in tbl.metadata.snapshots if s.snapshot_id not in keep]
    if doomed:
        tbl.maintenance.expire_snapshots().by_ids(doomed).commit()
    return len(doomed)


def _build_history(case: Case, schema: pa.Schema, commits: int, rows: int, rng: np.random.Generator, policy: RetryPolicy,
                   expire_every: int | None, retain: int) -> float:
    started = time.monotonic()
    last = started
    for i in range(commits):
        _commit(case, schema, rows, rng, policy)
        if expire_every and (i + 1) % expire_every == 0:
            _expire(case.catalog, case.table, retain)
        if time.monotonic() - last > 30:
            last = time.monotonic()
            log.info("b3: %s: %d of %d history commits (%.0f s)", case.name, i + 1, commits, last - started)
    return time.monotonic() - started


def _shape(catalog: Catalog, table: TableId) -> dict[str, Any]:
    tbl = catalog.load_table(lake.changelog_name(table))
    snap = tbl.current_snapshot()
    manifests = len(snap.manifests(tbl.io)) if snap is not None else 0
    meta = Path(tbl.metadata_location.removeprefix("file://"))
    return {"snapshots": len(tbl.metadata.snapshots), "manifests": manifests,
            "metadata_json_bytes": meta.stat().st_size if meta.exists() else None,
            "data_files": int(snap.summary.additional_properties.get("total-data-files", 0)) if snap and snap.summary else 0}


def _components(case: Case) -> dict[str, float]:
    """Where a commit's fixed time goes: loading the table, and reading the offsets through its ancestry."""
    load, tbl = c.seconds(lambda: lake.landing_table(case.catalog.load_table(lake.changelog_name(case.table))))
    state, _ = c.seconds(lambda: landed_state(tbl))
    return {"load_ms": load * 1000, "landed_state_ms": state * 1000}


def _register(catalog: Catalog, source: Catalog, table: TableId, as_table: TableId) -> None:
    """`as_table` in `catalog`: a copy of `table` (in `source`) registered on its current metadata file."""
    location = source.load_table(lake.changelog_name(table)).metadata_location
    for ns in {as_table.db}:
        if not catalog.namespace_exists(ns):
            catalog.create_namespace(ns)
    catalog.register_table(lake.changelog_name(as_table), location)


def run(ctx: c.Context, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    rng = np.random.default_rng(3)
    policy = RetryPolicy()
    sqlite = lake.open_catalog(ctx.settings)
    sizes = [int(s) for s in params["sizes"]]
    retain = int(params["retain"])
    cases: list[Case] = []
    build: dict[str, float] = {}

    def new_case(name: str, history: int, expired: bool, catalog: Catalog, kind: str) -> Case:
        table = c.table_id(f"b3_{name}")
        lake.ensure_tables(catalog, ctx.settings, table, c.WORKLOAD)
        return Case(name, table, kind, catalog, history, expired)

    schema = plain_arrow(lake.ensure_tables(sqlite, ctx.settings, c.table_id("b3_probe"), c.WORKLOAD).schema().as_arrow())
    for history in [int(h) for h in params["histories"]]:
        case = new_case(f"sqlite_h{history}", history, False, sqlite, "sqlite")
        if history:
            build[case.name] = _build_history(case, schema, history, int(params["history_rows"]), rng, policy, None, retain)
        cases.append(case)
        if history:  # the same history, expired
            twin = Case(f"sqlite_h{history}_expired", c.table_id(f"b3_sqlite_h{history}_expired"), "sqlite", sqlite, history, True,
                        case.offset, case.seq)
            _register(sqlite, sqlite, case.table, twin.table)
            build[twin.name + "_expire_s"], n = c.seconds(lambda twin=twin: _expire(sqlite, twin.table, retain))
            log.info("b3: %s: expired %d snapshots", twin.name, n)
            cases.append(twin)
    for history in [int(h) for h in params.get("expired_only", [])]:
        case = new_case(f"sqlite_h{history}_expired", history, True, sqlite, "sqlite")
        build[case.name] = _build_history(case, schema, history, int(params["history_rows"]), rng, policy,
                                          int(params["expire_every"]), retain)
        _expire(sqlite, case.table, retain)
        cases.append(case)
        notes.append(f"{case.name}: built with expiry every {params['expire_every']} commits (10k commits without expiry "
                     "is not affordable here: the commit time grows with every retained snapshot)")

    cleanup: Callable[[], None] | None = None
    if params.get("postgres"):
        try:
            from tests.e2e import postgres as pg

            cluster = pg.create_cluster()
        except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional here
            notes.append(f"PostgreSQL catalog not measured: {type(exc).__name__}: {exc}")
        else:
            def cleanup() -> None:
                pg.remove_cluster(cluster)

            pg_settings = c.private_settings(ctx.root / "pg_home", catalog_uri=cluster.sqlalchemy_uri())
            postgres = lake.open_catalog(pg_settings)
            for case in list(cases):
                twin = Case(case.name.replace("sqlite", "postgres"), case.table, "postgres", postgres, case.history, case.expired,
                            case.offset, case.seq)
                if case.history:
                    _register(postgres, sqlite, case.table, twin.table)
                else:
                    lake.ensure_tables(postgres, pg_settings, twin.table, c.WORKLOAD)
                cases.append(twin)
            # a registered copy shares the history's files; its offsets continue on its own (another partition number
            # would do too): the SQLite twin and the PostgreSQL twin land the same offsets, each into its own table
    try:
        shapes = {case.name: _shape(case.catalog, case.table) for case in cases}
        samples = c.Samples()
        names = [case.name for case in cases]
        by_name = {case.name: case for case in cases}
        # one small commit each first (imports, connection pools): not recorded
        for case in cases:
            _commit(case, schema, sizes[0], rng, policy)
        for rep in range(ctx.reps):
            for name in c.rotated(names, rep):
                case = by_name[name]
                for size in c.rotated(sizes, rep):
                    samples.add(name, f"commit_ms_{size}", _commit(case, schema, size, rng, policy) * 1000)
                for k, v in _components(case).items():
                    samples.add(name, k, v)
            log.info("b3: repetition %d of %d done", rep + 1, ctx.reps)
    finally:
        if cleanup is not None:
            cleanup()
    small, large = sizes[0], sizes[-1]
    table: list[dict[str, Any]] = []
    for case in cases:
        base_name = f"{case.catalog_kind}_h0"
        fixed = samples.median(case.name, f"commit_ms_{small}")
        big = samples.median(case.name, f"commit_ms_{large}")
        table.append({
            "case": case.name, "catalog": case.catalog_kind, "history": case.history, "expired": case.expired,
            "shape_before": shapes[case.name],
            f"median_ms_{small}": fixed, f"median_ms_{large}": big,
            f"p90_ms_{small}": c.stats(samples.data[case.name][f"commit_ms_{small}"])["p90"],
            "ms_per_1k_extra_rows": None if fixed is None or big is None else (big - fixed) / ((large - small) / 1000),
            "growth_vs_h0": c.ratio(fixed, samples.median(base_name, f"commit_ms_{small}")),
            f"growth_vs_h0_{large}": c.ratio(big, samples.median(base_name, f"commit_ms_{large}")),
            "load_ms": samples.median(case.name, "load_ms"), "landed_state_ms": samples.median(case.name, "landed_state_ms"),
        })
    results = {"cases": table, "samples": samples.summary(), "history_build_seconds": build}
    return results, notes


def report(results: dict[str, Any]) -> list[str]:
    cases = results["cases"]
    if not cases:
        return []
    small = next(k for k in cases[0] if k.startswith("median_ms_"))
    large = [k for k in cases[0] if k.startswith("median_ms_")][-1]
    lines = [f"| case | snapshots | manifests | {small} | {large} | growth vs H0 (small) | load ms | offsets walk ms |",
             "|---|---|---|---|---|---|---|---|"]
    for row in cases:
        shape = row["shape_before"]
        lines.append(f"| {row['case']} | {shape['snapshots']} | {shape['manifests']} | {c.fmt(row[small])} | {c.fmt(row[large])} | "
                     f"{c.fmt(row['growth_vs_h0'])} | {c.fmt(row['load_ms'])} | {c.fmt(row['landed_state_ms'])} |")
    return lines
