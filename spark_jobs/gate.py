"""The quality gate of a merge: checks run on the audit branch through Spark, before anything is published.

- great-expectations 1.x, on a Spark DataFrame of the branch (GX's Spark execution engine computes its
  metrics inside Spark, nothing is collected but the metrics and up to 20 unexpected values): the key
  columns not null and unique, and the table's declared expectations (`tables.<db.table>.expectations`);
- SQL run by Spark (spark_jobs/gate_sql.py): conservation per bucket against the slice, no key whose
  tombstone is newer than its row, and the schema (base columns = the changelog's source columns).

All results go into one record: printed by `cdc merge`, appended to the Iceberg table
`<catalog>.cdc_quality.gate_results`, and rendered as GX Data Docs under `<quality home>/gx/`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession

try:  # as a package (cdc merge) or as a file (spark-submit spark_jobs/merge.py)
    from spark_jobs import gate_sql as g, merge_sql as q
except ImportError:  # pragma: no cover - spark-submit puts the file's folder on the path
    import gate_sql as g  # type: ignore[no-redef,import-not-found]
    import merge_sql as q  # type: ignore[no-redef]
from cdc.lake.contract import CHANGELOG_ONLY, SEQ, SOURCE_TS

log = logging.getLogger("spark_jobs.gate")

RESULTS_NAMESPACE = "cdc_quality"
RESULTS_TABLE = "gate_results"
GX_DATASOURCE = "cdc_spark"


@dataclass(frozen=True)
class CheckResult:
    check: str  # e.g. `key_unique`, `conservation`, `expect_column_values_to_be_between(amount)`
    success: bool
    observed: str
    detail: str = ""


@dataclass
class GateReport:
    table: str
    branch: str
    run_id: str
    checks: list[CheckResult] = field(default_factory=list)
    docs: str | None = None  # the Data Docs page of this run (a local path), when rendered
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def passed(self) -> bool:
        return all(c.success for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.check for c in self.checks if not c.success]


# ---- custom checks (SQL) ------------------------------------------------------------------------------------


def keyed_checks(spark: SparkSession, plan: g.GatePlan) -> list[CheckResult]:
    """Conservation per bucket and no resurrected key, on the branch."""
    differing = spark.sql(g.conservation_sql(plan)).limit(20).collect()
    scope = f"per bucket(bucket({plan.bucket[0]}, {plan.bucket[1]}))" if plan.bucket else "whole table (no bucket partition)"
    conservation = CheckResult(
        "conservation", not differing,
        "; ".join(f"bucket {r[0]}: expected {r[1]}, found {r[2]}" for r in differing) or "every bucket as expected",
        f"rows = main's rows + keys the slice inserts - keys it deletes, {scope}")
    resurrected = int(spark.sql(g.resurrected_sql(plan)).collect()[0][0])
    tombstones = CheckResult("no_resurrected_key", resurrected == 0, f"{resurrected} rows",
                             "rows whose key has a newer tombstone")
    return [conservation, tombstones]


def multiset_checks(spark: SparkSession, base: tuple[str, str, str], branch: str, slice_view: str, keep_base: bool) -> list[CheckResult]:
    expected, actual = spark.sql(g.multiset_conservation_sql(base, branch, slice_view, keep_base)).collect()[0]
    return [CheckResult("conservation", int(expected) == int(actual), f"expected {expected}, found {actual}",
                        "rows = main's rows + rows the slice adds - rows it removes (no key: whole table)")]


def schema_check(base_columns: Mapping[str, str], changelog_columns: Mapping[str, str], frozen: Sequence[str]) -> CheckResult:
    """The base's source columns (and their types) equal the changelog's: the changelog is what the landing
    captured from the source (a frozen column, kept after its drop at the source, is the base's alone)."""
    base = {c: t for c, t in base_columns.items() if c not in (SEQ, SOURCE_TS) and c not in frozen}
    source = {c: t for c, t in changelog_columns.items() if c not in (SEQ, SOURCE_TS, *CHANGELOG_ONLY) and c not in frozen}
    problems = [f"{c} only in the base" for c in sorted(set(base) - set(source))]
    problems += [f"{c} only in the changelog" for c in sorted(set(source) - set(base))]
    problems += [f"{c}: base {base[c]}, changelog {source[c]}" for c in sorted(set(base) & set(source)) if base[c] != source[c]]
    return CheckResult("schema", not problems, "; ".join(problems) or f"{len(base)} source columns match",
                       "base columns = the changelog's captured source columns (metadata and frozen columns aside)")


def columns_of(spark: SparkSession, ident: Sequence[str]) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in spark.table(q.qualified(*ident)).schema.fields}


