"""A private PostgreSQL cluster for the catalog-outage tests (RELIABILITY.md row 7).

Debian's `postgresql` server binaries (`make system` installs them) run a throw-away cluster that the
tests start, stop and start again themselves: `initdb` into a fresh 0700 folder under the temp dir,
listening only on 127.0.0.1 on a free port (no Unix socket), password (SCRAM) authentication. The
server refuses to run as root, so as root every server command runs as the `postgres` OS user.

The generated password never appears on a command line, in an environment variable or in a Spark
conf: `initdb` reads it from a 0600 file that is deleted right after, and clients read it from a 0600
libpq password file (`passfile=` in the SQLAlchemy URI for psycopg2; the JVM system property
`org.postgresql.pgpassfile` for the PostgreSQL JDBC driver).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg2  # type: ignore[import-untyped]
import pytest

SERVER_USER = "postgres"  # the OS user Debian's package creates
ROLE = "iceberg"  # the cluster's only role (its bootstrap superuser)
DATABASE = "iceberg"
HOST = "127.0.0.1"


class PostgresError(RuntimeError):
    """The private cluster could not be set up, started or stopped (the message names its log)."""


def server_bin_dir() -> Path | None:
    """The newest `/usr/lib/postgresql/<major>/bin` holding `initdb` and `pg_ctl` (or one on PATH)."""
    found = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if re.fullmatch(r"\d+", d.parent.name) and (d / "initdb").exists() and (d / "pg_ctl").exists():
            found.append((int(d.parent.name), d))
    if found:
        return max(found)[1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and shutil.which("initdb"):
        return Path(pg_ctl).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _private_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@dataclass
class PostgresCluster:
    """One private cluster. `base` is 0700 and owned by the server's OS user; the data folder is inside."""

    bin_dir: Path
    base: Path
    port: int
    uid: int | None  # None: not root, the server runs as the current user

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    @property
    def passfile(self) -> Path:
        """The libpq password file (`host:port:db:user:password`), 0600."""
        return self.base / "pgpass"

    def sqlalchemy_uri(self, database: str = DATABASE) -> str:
        """The pyiceberg SQL catalog URI: no password in it, libpq reads it from `passfile`."""
        return f"postgresql+psycopg2://{ROLE}@{HOST}:{self.port}/{database}?passfile={self.passfile}"

    def connect(self, database: str = DATABASE) -> psycopg2.extensions.connection:
        return psycopg2.connect(host=HOST, port=self.port, user=ROLE, dbname=database, passfile=str(self.passfile),
                                connect_timeout=10)

    # ---- processes ------------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run one server binary as the server's OS user (output captured; it never holds the password)."""
        kwargs: dict[str, object] = {}
        if self.uid is not None:
            entry = pwd.getpwuid(self.uid)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        proc = subprocess.run(  # noqa: S603
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd=self.base,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.base)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if check and proc.returncode != 0:
            raise PostgresError(f"{' '.join(args[:1] + args[-1:])} failed ({proc.returncode}): "
                                f"{(proc.stdout + proc.stderr).strip()[-1500:]} (see {self.log_file})")
        return proc  # type: ignore[no-any-return]

    def running(self) -> bool:
        return self.data.exists() and self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def start(self) -> None:
        """Start the server and wait until it accepts connections (after an immediate stop: crash recovery first)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-w", "-t", "90", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; `immediate` is the catalog database going away (no shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "90", "stop")

    @contextmanager
    def down(self) -> Iterator[None]:
        """The catalog database is gone inside the block (immediate stop) and back after it, whatever happens."""
        self.stop("immediate")
        try:
            yield
        finally:
            self.start()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"


def create_cluster() -> PostgresCluster:
    """initdb a private cluster, start it, and create the catalog database."""
    bin_dir = server_bin_dir()
    if bin_dir is None:
        raise PostgresError("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
                            "or on PATH: run `make system` (Debian: apt-get install postgresql)")
    uid: int | None = None
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            uid = pwd.getpwnam(SERVER_USER).pw_uid
        except KeyError as exc:
            raise PostgresError(f"running as root but there is no {SERVER_USER!r} OS user to run the server as") from exc
    base = Path(tempfile.mkdtemp(prefix="cdc-pg-"))  # 0700
    cluster = PostgresCluster(bin_dir, base, _free_port(), uid)
    try:
        _init(cluster)
        cluster.start()
        conn = cluster.connect("postgres")
        try:
            conn.autocommit = True
            conn.cursor().execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            conn.close()
    except BaseException:
        with suppress(Exception):  # the original error is the one to report
            remove_cluster(cluster)
        raise
    return cluster


def _init(cluster: PostgresCluster) -> None:
    password = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: nothing to escape in a pgpass line
    _private_file(cluster.passfile, f"{HOST}:{cluster.port}:*:{ROLE}:{password}\n")
    pwfile = cluster.base / "initdb-password"
    _private_file(pwfile, password + "\n")
    if cluster.uid is not None:
        entry = pwd.getpwuid(cluster.uid)
        for path in (cluster.base, pwfile):  # the passfile stays the client's (root's): only clients read it
            os.chown(path, entry.pw_uid, entry.pw_gid)
    try:
        cluster._run("initdb", "-D", str(cluster.data), "-U", ROLE, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                     "-E", "UTF8", "--locale=C")
    finally:
        pwfile.unlink(missing_ok=True)
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# the catalog-outage tests' private cluster\nlisten_addresses = '{HOST}'\nport = {cluster.port}\n"
                   "unix_socket_directories = ''\nmax_connections = 50\nshared_buffers = 32MB\n")


def remove_cluster(cluster: PostgresCluster) -> None:
    """Stop the server (if it runs) and delete its folder; the folder stays if the server would not stop."""
    if cluster.running():
        cluster.stop("fast")
    shutil.rmtree(cluster.base)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The private cluster, started once per test session. Missing binaries or a failed start FAIL the
    test (with or without CI=true): a catalog-outage test that silently skips proves nothing."""
    try:
        cluster = create_cluster()
    except (PostgresError, OSError, subprocess.SubprocessError, psycopg2.Error) as exc:
        pytest.fail(f"the private PostgreSQL cluster could not start: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        remove_cluster(cluster)
