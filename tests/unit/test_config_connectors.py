"""Settings (defaults, `CDC_*` overrides, masking, validation) and connector rendering."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cdc.config import Settings, load_settings, masked
from cdc.connectors import debezium_config, render
from cdc.errors import ConfigError

SECRET = "s3cr3t-Pa55-\u00e9xyz"  # noqa: S105 - a test value
MASK = "*" * 10


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No `CDC_*` variable or `cdc.yaml` from the machine leaks in; CDC_HOME is a fresh folder."""
    for name in list(os.environ):
        if name.startswith("CDC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("CDC_HOME", str(home))
    return home


# ---- settings ----------------------------------------------------------------------------------


def test_defaults(isolated: Path) -> None:
    s = load_settings()
    assert s.home == isolated
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.kafka.security_protocol == "PLAINTEXT"
    assert s.mariadb.port == 3307
    assert s.mariadb.admin_password is None
    assert s.connect.topic_prefix == "cdc"
    assert s.connect.include_databases == []
    assert s.ingest.buckets == 16
    assert s.catalog.type == "sql"
    assert s.catalog_uri == f"sqlite:///{(isolated / 'lake' / 'catalog.db').resolve()}"
    assert s.warehouse == (isolated / "lake" / "warehouse").resolve().as_uri()
    assert s.buckets_for("probe", "t") == 16


def test_environment_overrides_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_KAFKA__BOOTSTRAP_SERVERS", "broker-1:29092,broker-2:29092")
    monkeypatch.setenv("CDC_INGEST__BUCKETS", "8")
    monkeypatch.setenv("CDC_CONNECT__INCLUDE_DATABASES", '["shop", "probe"]')
    monkeypatch.setenv("CDC_TABLES", '{"shop.orders": {"buckets": 4}}')
    s = load_settings()
    assert s.kafka.bootstrap_servers == "broker-1:29092,broker-2:29092"
    assert s.kafka.client_config() == {"bootstrap.servers": "broker-1:29092,broker-2:29092", "security.protocol": "PLAINTEXT"}
    assert s.ingest.buckets == 8
    assert s.connect.include_databases == ["shop", "probe"]
    assert s.buckets_for("shop", "orders") == 4
    assert s.buckets_for("shop", "items") == 8


def test_environment_wins_over_the_yaml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("kafka:\n  bootstrap_servers: from-yaml:9092\ningest:\n  buckets: 4\n")
    monkeypatch.setenv("CDC_CONFIG", str(config))
    monkeypatch.setenv("CDC_KAFKA__BOOTSTRAP_SERVERS", "from-env:9092")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "from-env:9092"
    assert s.ingest.buckets == 4


def test_a_missing_settings_file_named_by_cdc_config_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CDC_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="absent.yaml does not exist"):
        load_settings()


def test_masked_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    monkeypatch.setenv("CDC_MARIADB__ADMIN_PASSWORD", SECRET)
    monkeypatch.setenv("CDC_MARIADB__DEBEZIUM_PASSWORD", SECRET + "-dbz")
    monkeypatch.setenv("CDC_KAFKA__SASL_PASSWORD", SECRET + "-sasl")
    s = load_settings()
    assert s.admin_password().get_secret_value() == SECRET  # it was set ...
    data = masked(s)
    text = json.dumps(data, ensure_ascii=False)
    assert "s3cr3t" not in text  # ... and is shown nowhere
    assert data["mariadb"]["admin_password"] == MASK
    assert data["mariadb"]["debezium_password"] == MASK
    assert data["kafka"]["sasl_password"] == MASK
    assert data["catalog"]["properties"]["uri"] == s.catalog_uri
    assert SECRET not in repr(s)
    assert not (isolated / "secrets").exists()  # a configured secret generates no local one


@pytest.mark.parametrize(
    ("variable", "raw", "location"),
    [
        ("CDC_MARIADB__PORT", "70000", "mariadb.port"),
        ("CDC_MARIADB__PORT", "not-a-port", "mariadb.port"),
        ("CDC_CONNECT__TOPIC_PREFIX", "bad-prefix", "connect.topic_prefix"),
        ("CDC_KAFKA__SECURITY_PROTOCOL", "HTTP", "kafka.security_protocol"),
        ("CDC_INGEST__BUCKETS", "0", "ingest.buckets"),
        ("CDC_CATALOG__TYPE", "hive", "catalog.type"),
    ],
)
def test_an_invalid_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, location: str) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigError, match=f"^invalid settings: {location}: "):
        load_settings()


def test_an_unknown_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load_settings(bogus=1)


# ---- render ------------------------------------------------------------------------------------


def test_render_fills_every_placeholder() -> None:
    template = '{"a": "{{x}}-{{y}}-{{x}}", "b": "plain", "n": 4}'
    assert render(template, {"x": "1", "y": "two"}) == {"a": "1-two-1", "b": "plain", "n": "4"}