# ---- great-expectations -------------------------------------------------------------------------------------


def import_gx() -> Any:
    """great_expectations (its import pulls deprecated stdlib modules: not our warning to show)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import great_expectations

    return great_expectations


_CONTEXTS: dict[str | None, Any] = {}


def _context(quality_home: str | None) -> Any:
    """One GX context per project folder per process (an ephemeral one when there is none: no Data Docs)."""
    if quality_home not in _CONTEXTS:
        gx = import_gx()
        if quality_home is None:
            context = gx.get_context(mode="ephemeral")
        else:
            os.makedirs(quality_home, exist_ok=True)
            context = gx.get_context(mode="file", project_root_dir=quality_home)
        context.variables.progress_bars = {"globally": False}
        _CONTEXTS[quality_home] = context
    return _CONTEXTS[quality_home]


logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO lines echo its config files


def key_expectations(key: Sequence[str]) -> list[dict[str, Any]]:
    """The built-in key checks as GX expectation configurations."""
    found: list[dict[str, Any]] = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": k}} for k in key]
    if len(key) == 1:
        found.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": key[0]}})
    elif key:
        found.append({"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": list(key)}})
    return found


def expectation_name(config: Mapping[str, Any]) -> str:
    kwargs = config.get("kwargs") or {}
    target = kwargs.get("column") or ",".join(kwargs.get("column_list") or []) or ""
    return f"{config['type']}({target})" if target else str(config["type"])


CHECK_META = "cdc_check"  # meta key of each expectation we build: its index in the configured list


def build_expectation(config: Mapping[str, Any], index: int | None = None) -> Any:
    """A GX expectation object from `{type, kwargs}` (raises on an unknown type or bad kwargs). `index`, the
    expectation's place in the configured list, goes into its meta: GX does not return results in suite order
    (those that raised come first), so each result is matched to its configuration by this id."""
    import_gx()
    from great_expectations.expectations.registry import get_expectation_impl

    impl = get_expectation_impl(str(config["type"]))
    kwargs = dict(config.get("kwargs") or {})
    # the description is what Data Docs renders: it names the check as the results table and `cdc merge` do
    kwargs.setdefault("description", f"{expectation_name(config)}: {dict(config.get('kwargs') or {})}")
    if index is not None:
        kwargs["meta"] = {**(kwargs.get("meta") or {}), CHECK_META: index}
    return impl(**kwargs)


def _observed(outcome: Any) -> str:
    observed = outcome.result or {}
    if "unexpected_count" in observed:
        shown = f"{observed.get('unexpected_count')} unexpected of {observed.get('element_count')}"
        sample = observed.get("partial_unexpected_list") or []
        if sample:
            shown += f", e.g. {sample[:5]}"
    else:
        shown = str(observed.get("observed_value", observed))
    errors = _exception_messages(outcome.exception_info)
    if errors:
        shown = "error: " + "; ".join(errors)
    return shown


def _exception_messages(info: Any) -> list[str]:
    """The messages of what raised: `exception_info` is one record, or (GX 1.x, a metric that raised) a dict
    of records keyed by metric."""
    if not isinstance(info, Mapping):
        return []
    if "raised_exception" in info:
        return [str(info.get("exception_message"))] if info.get("raised_exception") else []
    return sorted({m for v in info.values() for m in _exception_messages(v)})


def label_results(outcomes: Sequence[Any], expectations: Sequence[Mapping[str, Any]]) -> list[CheckResult]:
    """One check per configured expectation, in configured order, each from the GX result whose expectation
    carries its index (`build_expectation`), never by position. A configured expectation without exactly one
    result fails; so does a result that names no configured expectation."""
    by_index: dict[int, list[Any]] = {}
    stray: list[Any] = []
    for outcome in outcomes:
        index = (outcome.expectation_config.meta or {}).get(CHECK_META)
        if isinstance(index, int) and 0 <= index < len(expectations):
            by_index.setdefault(index, []).append(outcome)
        else:
            stray.append(outcome)
    checks = []
    for i, config in enumerate(expectations):
        found = by_index.get(i, [])
        if len(found) != 1:
            checks.append(CheckResult(expectation_name(config), False,
                                      f"{len(found)} results from great-expectations" if found else "no result from great-expectations",
                                      "great-expectations"))
        else:
            checks.append(CheckResult(expectation_name(config), bool(found[0].success), _observed(found[0]), "great-expectations"))
    checks += [CheckResult(str(o.expectation_config.type), False, "a result for no configured expectation", "great-expectations")
               for o in stray]
    return checks


def run_expectations(spark: SparkSession, table: str, ident: Sequence[str], branch: str,
                     expectations: Sequence[Mapping[str, Any]], quality_home: str | None) -> tuple[list[CheckResult], str | None]:
    """Validate the branch (a Spark DataFrame) against `expectations`; (results, Data Docs page or None)."""
    gx = import_gx()

    context = _context(quality_home)
    frame = spark.read.option("branch", g.check_branch(branch)).table(q.qualified(*ident))
    source = context.data_sources.add_or_update_spark(name=GX_DATASOURCE)
    asset = next((a for a in source.assets if a.name == table), None) or source.add_dataframe_asset(name=table)
    batch = next((b for b in asset.batch_definitions if b.name == "branch"), None) or \
        asset.add_batch_definition_whole_dataframe("branch")
    suite = gx.ExpectationSuite(name=table, expectations=[build_expectation(e, i) for i, e in enumerate(expectations)])
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(gx.ValidationDefinition(name=table, data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    checks = label_results(result.results, expectations)
    docs = None
    if quality_home is not None:
        context.build_data_docs()
        docs = _docs_page(context)
    return checks, docs


def _docs_page(context: Any) -> str | None:
    """The local path of the Data Docs site's index (it links every validation run, newest first)."""
    from urllib.parse import unquote, urlsplit

    for site in context.get_docs_sites_urls():
        url = site.get("site_url")
        if url and url.startswith("file://"):
            return unquote(urlsplit(url).path)
    return None


# ---- results -------------------------------------------------------------------------------------------------


def write_results(spark: SparkSession, catalog: str, report: GateReport, published: bool) -> None:
    """Append this run's results (one row per check) to `<catalog>.cdc_quality.gate_results`."""
    from pyspark.sql.types import BooleanType, StringType, StructField, StructType, TimestampType

    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {q.qualified(catalog, RESULTS_NAMESPACE)}")
    target = (catalog, RESULTS_NAMESPACE, RESULTS_TABLE)
    spark.sql(g.results_table_sql(target))
    schema = StructType([StructField(n, t) for n, t in (
        ("run_id", StringType()), ("table", StringType()), ("branch", StringType()), ("check", StringType()),
        ("success", BooleanType()), ("observed", StringType()), ("detail", StringType()),
        ("checked_at", TimestampType()), ("published", BooleanType()))])
    rows = [(report.run_id, report.table, report.branch, c.check, c.success, c.observed[:2000], c.detail[:2000],
             report.checked_at, published) for c in report.checks]
    spark.createDataFrame(rows, schema).writeTo(q.qualified(*target)).append()
