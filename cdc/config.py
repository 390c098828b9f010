"""Typed settings: defaults serve the local stack; `cdc.yaml` and `CDC_*` variables override.

Precedence (highest first): `CDC_*` environment variables (nested keys joined by `__`, e.g.
`CDC_KAFKA__BOOTSTRAP_SERVERS`), the YAML file (`CDC_CONFIG` or `./cdc.yaml`), the defaults.
Secrets are `SecretStr`: they print as `**********` everywhere. Local-stack secrets that are not
set are generated once and kept in `$CDC_HOME/secrets/` (mode 0600), never in the repository.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import parse_qsl, urlencode, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError

from cdc.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Section(BaseModel):
    """A settings section: a misspelt key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class MariaDbSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(3307, ge=1, le=65535)
    admin_user: str = "cdc_admin"
    admin_password: SecretStr | None = None
    debezium_user: str = "cdc_debezium"
    debezium_password: SecretStr | None = None
    server_id: int = 1
    # TLS from the connector (on the Connect worker) to the database: Debezium MariaDB's modes; the
    # stores are paths on the worker, their passwords reach it through the connector secrets file
    ssl_mode: Literal["disable", "trust", "verify-ca", "verify-full"] = "disable"
    ssl_truststore: str | None = None
    ssl_truststore_password: SecretStr | None = None
    ssl_keystore: str | None = None
    ssl_keystore_password: SecretStr | None = None
    # the local server runs a zone with DST on purpose, so every test exercises time-zone handling
    time_zone: str = "Europe/Berlin"


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    controller_port: int = Field(9093, ge=1, le=65535)
    group_id: str = "cdc-ingest"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # for Java clients (the connector's schema-history producer/consumer): a truststore on the Connect
    # worker (.pem/.crt as PEM, .p12/.pfx as PKCS12, else JKS); unset: the JVM's default CAs
    ssl_truststore: str | None = None
    ssl_truststore_password: SecretStr | None = None

    def client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka settings shared by every client (secrets revealed only here)."""
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf


class ConnectSettings(_Section):
    url: str = "http://127.0.0.1:8083"
    connector_name: str = "cdc-mariadb"
    topic_prefix: str = "cdc"
    database_server_id: int = 5401
    include_databases: list[str] = Field(default_factory=list)
    exclude_databases: list[str] = Field(default_factory=list)
    # the properties file on the Connect worker that holds `database.password` (read by Connect's
    # FileConfigProvider); default: the local stack's, under CDC_HOME, written by `cdc` itself
    secrets_file: Path | None = None

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("topic_prefix must be a plain identifier (letters, digits, _)")
        return v


class CatalogSettings(_Section):
    """The Iceberg catalog shared by pyiceberg and Spark (their catalog names must be equal)."""

    name: str = "lake"
    type: Literal["sql", "rest"] = "sql"
    uri: str | None = None  # default: SQLite file under CDC_HOME
    warehouse: str | None = None  # default: folder under CDC_HOME
    properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("catalog name must be a plain identifier")
        return v


class IngestSettings(_Section):
    buckets: int = Field(16, ge=1, le=1024)
    flush_rows: int = Field(50_000, ge=1)
    flush_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    flush_seconds: float = Field(10.0, gt=0)
    poll_batch: int = Field(2_000, ge=1, le=100_000)
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)  # larger messages go to the dead-letter table
    # stop when more than this share of a flush's messages (and at least min_dead_letters) is undecodable
    max_dead_letter_ratio: float = Field(0.5, gt=0, le=1)
    min_dead_letters: int = Field(100, ge=1)
    max_poll_interval_ms: int = Field(300_000, ge=1_000)
    session_timeout_ms: int = Field(45_000, ge=1_000)
    commit_timeout_seconds: float = Field(300.0, gt=0)  # how long a commit waits for an unavailable catalog
    # how often a running consumer reads the source's position and records, per table, the point its
    # changelog is complete through (the freshness contract); 0 turns it off (then no source access)
    progress_seconds: float = Field(15.0, ge=0)


class SparkSettings(_Section):
    master: str = "local[2]"
    driver_memory: str = "2g"
    shuffle_partitions: int = Field(4, ge=1)


MergeMode = Literal["merge-on-read", "copy-on-write"]


def interval_minutes(value: str | int) -> int:
    """A merge interval as whole minutes, 15 to 60: `15m`, `30m`, `1h`, or a number of minutes."""
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d{1,4})\s*(m|min|h)?", text)
    if not match:
        raise ValueError(f"a merge interval is minutes (15m to 60m, or 1h), not {value!r}")
    minutes = int(match.group(1)) * (60 if match.group(2) == "h" else 1)
    if not 15 <= minutes <= 60:
        raise ValueError(f"a merge interval is 15 to 60 minutes, not {value!r}")
    return minutes


class MergeSettings(_Section):
    # how long a delete blocks a late, older change of its key, counted from when the delete reached the lake
    tombstone_days: int = Field(7, ge=1, le=3650)
    # how a MERGE writes the base: position deletes beside the data (merge-on-read), or rewritten files
    mode: MergeMode = "merge-on-read"
    interval: str = "15m"  # how often Airflow merges a table (15m to 60m); tables.<t>.merge_interval overrides

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str) -> str:
        interval_minutes(v)
        return v


class MaintenanceSettings(_Section):
    """When `cdc maintain` does each step: every step runs only when its measured need passes the threshold."""

    # compact a bucket's data files when it holds at least this many files smaller than the target size
    min_small_files: int = Field(8, ge=2)
    target_file_mb: int = Field(128, ge=1, le=4096)
    # compact a base bucket whose position-delete files reference at least this share of its rows
    delete_ratio: float = Field(0.1, gt=0, le=1)
    # expire snapshots older than this many hours, keeping at least `retain_snapshots` (the newest)
    snapshot_hours: float = Field(24.0, gt=0)
    retain_snapshots: int = Field(10, ge=1)
    # rewrite manifests when the current snapshot has more than this many data manifests
    max_manifests: int = Field(50, ge=1)
    # remove files no snapshot references once they are this old (a running writer's files are younger)
    orphan_days: float = Field(3.0, ge=1)
    interval: str = "6h"  # how often Airflow's maintenance DAG runs (a cron preset or cron expression also works)


class TableOverride(_Section):
    buckets: int | None = Field(None, ge=1, le=1024)
    # columns that never leave the source (PII): Debezium drops them (`column.exclude.list`), so they reach
    # neither Kafka nor the lake; the consumer and the bootstrap leave them out as well
    exclude_columns: list[str] = Field(default_factory=list)
    # a key for a table without a primary key (or instead of it): Debezium's `message.key.columns`,
    # the bootstrap's paging order and the lake's key
    key: list[str] | None = None
    # what a schema change at the source does: `evolve` the lake in place where Iceberg allows it (the rest
    # halts the table), or `halt` the table on every change until an operator rebuilds it
    schema_changes: Literal["evolve", "halt"] = "evolve"
    # a column dropped at the source: `drop` it from the lake too, or `keep` it frozen with its last values
    dropped_columns: Literal["drop", "keep"] = "drop"
    # TINYINT(1) columns that land as booleans (opt-in): any value other than 0/1 is dead-lettered
    booleans: list[str] = Field(default_factory=list)
    # great-expectations expectation configurations the merge's gate checks on the audit branch:
    # [{type: expect_column_values_to_be_between, kwargs: {column: amount, min_value: 0}}]
    expectations: list[dict[str, Any]] = Field(default_factory=list)
    merge_mode: MergeMode | None = None  # default: merge.mode
    merge_interval: str | None = None  # default: merge.interval (15m to 60m)

    @field_validator("merge_interval")
    @classmethod
    def _merge_interval(cls, v: str | None) -> str | None:
        if v is not None:
            interval_minutes(v)
        return v

    @field_validator("key")
    @classmethod
    def _key(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or len(set(v)) != len(v) or any(not c or "," in c or any(ord(ch) < 32 for ch in c) for c in v)):
            raise ValueError(f"a declared key needs distinct, non-empty column names without commas or control characters: {v}")
        return v

    @field_validator("exclude_columns", "booleans")
    @classmethod
    def _columns(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not c or "," in c or any(ord(ch) < 32 for ch in c)]
        if bad:
            raise ValueError(f"column names {bad} cannot be excluded (empty, a comma or a control character)")
        return v


class Settings(BaseSettings):
    """All settings of the `cdc` command and its jobs."""

    model_config = SettingsConfigDict(env_prefix="CDC_", env_nested_delimiter="__", extra="forbid")

    home: Path = Path(".cdc")
    cache: Path = Path.home() / ".cache" / "cdc"
    mariadb: MariaDbSettings = Field(default_factory=MariaDbSettings)  # type: ignore[arg-type]
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    connect: ConnectSettings = Field(default_factory=ConnectSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)  # type: ignore[arg-type]
    spark: SparkSettings = Field(default_factory=SparkSettings)  # type: ignore[arg-type]
    merge: MergeSettings = Field(default_factory=MergeSettings)  # type: ignore[arg-type]
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)  # type: ignore[arg-type]
    tables: dict[str, TableOverride] = Field(default_factory=dict)

    @field_validator("tables")
    @classmethod
    def _expectations(cls, v: dict[str, TableOverride]) -> dict[str, TableOverride]:
        for name, override in v.items():
            for i, entry in enumerate(override.expectations):
                problem = expectation_problem(entry)
                if problem:
                    raise ValueError(f"tables.{name}.expectations[{i}] {json.dumps(entry, default=str)}: {problem}")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_EnvCheck(settings_cls), init_settings, env_settings, _YamlSource(settings_cls))

    # ---- derived values -------------------------------------------------------------------
    @property
    def catalog_uri(self) -> str:
        if self.catalog.uri:
            return self.catalog.uri
        return f"sqlite:///{(self.home / 'lake' / 'catalog.db').resolve()}"

    @property
    def warehouse(self) -> str:
        if self.catalog.warehouse:
            return self.catalog.warehouse
        return (self.home / "lake" / "warehouse").resolve().as_uri()

    def catalog_properties(self) -> dict[str, str]:
        """What any Iceberg reader (pyiceberg `load_catalog`) needs to open the lake."""
        props = {"type": self.catalog.type, "uri": self.catalog_uri, "warehouse": self.warehouse}
        if self.catalog.type == "sql":
            props["init_catalog_tables"] = "true"
        props.update(self.catalog.properties)
        return props

    def excluded_columns(self, db: str, table: str) -> frozenset[str]:
        override = self.tables.get(f"{db}.{table}")
        return frozenset(override.exclude_columns) if override else frozenset()

    def table_settings(self, db: str, table: str) -> TableOverride:
        """The table's own settings, or the defaults."""
        return self.tables.get(f"{db}.{table}") or TableOverride.model_validate({})

    def merge_mode_for(self, db: str, table: str) -> MergeMode:
        override = self.tables.get(f"{db}.{table}")
        return override.merge_mode if override and override.merge_mode else self.merge.mode

    def merge_interval_for(self, db: str, table: str) -> int:
        """Minutes between two scheduled merges of the table."""
        override = self.tables.get(f"{db}.{table}")
        return interval_minutes(override.merge_interval if override and override.merge_interval else self.merge.interval)

    def buckets_for(self, db: str, table: str) -> int:
        override = self.tables.get(f"{db}.{table}")
        if override and override.buckets:
            return override.buckets
        return self.ingest.buckets

    def secret(self, value: SecretStr | None, name: str) -> SecretStr:
        """A configured secret, or the local stack's generated one."""
        if value is not None:
            return value
        return SecretStr(local_secret(self.home, name))

    def connector_secrets_file(self) -> Path:
        if self.connect.secrets_file is not None:
            return self.connect.secrets_file
        return (self.home / "stack" / "connect" / "secrets" / "connector.properties").resolve()

    def admin_password(self) -> SecretStr:
        return self.secret(self.mariadb.admin_password, "mariadb-admin")

    def debezium_password(self) -> SecretStr:
        return self.secret(self.mariadb.debezium_password, "mariadb-debezium")


