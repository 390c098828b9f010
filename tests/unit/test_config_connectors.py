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