def test_render_drops_comments_and_empty_values() -> None:
    template = '{"_comment": "see {{nothing}}", "include": "{{list}}", "keep": "x"}'
    assert render(template, {"list": ""}) == {"keep": "x"}


def test_render_refuses_an_unfilled_placeholder() -> None:
    with pytest.raises(ConfigError, match=r"connector setting a has an unfilled placeholder: \{\{missing\}\}"):
        render('{"a": "{{missing}}"}', {"other": "1"})


def test_render_keeps_connect_config_provider_references() -> None:
    out = render('{"p": "${file:{{f}}:database.password}"}', {"f": "/run/secrets.properties"})
    assert out == {"p": "${file:/run/secrets.properties:database.password}"}


# ---- the Debezium connector ------------------------------------------------------------------------


def test_debezium_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CDC_MARIADB__DEBEZIUM_PASSWORD", SECRET)
    monkeypatch.setenv("CDC_MARIADB__ADMIN_PASSWORD", SECRET + "-admin")
    secrets_file = tmp_path / "connect" / "connector.properties"
    config = debezium_config(load_settings(), secrets_file)

    assert "s3cr3t" not in json.dumps(config, ensure_ascii=False)
    assert config["database.password"] == f"${{file:{secrets_file}:database.password}}"
    assert config["database.user"] == "cdc_debezium"
    assert config["decimal.handling.mode"] == "precise"
    assert config["value.converter.replace.null.with.default"] == "false"
    assert config["skipped.operations"] == "none"
    assert config["value.converter.schemas.enable"] == "true"
    assert config["key.converter.schemas.enable"] == "true"
    assert config["database.port"] == "3307"
    assert config["database.server.id"] == "5401"
    assert config["topic.prefix"] == "cdc"
    assert config["schema.history.internal.kafka.topic"] == "_cdc_schema_history.cdc"
    assert config["schema.history.internal.kafka.bootstrap.servers"] == "127.0.0.1:9092"
    assert "database.include.list" not in config  # empty list: not set at all
    assert "database.exclude.list" not in config
    assert not [k for k in config if k.startswith("_")]
    assert not [v for v in config.values() if "{{" in v]


def test_debezium_config_follows_settings(tmp_path: Path) -> None:
    settings = Settings(
        mariadb={"host": "db.internal", "port": 3306},
        connect={"topic_prefix": "prod", "include_databases": ["shop", "crm"]},
        kafka={"bootstrap_servers": "k:9092"},
    )
    config = debezium_config(settings, tmp_path / "s.properties")
    assert config["database.hostname"] == "db.internal"
    assert config["database.port"] == "3306"
    assert config["topic.prefix"] == "prod"
    assert config["schema.history.internal.kafka.topic"] == "_cdc_schema_history.prod"
    assert config["database.include.list"] == "cdc_marker,crm,shop"
    assert config["schema.history.internal.kafka.bootstrap.servers"] == "k:9092"


# ---- TLS to the database, SASL_SSL for the schema-history clients, secrets through the file provider ----


def _secrets_text(settings: Settings) -> str:
    from cdc.connectors import write_secrets

    write_secrets(settings)
    path = settings.connector_secrets_file()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path.read_text()


def test_debezium_config_defaults_to_plaintext_without_tls(tmp_path: Path) -> None:
    config = debezium_config(load_settings(), tmp_path / "s.properties")
    assert config["database.ssl.mode"] == "disable"
    assert not [k for k in config if k.startswith("database.ssl.") and k != "database.ssl.mode"]
    for client in ("producer", "consumer"):
        assert config[f"schema.history.internal.{client}.security.protocol"] == "PLAINTEXT"
        assert not [k for k in config if k.startswith(f"schema.history.internal.{client}.sasl")]
        assert not [k for k in config if k.startswith(f"schema.history.internal.{client}.ssl")]


def test_debezium_config_takes_tls_to_the_database_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CDC_MARIADB__SSL_MODE", "verify-full")
    monkeypatch.setenv("CDC_MARIADB__SSL_TRUSTSTORE", "/etc/cdc/db-truststore.p12")
    monkeypatch.setenv("CDC_MARIADB__SSL_TRUSTSTORE_PASSWORD", SECRET + "-trust")
    monkeypatch.setenv("CDC_MARIADB__SSL_KEYSTORE", "/etc/cdc/db-keystore.p12")
    monkeypatch.setenv("CDC_MARIADB__SSL_KEYSTORE_PASSWORD", SECRET + "-key")
    monkeypatch.setenv("CDC_MARIADB__DEBEZIUM_PASSWORD", SECRET)
    settings = load_settings()
    secrets_file = settings.connector_secrets_file()
    config = debezium_config(settings, secrets_file)
    assert "s3cr3t" not in json.dumps(config, ensure_ascii=False)
    assert config["database.ssl.mode"] == "verify-full"
    assert config["database.ssl.truststore"] == "/etc/cdc/db-truststore.p12"
    assert config["database.ssl.truststore.password"] == f"${{file:{secrets_file}:database.ssl.truststore.password}}"
    assert config["database.ssl.keystore"] == "/etc/cdc/db-keystore.p12"
    assert config["database.ssl.keystore.password"] == f"${{file:{secrets_file}:database.ssl.keystore.password}}"
    lines = _secrets_text(settings).splitlines()
    assert f"database.ssl.truststore.password={SECRET}-trust" in lines
    assert f"database.ssl.keystore.password={SECRET}-key" in lines
    assert f"database.password={SECRET}" in lines


