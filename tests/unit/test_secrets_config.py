"""`cdc config show` masks every secret-bearing value; unknown or malformed settings are refused (exit 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cdc.config import load_settings, masked
from cdc.errors import ConfigError

SENTINEL = "Sentinel-Pa55w0rd"
MASK = "*" * 10


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No `CDC_*` variable or `cdc.yaml` from the machine leaks in; CDC_HOME is a fresh folder."""
    for name in list(os.environ):
        if name.upper().startswith("CDC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("CDC_HOME", str(home))
    return home


def shown(monkeypatch: pytest.MonkeyPatch, yaml_text: str) -> tuple[dict[str, object], str]:
    config = Path("cdc.yaml")
    config.write_text(yaml_text)
    data = masked(load_settings())
    return data, json.dumps(data, ensure_ascii=False)


# ---- masking -------------------------------------------------------------------------------------


def test_a_password_in_the_catalog_uri_is_masked_and_the_user_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    data, text = shown(monkeypatch, f"catalog: {{uri: 'postgresql+psycopg2://cdc:{SENTINEL}@pg.internal:5432/lake'}}\n")
    assert SENTINEL not in text
    catalog = data["catalog"]
    assert isinstance(catalog, dict)
    assert catalog["uri"] == f"postgresql+psycopg2://cdc:{MASK}@pg.internal:5432/lake"
    assert catalog["properties"]["uri"] == f"postgresql+psycopg2://cdc:{MASK}@pg.internal:5432/lake"


@pytest.mark.parametrize(
    "uri",
    [
        f"postgresql://cdc:{SENTINEL}@pg/lake",
        f"https://user:{SENTINEL}@rest.example.com/catalog",
        f"postgresql://pg/lake?user=cdc&password={SENTINEL}",
        f"http://{SENTINEL}@connect:8083",  # a bare token as user info
    ],
)
def test_every_uri_with_credentials_is_masked(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    _, text = shown(monkeypatch, f"catalog: {{uri: '{uri}'}}\nconnect: {{url: '{uri}'}}\n")
    assert SENTINEL not in text


def test_a_uri_without_credentials_is_shown_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = shown(monkeypatch, "catalog: {uri: 'postgresql+psycopg2://cdc@pg/lake'}\n")
    catalog = data["catalog"]
    assert isinstance(catalog, dict)
    assert catalog["uri"] == "postgresql+psycopg2://cdc@pg/lake"


@pytest.mark.parametrize(
    "key",
    [
        "s3.secret-access-key",
        "s3.access-key-id",
        "s3.session-token",
        "client.secret-access-key",
        "credential",
        "token",
        "rest.sigv4-signing-key",
        "rest.sigv4-enabled",
        "adls.account-key",
        "adls.sas-token",
        "gcs.oauth2.token",
        "header.Authorization",
        "jdbc.password",
        "ssl.keystore.password",
        "sasl.jaas.config",
        "S3.Secret-Access-Key",
    ],
)
def test_a_property_that_names_a_secret_is_masked(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    data, text = shown(monkeypatch, f"catalog:\n  properties:\n    '{key}': '{SENTINEL}'\n    s3.endpoint: http://minio:9000\n")
    assert SENTINEL not in text
    catalog = data["catalog"]
    assert isinstance(catalog, dict)
    assert catalog["properties"][key] == MASK
    assert catalog["properties"]["s3.endpoint"] == "http://minio:9000"  # not a secret: shown


def test_secret_fields_stay_masked_and_paths_to_secrets_are_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_MARIADB__ADMIN_PASSWORD", SENTINEL)
    monkeypatch.setenv("CDC_KAFKA__SASL_PASSWORD", SENTINEL)
    monkeypatch.setenv("CDC_CONNECT__SECRETS_FILE", "/run/secrets/connector.properties")
    data = masked(load_settings())
    assert SENTINEL not in json.dumps(data)
    assert data["mariadb"]["admin_password"] == MASK
    assert data["kafka"]["sasl_password"] == MASK
    assert data["mariadb"]["debezium_password"] is None  # not set: nothing to hide
    assert data["connect"]["secrets_file"] == "/run/secrets/connector.properties"


def test_a_table_named_like_a_secret_keeps_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = shown(monkeypatch, "tables: {shop.api_keys: {buckets: 4}}\n")
    assert data["tables"]["shop.api_keys"]["buckets"] == 4
    assert data["tables"]["shop.api_keys"]["exclude_columns"] == []


# ---- unknown and malformed settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("ingest: {flush_row: 5}\n", "ingest.flush_row"),
        ("tables: {shop.orders: {bucket: 4}}\n", "tables.shop.orders.bucket"),
        ("mariadb: {passwd: x}\n", "mariadb.passwd"),
        ("kafka: {sasl_user: x}\n", "kafka.sasl_user"),
        ("connect: {include_database: [shop]}\n", "connect.include_database"),
        ("catalog: {warehous: /tmp}\n", "catalog.warehous"),
        ("spark: {drivermemory: 1g}\n", "spark.drivermemory"),
        ("merge: {tombstone_day: 3}\n", "merge.tombstone_day"),
        ("bogus: 1\n", "bogus"),
    ],
)
def test_an_unknown_key_in_the_yaml_file_is_refused_by_name(yaml_text: str, key: str) -> None:
    Path("cdc.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError, match=rf"^invalid settings: {key.replace('.', '[.]')}: Extra inputs are not permitted") as info:
        load_settings()
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "variable",
    ["CDC_INGEST__BUKETS", "CDC_INGEST__FLUSH_ROW", "CDC_BOGUS", "CDC_MARIADB__PASSWD", "CDC_TABLES__shop.orders__BUCKET",
     "CDC_INGEST__BUCKETS__X", "CDC_KAFKA__", "cdc_ingest__bukets"],
)
def test_an_unknown_cdc_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "3")
    with pytest.raises(ConfigError, match=f"{variable}") as info:
        load_settings()
    assert info.value.exit_code == 2
    assert "3" not in str(info.value).replace(variable, "")  # the value (maybe a secret) is never echoed