_EXPECTATION_KEYS = frozenset({"type", "kwargs", "meta"})


def expectation_problem(entry: Any) -> str | None:
    """Why a declared expectation is not a valid great-expectations 1.x configuration, or None.

    Builds the GX expectation class (unknown type, unknown or ill-typed kwargs are refused); GX is imported
    only when some table declares an expectation (the import costs about 3 s).
    """
    if not isinstance(entry, dict) or "type" not in entry or not isinstance(entry["type"], str):
        return "an expectation is a mapping with a `type` (and `kwargs`)"
    if set(entry) - _EXPECTATION_KEYS:
        return f"unknown keys {sorted(set(entry) - _EXPECTATION_KEYS)} (allowed: type, kwargs, meta)"
    kwargs = entry.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        return "`kwargs` must be a mapping"
    with warnings.catch_warnings():  # GX 1.x imports deprecated stdlib modules (sre_constants)
        warnings.simplefilter("ignore", DeprecationWarning)
        from great_expectations.expectations.registry import get_expectation_impl

    try:
        impl = get_expectation_impl(entry["type"])
    except Exception:  # noqa: BLE001 - GX raises its own error kinds for an unknown name
        return f"unknown expectation type {entry['type']!r}"
    try:
        impl(**kwargs)
    except Exception as exc:  # noqa: BLE001 - pydantic's or GX's own; both mean bad kwargs
        return f"bad kwargs for {entry['type']}: " + " ".join(str(exc).split())[:300]
    return None


