"""No secret on the command line (/proc/*/cmdline, what `ps` shows every local user) of any process the
product starts (RELIABILITY row 23): the Spark driver `cdc merge` starts, and the local stack's services."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

import cdc
from cdc.config import Settings
from cdc.stack import services
from cdc.stack.process import read_pid
from tests.e2e.postgres import PostgresCluster, postgres  # noqa: F401 - `postgres` is the session fixture

pytestmark = pytest.mark.e2e

# What `cdc merge` does before its first statement: settings, then the shared session (cdc.spark.session).
# The catalog statement proves the password reached the JDBC catalog; READY lets the test read /proc.
DRIVER = """
import sys
from urllib.parse import urlsplit
from cdc.config import load_settings
from cdc.spark import session
settings = load_settings()
spark = session(settings)
spark.sql(f"SHOW NAMESPACES IN {settings.catalog.name}").collect()
assert spark.conf.get(f"spark.sql.catalog.{settings.catalog.name}.jdbc.password") == urlsplit(settings.catalog_uri).password
print("READY", flush=True)
sys.stdin.readline()
spark.stop()
"""


def command_lines() -> dict[int, str]:
    """Every process's command line, arguments joined by spaces."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # exited meanwhile
    return out


def descendants(root: int) -> set[int]:
    """`root` and every process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(") ", 1)[1].split()[1])
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def leaks(secrets: Iterable[str]) -> list[str]:
    """`pid: command line` of each process whose command line holds one of the secrets."""
    wanted = [s for s in secrets if s]
    return [f"{pid}: {line[:200]}" for pid, line in command_lines().items() if any(s in line for s in wanted)]


def test_the_spark_driver_gets_the_catalog_password_but_no_command_line_shows_it(
    postgres: PostgresCluster,  # noqa: F811
    settings: Settings,
    tmp_path: Path,
) -> None:
    password = postgres.passfile.read_text().strip().rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CDC_")}
    env.update({
        "PYTHONPATH": str(Path(cdc.__file__).resolve().parents[1]),  # the cdc under test
        "CDC_HOME": str(tmp_path / "home"),
        "CDC_CACHE": str(settings.cache),
        "CDC_CATALOG__NAME": "secretlake",
        # the password in the URI, as an operator would write it (in cdc.yaml or the environment, not argv)
        "CDC_CATALOG__URI": f"postgresql+psycopg2://iceberg:{password}@127.0.0.1:{postgres.port}/iceberg",
        "CDC_CATALOG__WAREHOUSE": (tmp_path / "warehouse").as_uri(),
    })
    log = tmp_path / "driver.log"
    with log.open("w") as stderr, subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", DRIVER], env=env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=stderr, text=True,
    ) as driver:
        assert driver.stdin is not None
        assert driver.stdout is not None
        try:
            line = driver.stdout.readline()
            assert line.strip() == "READY", f"the driver did not start: {log.read_text()[-3000:]}"
            tree = descendants(driver.pid)
            lines = command_lines()
            assert any("SparkSubmit" in lines.get(pid, "") for pid in tree), "no Spark JVM below the driver"
            assert leaks([password]) == []
        finally:
            if driver.poll() is None:
                driver.stdin.write("\n")
                driver.stdin.flush()
                try:
                    driver.wait(60)
                except subprocess.TimeoutExpired:
                    driver.kill()


def test_no_stack_service_shows_a_secret_on_its_command_line(stack: Settings) -> None:
    secret_dir = stack.home / "secrets"
    values = [p.read_text().strip() for p in secret_dir.iterdir() if p.is_file()]
    connector_file = stack.connector_secrets_file()
    values += [line.split("=", 1)[1].strip() for line in connector_file.read_text().splitlines() if "=" in line]
    assert values, f"no local secrets under {secret_dir} and {connector_file}"
    running = [read_pid(s.files) for s in services.services(stack)]
    assert all(running), "a stack service is not running"
    assert leaks(values) == []