def test_an_unknown_database_ssl_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_MARIADB__SSL_MODE", "required")  # a MySQL-connector spelling
    with pytest.raises(ConfigError, match="mariadb.ssl_mode"):
        load_settings()


@pytest.mark.parametrize(
    ("mechanism", "module"),
    [
        ("SCRAM-SHA-512", "org.apache.kafka.common.security.scram.ScramLoginModule"),
        ("SCRAM-SHA-256", "org.apache.kafka.common.security.scram.ScramLoginModule"),
        ("PLAIN", "org.apache.kafka.common.security.plain.PlainLoginModule"),
    ],
)
def test_debezium_config_takes_sasl_ssl_for_the_schema_history_clients(
    monkeypatch: pytest.MonkeyPatch, mechanism: str, module: str
) -> None:
    monkeypatch.setenv("CDC_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CDC_KAFKA__SASL_MECHANISM", mechanism)
    monkeypatch.setenv("CDC_KAFKA__SASL_USERNAME", "cdc-connect")
    monkeypatch.setenv("CDC_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("CDC_KAFKA__SSL_TRUSTSTORE", "/etc/cdc/kafka-ca.pem")
    settings = load_settings()
    secrets_file = settings.connector_secrets_file()
    config = debezium_config(settings, secrets_file)
    assert "s3cr3t" not in json.dumps(config, ensure_ascii=False)
    for client in ("producer", "consumer"):
        prefix = f"schema.history.internal.{client}."
        assert config[prefix + "security.protocol"] == "SASL_SSL"
        assert config[prefix + "sasl.mechanism"] == mechanism
        assert config[prefix + "sasl.jaas.config"] == f"${{file:{secrets_file}:kafka.sasl.jaas.config}}"
        assert config[prefix + "ssl.truststore.location"] == "/etc/cdc/kafka-ca.pem"
        assert config[prefix + "ssl.truststore.type"] == "PEM"
    jaas = [line for line in _secrets_text(settings).splitlines() if line.startswith("kafka.sasl.jaas.config=")]
    assert jaas == [f'kafka.sasl.jaas.config={module} required username="cdc-connect" password="{SECRET}";']


def test_secrets_file_values_are_escaped_for_java_properties_and_jaas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_MARIADB__DEBEZIUM_PASSWORD", 'a\\b"c d')
    monkeypatch.setenv("CDC_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CDC_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("CDC_KAFKA__SASL_USERNAME", "u")
    monkeypatch.setenv("CDC_KAFKA__SASL_PASSWORD", 'p"w\\x')
    lines = _secrets_text(load_settings()).splitlines()
    assert 'database.password=a\\\\b"c d' in lines  # Properties.load turns \\ into \
    # JAAS escapes \ and " inside quotes, then Properties escapes each \ again
    assert 'kafka.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="u" ' \
           'password="p\\\\"w\\\\\\\\x";' in lines


def test_a_sasl_mechanism_without_a_login_module_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CDC_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CDC_KAFKA__SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ConfigError, match="GSSAPI"):
        debezium_config(load_settings(), tmp_path / "s.properties")


# ---- the local Connect worker ------------------------------------------------------------------


def _properties(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_the_worker_restricts_the_file_provider_to_the_secrets_folder_and_listens_on_loopback(tmp_path: Path) -> None:
    from cdc.stack.services import Connect

    settings = load_settings()
    props = _properties(Connect(settings).worker_properties(plugin_path=tmp_path / "plugins"))
    assert props["config.providers"] == "file"
    assert props["config.providers.file.class"] == "org.apache.kafka.common.config.provider.FileConfigProvider"
    assert props["config.providers.file.param.allowed.paths"] == str(settings.connector_secrets_file().parent)
    assert props["listeners"] == "http://127.0.0.1:8083"
    assert props["rest.advertised.host.name"] == "127.0.0.1"


def test_the_worker_listens_on_loopback_whatever_the_connect_url_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cdc.stack.services import Connect

    monkeypatch.setenv("CDC_CONNECT__URL", "http://0.0.0.0:18083")
    props = _properties(Connect(load_settings()).worker_properties(plugin_path=tmp_path / "plugins"))
    assert props["listeners"] == "http://127.0.0.1:18083"