def local_secret(home: Path, name: str) -> str:
    """Read or create a random secret for the local stack under `home/secrets` (mode 0600)."""
    folder = home / "secrets"
    path = folder / name
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    value = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = Path(os.environ.get("CDC_CONFIG", "cdc.yaml"))
        if not path.exists():
            if "CDC_CONFIG" in os.environ:
                raise ConfigError(f"settings file {path} does not exist (CDC_CONFIG)")
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"settings file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"settings file {path} must hold a mapping at the top level")
        return data


# `CDC_*` variables the project reads itself (not settings): the settings file, fault points of the
# tests, the Airflow DAG's knobs (its `cdc` subprocesses inherit them), a test knob, compose's .env
OTHER_VARIABLES = frozenset({
    "CDC_CONFIG", "CDC_FAULT_POINT", "CDC_FAULT_SKIP", "CDC_MERGE_SCHEDULE", "CDC_WATCHDOG_SCHEDULE", "CDC_CHECK_SCHEDULE",
    "CDC_MERGE_TABLES", "CDC_MODEL_EXAMPLES", "CDC_TOPIC_PREFIX", "CDC_INCLUDE_DATABASES", "CDC_WAREHOUSE_DIR",
    # read by the Airflow DAG files only (the DAG tasks run `cdc` with the worker's environment)
    "CDC_MAINTAIN_SCHEDULE", "CDC_SPARK_SUBMIT", "CDC_LAKE_POOL_SLOTS", "CDC_MAX_LAG",
})
_ENV_PREFIX = "CDC_"
_DELIMITER = "__"


