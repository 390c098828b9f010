"""RELIABILITY row 23 as one sweep, run late in the suite (after the other e2e tests produced their logs,
lake tables and dead letters): no secret of the local stack appears in any log, Connect REST answer,
snapshot summary, table or namespace property, dead letter, or command line."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cdc.config import Settings
from cdc.connectors import connector_secrets
from cdc.ingest import dlq
from cdc.lake import catalog as lake

pytestmark = pytest.mark.e2e


def _secrets(settings: Settings) -> list[str]:
    values = [p.read_text().strip() for p in (settings.home / "secrets").iterdir() if p.is_file()]
    values += list(connector_secrets(settings).values())
    found = sorted({v for v in values if len(v) >= 8})
    assert found, "no secrets to look for"
    return found


def _rest(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the local Connect
        return str(resp.read().decode())


def _places(settings: Settings, catalog: Any) -> dict[str, bytes]:
    places: dict[str, bytes] = {}
    for log in sorted((settings.home / "stack").rglob("*.log")):
        places[str(log)] = log.read_bytes()
    name, url = settings.connect.connector_name, settings.connect.url
    for path in ("/connectors", f"/connectors/{name}", f"/connectors/{name}/config", f"/connectors/{name}/status",
                 f"/connectors/{name}/tasks", f"/connectors/{name}/offsets"):
        places[f"GET {path}"] = _rest(url + path).encode()
    for ns in catalog.list_namespaces():
        places[f"namespace {ns}"] = json.dumps(catalog.load_namespace_properties(ns)).encode()
        for ident in catalog.list_tables(ns):
            table = catalog.load_table(ident)
            summaries = [s.summary.additional_properties if s.summary else {} for s in table.snapshots()]
            places[f"table {ident}"] = json.dumps([table.properties, summaries], default=str).encode()
    places["dead letters"] = b"".join((r["key"] or b"") + (r["value"] or b"") + str(r["message"]).encode()  # type: ignore[operator]
                                      for r in dlq.raw_rows(catalog))
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            places[str(cmdline)] = cmdline.read_bytes()
        except OSError:
            continue  # the process ended meanwhile
    return places


def test_no_secret_anywhere(stack: Settings, catalog: Any) -> None:
    secrets = _secrets(stack)
    places = _places(stack, lake.open_catalog(stack))
    assert len(places) > 10
    leaks = [(where, i) for where, content in places.items() for i, s in enumerate(secrets) if s.encode() in content]
    assert leaks == [], f"secret #{leaks[0][1] if leaks else ''} found in {[w for w, _ in leaks]}"
