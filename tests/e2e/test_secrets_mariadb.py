"""A fresh local MariaDB is locked down: root has a generated password (0600 file), no anonymous or host
accounts, `secure_file_priv` points at a private folder (LOAD_FILE cannot read host files), the socket
folder is private, and no secret is on its command line. Started with the project's own code, on its
own CDC_HOME and port, next to (never touching) the shared stack."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.config import Settings, load_settings
from cdc.source import connect
from cdc.stack.process import read_pid, stop
from cdc.stack.services import MariaDb
from tests.e2e.test_secrets_cmdline import leaks

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, MariaDb]]:
    home = tmp_path_factory.mktemp("cdc-home")
    for name in list(os.environ):
        if name.upper().startswith("CDC_") and name.upper() != "CDC_CACHE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("CDC_HOME", str(home))
    monkeypatch.setenv("CDC_MARIADB__PORT", str(_free_port()))
    settings = load_settings()
    server = MariaDb(settings)
    try:
        assert server.up()
        yield settings, server
    finally:
        stop(server.files)
        shutil.rmtree(home, ignore_errors=True)


def mariadb(tmp: Path, sql: str, **options: str) -> subprocess.CompletedProcess[str]:
    """The mariadb client with these [client] options (from a 0600 file: nothing on its command line)."""
    cnf = tmp / "client.cnf"
    cnf.unlink(missing_ok=True)
    fd = os.open(cnf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("[client]\n" + "".join(f"{k}={v}\n" for k, v in options.items()))
    client = shutil.which("mariadb")
    assert client is not None
    return subprocess.run(  # noqa: S603
        [client, f"--defaults-file={cnf}", "--batch", "--skip-column-names", "-e", sql],
        capture_output=True, text=True, check=False, timeout=30,
    )


def test_a_fresh_local_mariadb_is_locked_down(fresh: tuple[Settings, MariaDb], tmp_path: Path) -> None:
    settings, server = fresh
    home = settings.home
    root_secret = home / "secrets" / "mariadb-root"
    assert root_secret.exists(), "root's password is not kept under CDC_HOME/secrets"
    assert stat.S_IMODE(root_secret.stat().st_mode) == 0o600
    password = root_secret.read_text().strip()
    assert len(password) >= 16

    # root: refused without a password, on the socket and over TCP; only root@localhost exists, with the password
    no_password = mariadb(tmp_path, "SELECT 1", user="root", socket=str(server.socket))
    assert no_password.returncode != 0
    assert "Access denied" in no_password.stderr
    tcp_root = mariadb(tmp_path, "SELECT 1", user="root", host="127.0.0.1", port=str(server.port))
    assert tcp_root.returncode != 0
    with_password = mariadb(tmp_path, "SELECT CURRENT_USER()", user="root", password=password, socket=str(server.socket))
    assert with_password.returncode == 0, with_password.stderr
    assert with_password.stdout.strip() == "root@localhost"

    accounts = mariadb(tmp_path, "SELECT CONCAT(user, '@', host) FROM mysql.user ORDER BY 1", user="root", password=password,
                       socket=str(server.socket)).stdout.split()
    assert not [a for a in accounts if a.startswith("@")], f"anonymous accounts: {accounts}"
    assert [a for a in accounts if a.startswith("root@")] == ["root@localhost"]

    # LOAD_FILE cannot read host files, not even as the admin user the product connects as (ALL PRIVILEGES)
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute("SELECT LOAD_FILE('/etc/passwd'), @@secure_file_priv")
        loaded, priv = cur.fetchone()
    finally:
        conn.close()
    assert loaded is None
    assert priv, "secure_file_priv is not set"
    priv_dir = Path(priv)
    assert priv_dir.is_relative_to(home.resolve())
    assert stat.S_IMODE(priv_dir.stat().st_mode) == 0o700

    # the socket's folder is private; nothing secret is left on disk beside the secrets folder or on a command line
    assert stat.S_IMODE(server.socket.parent.stat().st_mode) == 0o700
    pid = read_pid(server.files)
    assert pid is not None
    secrets = [p.read_text().strip() for p in (home / "secrets").iterdir()]
    assert leaks(secrets) == []
    assert not list(server.folder.glob("*.sql")), "an init file with the root password was left behind"