def _variable_target(name: str) -> Any:
    """The annotation of the setting a `CDC_*` variable sets, or None when it names no setting."""
    target: Any = Settings
    for part in name[len(_ENV_PREFIX):].lower().split(_DELIMITER):
        if not part:
            return None
        if isinstance(target, type) and issubclass(target, BaseModel):
            field = target.model_fields.get(part)
            if field is None:
                return None
            target = field.annotation
        elif get_origin(target) is dict:
            target = get_args(target)[1]  # the part is a key (a table name, a property)
        else:
            return None  # a plain value has no sub-keys
    return target


def _expected_form(target: Any) -> tuple[str, type] | None:
    """What a variable for a structured setting must hold (pydantic-settings parses it as JSON)."""
    if get_origin(target) is list:
        return """a JSON list, e.g. '["shop"]'""", list
    if get_origin(target) is dict:
        return """a JSON object, e.g. '{"key": "value"}'""", dict
    if isinstance(target, type) and issubclass(target, BaseModel):
        return "a JSON object of its settings, or one variable per setting (nested keys joined by __)", dict
    return None


def check_variables(environ: Mapping[str, str]) -> None:
    """Refuse a `CDC_*` variable that names no setting, or a structured one that is not JSON of its form.

    pydantic-settings ignores unknown variables and reports a bad list only as its section, so a
    misspelt `CDC_INGEST__BUKETS` would silently keep the default. Values are never echoed (secrets).
    """
    for name, value in environ.items():
        if not name.upper().startswith(_ENV_PREFIX) or name.upper() in OTHER_VARIABLES:
            continue
        target = _variable_target(name)
        if target is None:
            raise ConfigError(f"invalid settings: {name} is not a setting (a misspelt name? see `cdc config show`)")
        form = _expected_form(target)
        if form is None:
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, form[1]):
            raise ConfigError(f"invalid settings: {name} must be {form[0]}")


