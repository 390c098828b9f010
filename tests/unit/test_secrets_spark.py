"""No secret reaches Spark's builder (PySpark passes every builder conf to `spark-submit --conf k=v`,
world-readable in /proc/*/cmdline): secret confs are set on the live session, before the catalog is used."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cdc import jvm, spark as cdc_spark
from cdc.config import Settings, load_settings

SENTINEL = "Sentinel-Spark-Pa55"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CDC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(jvm, "spark_jars", lambda cache: [tmp_path / "a.jar", tmp_path / "b.jar"])


def pg_settings(monkeypatch: pytest.MonkeyPatch, password: str = SENTINEL) -> Settings:
    monkeypatch.setenv("CDC_CATALOG__URI", f"postgresql+psycopg2://iceberg:{password}@127.0.0.1:5433/iceberg")
    return load_settings()


def test_the_builder_conf_holds_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = pg_settings(monkeypatch)
    conf = cdc_spark.session_conf(settings)
    assert not [k for k, v in conf.items() if SENTINEL in k or SENTINEL in v]
    assert conf["spark.sql.catalog.lake.uri"] == "jdbc:postgresql://127.0.0.1:5433/iceberg"
    assert conf["spark.sql.catalog.lake.jdbc.user"] == "iceberg"
    assert cdc_spark.secret_conf(settings) == {"spark.sql.catalog.lake.jdbc.password": SENTINEL}


def test_a_percent_encoded_password_reaches_jdbc_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = pg_settings(monkeypatch, "p%40ss%2Fword")
    assert cdc_spark.secret_conf(settings) == {"spark.sql.catalog.lake.jdbc.password": "p@ss/word"}


class FakeSession:
    """Stands in for pyspark's SparkSession: records what went to the builder and what was set live."""

    built: dict[str, str]
    live: dict[str, str]
    order: list[str]

    class _Conf:
        def __init__(self, owner: type[FakeSession]) -> None:
            self.owner = owner

        def set(self, key: str, value: str) -> None:
            self.owner.live[key] = value
            self.owner.order.append(f"set {key}")

    class _Context:
        def setLogLevel(self, level: str) -> None:  # noqa: N802 - pyspark's name
            pass

    class _Builder:
        def __init__(self, owner: type[FakeSession]) -> None:
            self.owner = owner

        def appName(self, name: str) -> FakeSession._Builder:  # noqa: N802 - pyspark's name
            return self

        def config(self, key: str, value: str) -> FakeSession._Builder:
            self.owner.built[key] = value
            return self

        def getOrCreate(self) -> Any:  # noqa: N802 - pyspark's name
            self.owner.order.append("getOrCreate")
            session = FakeSession()
            session.conf = FakeSession._Conf(self.owner)  # type: ignore[attr-defined]
            session.sparkContext = FakeSession._Context()  # type: ignore[attr-defined]
            return session


def test_session_sets_secrets_on_the_live_session_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyspark.sql

    FakeSession.built, FakeSession.live, FakeSession.order = {}, {}, []
    FakeSession.builder = FakeSession._Builder(FakeSession)  # type: ignore[attr-defined]
    monkeypatch.setattr(pyspark.sql, "SparkSession", FakeSession)
    settings = pg_settings(monkeypatch)
    cdc_spark.session(settings)
    assert not [v for v in FakeSession.built.values() if SENTINEL in v]
    assert FakeSession.built["spark.sql.catalog.lake"] == "org.apache.iceberg.spark.SparkCatalog"
    assert FakeSession.live == {"spark.sql.catalog.lake.jdbc.password": SENTINEL}
    assert FakeSession.order == ["getOrCreate", "set spark.sql.catalog.lake.jdbc.password"]
