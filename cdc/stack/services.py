"""The three local services, each bound to 127.0.0.1, state under `$CDC_HOME/stack`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from cdc.config import Settings, local_secret
from cdc.errors import ServiceError
from cdc.stack import jars
from cdc.stack.process import (
    ProcessFiles,
    read_pid,
    require_free_port,
    start,
    stop,
    wait_until,
)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    port: int
    version: str
    log_file: str


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or LOOPBACK, int(port)


def _render(template: str, target: Path, **values: object) -> Path:
    text = (TEMPLATES / template).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def _private_file(path: Path, text: str) -> Path:
    """Write `text` to a file only the owner can read (0600 from its creation on, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _java() -> str:
    return jars.require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless)")


# ---------------------------------------------------------------------------------------- MariaDB
class MariaDb:
    name = "mariadb"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = (settings.home / "stack" / "mariadb").resolve()
        self.files = ProcessFiles("mariadb", self.folder)
        self.datadir = self.folder / "data"
        self.socket = self.folder / "mariadb.sock"  # the folder is 0700: only this OS user reaches the socket
        self.files_dir = self.folder / "files"  # secure_file_priv: LOAD_FILE / INTO OUTFILE only here
        # root's client options (password included, 0600); present once root has its password
        self.root_options = self.folder / "root.cnf"
        self.init_file = self.folder / "init.sql"

    @property
    def port(self) -> int:
        return self.settings.mariadb.port

    def _client(self, sql: str) -> str:
        """Run SQL as root over the socket; the password comes from an options file, never the command line."""
        client = jars.require_tool("mariadb", "install mariadb-client (Debian: apt-get install mariadb-client)")
        # a server set up before root had a password (its datadir predates root.cnf) still has a passwordless
        # root until its next `up`, which gives root its password before the server accepts connections
        options = [f"--defaults-file={self.root_options}"] if self.root_options.exists() else ["--no-defaults"]
        proc = subprocess.run(  # noqa: S603
            [client, *options, f"--socket={self.socket}", "--user=root", "--batch", "--skip-column-names"],
            input=sql,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(f"mariadb client failed: {proc.stderr.strip()}", str(self.files.log_file))
        return proc.stdout

    def healthy(self) -> bool:
        return self.socket.exists() and self._client("SELECT 1").strip() == "1"

    def version(self) -> str:
        try:
            return self._client("SELECT VERSION()").strip()
        except ServiceError:
            return "?"

    def _initialize(self) -> None:
        install_db = jars.require_tool("mariadb-install-db", "install mariadb-server (Debian: apt-get install mariadb-server)")
        self.datadir.mkdir(parents=True, exist_ok=True)
        argv = [install_db, "--no-defaults", f"--datadir={self.datadir}", "--auth-root-authentication-method=normal", "--skip-test-db"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        with self.files.log_file.open("ab") as out:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
        if proc.returncode != 0:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise ServiceError("mariadb-install-db failed", str(self.files.log_file))

    def _prepare_root(self) -> None:
        """Root's password, in effect before the server accepts its first connection.

        The server runs `init.sql` (0600, deleted once the server is up) at start, before it serves
        clients: root@localhost gets the generated password kept in `$CDC_HOME/secrets/mariadb-root`,
        every other root account (127.0.0.1, ::1, the host name) and every anonymous account is dropped.
        Run at every start, so a datadir made before this (passwordless root) is locked down on its
        next start, and the client options file is written before anything connects.
        """
        password = local_secret(self.settings.home, "mariadb-root")
        if not password.replace("-", "").replace("_", "").isalnum():
            raise ServiceError(f"the MariaDB root password in {self.settings.home / 'secrets'} must be letters, digits, - or _")
        _private_file(
            self.init_file,
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{password}';\n"
            "SELECT GROUP_CONCAT(QUOTE(user), '@', QUOTE(host)) INTO @cdc_drop FROM mysql.user "
            "WHERE user = '' OR (user = 'root' AND host <> 'localhost');\n"
            "EXECUTE IMMEDIATE IFNULL(CONCAT('DROP USER ', @cdc_drop), 'DO 0');\n",
        )
        _private_file(self.root_options, f"[client]\nuser=root\npassword={password}\n")

    def _provision(self) -> None:
        s = self.settings
        admin = s.admin_password().get_secret_value().replace("'", "''")
        dbz = s.debezium_password().get_secret_value().replace("'", "''")
        au, du = s.mariadb.admin_user, s.mariadb.debezium_user
        # least privilege for the connector: read rows, read the binlog, see databases, flush for the snapshot
        sql = f"""
        CREATE USER IF NOT EXISTS '{au}'@'127.0.0.1' IDENTIFIED BY '{admin}';
        CREATE USER IF NOT EXISTS '{au}'@'localhost' IDENTIFIED BY '{admin}';
        GRANT ALL PRIVILEGES ON *.* TO '{au}'@'127.0.0.1' WITH GRANT OPTION;
        GRANT ALL PRIVILEGES ON *.* TO '{au}'@'localhost' WITH GRANT OPTION;
        CREATE USER IF NOT EXISTS '{du}'@'127.0.0.1' IDENTIFIED BY '{dbz}';
        GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{du}'@'127.0.0.1';
        FLUSH PRIVILEGES;
        """
        self._client(sql)

    def up(self) -> bool:
        if read_pid(self.files) is not None:
            return False
        mariadbd = jars.require_tool("mariadbd", "install mariadb-server (Debian: apt-get install mariadb-server)")
        require_free_port("MariaDB", LOOPBACK, self.port)
        _private_dir(self.folder)
        _private_dir(self.files_dir)
        fresh = not (self.datadir / "mysql").exists()
        if fresh:
            self._initialize()
        self._prepare_root()
        argv = [
            mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--init-file={self.init_file}",
            f"--secure-file-priv={self.files_dir}",
            f"--pid-file={self.folder / 'mariadbd.pid'}",
            f"--port={self.port}",
            f"--bind-address={LOOPBACK}",
            f"--server-id={self.settings.mariadb.server_id}",
            f"--log-bin={self.datadir / 'mysql-bin'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--log-bin-compress=OFF",
            "--expire-logs-days=7",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--innodb-buffer-pool-size=256M",
            "--max-allowed-packet=64M",
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        pid = start(self.files, argv)
        try:
            wait_until(self.files, pid, self.healthy, 60, "MariaDB")
        finally:
            self.init_file.unlink(missing_ok=True)  # it holds root's password; the server read it at start
        self._provision()
        self._time_zone()
        return True

    def _time_zone(self) -> None:
        """Load the zone tables once, then run the server in the configured zone."""
        marker = self.folder / "zoneinfo.loaded"
        if not marker.exists():
            tool = jars.require_tool("mariadb-tzinfo-to-sql", "install mariadb-server")
            zoneinfo = Path("/usr/share/zoneinfo")
            if not zoneinfo.is_dir():
                raise ServiceError("no /usr/share/zoneinfo: install tzdata (Debian: apt-get install tzdata)")
            sql = subprocess.run([tool, str(zoneinfo)], capture_output=True, text=True, check=False).stdout  # noqa: S603
            self._client("USE mysql;\n" + sql)
            marker.touch()
        zone = self.settings.mariadb.time_zone.replace("'", "''")
        self._client(f"SET GLOBAL time_zone = '{zone}'")

    def status(self) -> ServiceStatus:
        pid = read_pid(self.files)
        return ServiceStatus(self.name, pid is not None, pid, self.port, self.version() if pid else "-", str(self.files.log_file))


# ------------------------------------------------------------------------------------------ Kafka
class Kafka:
    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = (settings.home / "stack" / "kafka").resolve()
        self.files = ProcessFiles("kafka", self.folder)
        self.host, self.port = _host_port(settings.kafka.bootstrap_servers.split(",")[0])

    def healthy(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.settings.kafka.bootstrap_servers, "log_level": 0})
        metadata = admin.list_topics(timeout=2)
        return len(metadata.brokers) > 0

    def up(self) -> bool:
        if read_pid(self.files) is not None:
            return False
        java = _java()
        require_free_port("Kafka", LOOPBACK, self.port)
        require_free_port("Kafka controller", LOOPBACK, self.settings.kafka.controller_port)
        libs = jars.kafka_dir(self.settings.cache)
        if not (libs / ".complete").exists():
            raise ServiceError(f"Kafka jars are missing in {libs}: run `cdc stack install`")
        props = _render(
            "kafka.properties",
            self.folder / "server.properties",
            port=self.port,
            controller_port=self.settings.kafka.controller_port,
            log_dirs=self.folder / "data",
        )
        log4j = _render("log4j2.xml", self.folder / "log4j2.xml")
        classpath = f"{libs}/*"
        jvm = ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true"]
        if not (self.folder / "data" / "meta.properties").exists():
            fmt = subprocess.run(  # noqa: S603
                [java, *jvm, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22],
                 "-c", str(props), "--standalone", "--ignore-formatted"],
                capture_output=True, text=True, check=False,
            )
            if fmt.returncode != 0:
                self.files.folder.mkdir(parents=True, exist_ok=True)
                self.files.log_file.write_text(fmt.stdout + fmt.stderr)
                raise ServiceError("Kafka storage format failed", str(self.files.log_file))
        pid = start(self.files, [java, *jvm, "-cp", classpath, "kafka.Kafka", str(props)])
        wait_until(self.files, pid, self.healthy, 90, "Kafka")
        return True

    def status(self) -> ServiceStatus:
        pid = read_pid(self.files)
        return ServiceStatus(self.name, pid is not None, pid, self.port, jars.KAFKA_VERSION if pid else "-", str(self.files.log_file))


# ---------------------------------------------------------------------------------- Kafka Connect
class Connect:
    name = "connect"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = (settings.home / "stack" / "connect").resolve()
        self.files = ProcessFiles("connect", self.folder)
        self.host, self.port = _host_port(settings.connect.url.removeprefix("http://").rstrip("/"))

    def _get(self, path: str) -> object:
        with urllib.request.urlopen(f"{self.settings.connect.url}{path}", timeout=3) as resp:  # noqa: S310
            return json.loads(resp.read())

    def healthy(self) -> bool:
        info = self._get("/connector-plugins")
        return isinstance(info, list) and any("MariaDb" in str(p.get("class")) for p in info)

    def version(self) -> str:
        try:
            info = self._get("/")
        except OSError:
            return "?"
        return str(info.get("version", "?")) if isinstance(info, dict) else "?"

    def write_secrets(self) -> None:
        from cdc.connectors import write_secrets

        write_secrets(self.settings)

    def worker_properties(self, plugin_path: Path) -> Path:
        """Render the worker's properties: REST on loopback only, the file provider confined to the secrets folder."""
        return _render(
            "connect.properties",
            self.folder / "worker.properties",
            bootstrap=self.settings.kafka.bootstrap_servers,
            port=self.port,
            plugin_path=plugin_path,
            secrets_dir=self.settings.connector_secrets_file().parent,
        )

    def up(self) -> bool:
        if read_pid(self.files) is not None:
            return False
        java = _java()
        require_free_port("Kafka Connect", LOOPBACK, self.port)
        libs = jars.kafka_dir(self.settings.cache)
        plugins = jars.plugin_dir(self.settings.cache)
        if not (plugins / ".complete").exists():
            raise ServiceError(f"Debezium plugin is missing in {plugins}: run `cdc stack install`")
        self.write_secrets()
        props = self.worker_properties(plugins)
        log4j = _render("log4j2.xml", self.folder / "log4j2.xml")
        jvm = ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true"]
        pid = start(self.files, [java, *jvm, "-cp", f"{libs}/*", "org.apache.kafka.connect.cli.ConnectDistributed", str(props)])
        wait_until(self.files, pid, self.healthy, 120, "Kafka Connect")
        return True

    def status(self) -> ServiceStatus:
        pid = read_pid(self.files)
        return ServiceStatus(self.name, pid is not None, pid, self.port, self.version() if pid else "-", str(self.files.log_file))


def services(settings: Settings) -> list[MariaDb | Kafka | Connect]:
    return [MariaDb(settings), Kafka(settings), Connect(settings)]


def up(settings: Settings) -> list[str]:
    """Start what is not running, in order; on failure stop what this call started."""
    started: list[MariaDb | Kafka | Connect] = []
    try:
        for service in services(settings):
            if service.up():
                log.info("%s started", service.name)
                started.append(service)
    except BaseException:
        for service in reversed(started):
            stop(service.files)
        raise
    return [s.name for s in started]


def down(settings: Settings, only: list[str] | None = None) -> list[str]:
    """Stop what `up` started (by its pid files), in reverse order; `only` narrows it to those names."""
    chosen = [s for s in reversed(services(settings)) if only is None or s.name in only]
    return [s.name for s in chosen if stop(s.files)]


def status(settings: Settings) -> list[ServiceStatus]:
    return [s.status() for s in services(settings)]