class _EnvCheck(PydanticBaseSettingsSource):
    """Contributes nothing; checks the `CDC_*` variables before the environment source reads them."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        check_variables(os.environ)
        return {}


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
    except SettingsError as exc:  # the checks above should have named the variable; never a traceback
        raise ConfigError(f"invalid settings: {exc}") from exc


MASK = "*" * 10
# a property or setting whose name says it holds a secret (pyiceberg, Kafka, JDBC, cloud SDK spellings)
_SECRET_KEY_RE = re.compile(r"secret|passw|pwd|passphrase|token|credential|key|auth|jaas|sigv4|signature|private|(^|[._-])sas($|[._-])",
                            re.IGNORECASE)
# ... but a path to a secret is not a secret
_PATH_KEY_RE = re.compile(r"(_file|-file|\.file|location|_path|-path|\.path|keystore|truststore)$", re.IGNORECASE)
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_secret_key(key: str) -> bool:
    """True for a setting or property name that says it holds a secret (a path to one does not)."""
    return bool(_SECRET_KEY_RE.search(key)) and not _PATH_KEY_RE.search(key)


def mask_uri(text: str) -> str:
    """A URI with its password (or bare user token) and secret-named query parameters masked; the user is kept."""
    if not _URI_RE.match(text):
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
        username = parts.username
    except ValueError:
        return MASK  # not parseable: do not risk showing it
    netloc = parts.netloc
    if "@" in netloc:
        host = netloc.rpartition("@")[2]
        if password is not None:
            netloc = f"{username}:{MASK}@{host}"
        elif username and parts.scheme.startswith("http"):
            netloc = f"{MASK}@{host}"  # http user info without a password is a token
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, MASK if is_secret_key(k) else v) for k, v in pairs], safe="*")
    # replace in place: a round trip through urlunsplit would rewrite forms like sqlite:////abs/path
    if netloc != parts.netloc:
        text = text.replace(parts.netloc, netloc, 1)
    if query != parts.query:
        text = text.replace("?" + parts.query, "?" + query, 1)
    return text


def _mask(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if value is None:
        return None
    if key is not None and is_secret_key(key):
        return MASK
    if isinstance(value, str):
        return mask_uri(value)
    return value


def masked(settings: Settings) -> dict[str, Any]:
    """The resolved settings as plain data, secrets masked, derived catalog properties filled in.

    Masked: `SecretStr` settings, every value under a key that names a secret, password, token,
    credential or key (at any depth, e.g. `catalog.properties.s3.secret-access-key`), and the
    password in any URI (`postgresql://cdc:**********@pg/lake`).
    """
    data: dict[str, Any] = settings.model_dump(mode="json")
    data["catalog"]["properties"] = settings.catalog_properties()
    masked_data: dict[str, Any] = _mask(data)
    return masked_data
