"""The last quality-gate result per table, read with pyiceberg from `cdc_quality.gate_results` (for `cdc status`).

The merge job (spark_jobs/gate.py) appends one row per check per run: run_id, table, branch, check, success,
observed, detail, checked_at, published. A run failed when any of its checks failed; its audit branch is then
kept as evidence (until the table's next merge).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cdc.events.model import TableId

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

RESULTS_TABLE = ("cdc_quality", "gate_results")  # = spark_jobs.gate.RESULTS_NAMESPACE, RESULTS_TABLE


@dataclass(frozen=True)
class GateSummary:
    passed: bool
    failed_checks: tuple[str, ...]
    branch: str | None  # the evidence branch of a failed gate (None when it passed)
    checked_at: datetime
    published: bool


def last_gate(catalog: Catalog) -> dict[TableId, GateSummary]:
    """Per table, its newest gate run (empty when no merge has run a gate yet)."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        table = catalog.load_table(RESULTS_TABLE)
    except (NoSuchTableError, NoSuchNamespaceError):
        return {}
    rows = table.scan(selected_fields=("run_id", "table", "branch", "check", "success", "checked_at", "published")).to_arrow()
    runs: dict[str, list[dict[str, object]]] = {}
    for row in rows.to_pylist():
        runs.setdefault(str(row["run_id"]), []).append(row)
    newest: dict[TableId, list[dict[str, object]]] = {}
    for checks in runs.values():
        db, _, rest = str(checks[0]["table"]).partition(".")  # the first dot separates: a table name may hold dots
        name = TableId(db, rest)
        at = checks[0]["checked_at"]
        if name not in newest or _at(newest[name]) < at:  # type: ignore[operator]
            newest[name] = checks
    out = {}
    for name, checks in newest.items():
        failed = tuple(sorted(str(c["check"]) for c in checks if not c["success"]))
        out[name] = GateSummary(passed=not failed, failed_checks=failed, branch=None if not failed else str(checks[0]["branch"]),
                                checked_at=_at(checks), published=bool(checks[0]["published"]))
    return out


def _at(checks: list[dict[str, object]]) -> datetime:
    at = checks[0]["checked_at"]
    assert isinstance(at, datetime)  # noqa: S101 - the table's schema says so
    return at