@pytest.mark.parametrize(
    "variable",
    ["CDC_CONFIG", "CDC_FAULT_POINT", "CDC_FAULT_SKIP", "CDC_CACHE", "CDC_MERGE_SCHEDULE", "CDC_WATCHDOG_SCHEDULE",
     "CDC_MERGE_TABLES", "CDC_MODEL_EXAMPLES", "CDC_TOPIC_PREFIX", "CDC_INCLUDE_DATABASES", "CDC_WAREHOUSE_DIR"],
)
def test_variables_the_project_itself_reads_are_accepted(monkeypatch: pytest.MonkeyPatch, variable: str, tmp_path: Path) -> None:
    value = str(tmp_path / "cdc.yaml") if variable == "CDC_CONFIG" else "1"
    if variable == "CDC_CONFIG":
        Path(value).write_text("ingest: {buckets: 4}\n")
    monkeypatch.setenv(variable, value)
    load_settings()


def test_known_nested_variables_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_TABLES__shop.orders__BUCKETS", "4")
    monkeypatch.setenv("CDC_CATALOG__PROPERTIES__s3.endpoint", "http://minio:9000")
    monkeypatch.setenv("cdc_ingest__buckets", "8")
    s = load_settings()
    assert s.buckets_for("shop", "orders") == 4
    assert s.catalog.properties["s3.endpoint"] == "http://minio:9000"
    assert s.ingest.buckets == 8


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("CDC_CONNECT__INCLUDE_DATABASES", "shop", """a JSON list, e.g. '["shop"]'"""),
        ("CDC_CONNECT__EXCLUDE_DATABASES", "shop,crm", """a JSON list, e.g. '["shop"]'"""),
        ("CDC_CONNECT__INCLUDE_DATABASES", '"shop"', """a JSON list, e.g. '["shop"]'"""),
        ("CDC_CATALOG__PROPERTIES", "s3.endpoint=x", "a JSON object"),
        ("CDC_TABLES", "shop.orders", "a JSON object"),
        ("CDC_KAFKA", "broker:9092", "a JSON object"),
    ],
)
def test_a_malformed_structured_variable_names_the_variable_and_the_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, expected: str
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.exit_code == 2
    assert str(info.value).startswith(f"invalid settings: {variable} must be {expected}")


def test_store_paths_are_shown_and_their_passwords_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_MARIADB__SSL_KEYSTORE", "/etc/cdc/db-keystore.p12")
    monkeypatch.setenv("CDC_MARIADB__SSL_KEYSTORE_PASSWORD", SENTINEL)
    monkeypatch.setenv("CDC_KAFKA__SSL_TRUSTSTORE", "/etc/cdc/kafka-ca.pem")
    monkeypatch.setenv("CDC_CATALOG__PROPERTIES", f'{{"ssl.keystore.key": "{SENTINEL}", "ssl.keystore.location": "/k.p12"}}')
    data = masked(load_settings())
    assert SENTINEL not in json.dumps(data)
    assert data["mariadb"]["ssl_keystore"] == "/etc/cdc/db-keystore.p12"
    assert data["mariadb"]["ssl_keystore_password"] == MASK
    assert data["kafka"]["ssl_truststore"] == "/etc/cdc/kafka-ca.pem"
    assert data["catalog"]["properties"]["ssl.keystore.key"] == MASK
    assert data["catalog"]["properties"]["ssl.keystore.location"] == "/k.p12"
