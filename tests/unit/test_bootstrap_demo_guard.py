"""`cdc demo` drops the `shop` database everywhere: it refuses any target but the local stack unless told `--yes`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdc import demo
from cdc.config import CatalogSettings, Settings
from cdc.errors import ConfigError, ServiceError


@pytest.fixture(autouse=True)
def _no_outside_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.chdir(tmp_path)  # no cdc.yaml of the checkout
    for name in list(os.environ):
        if name.startswith("CDC_"):
            monkeypatch.delenv(name)


def local(tmp_path: Path, **changes: Any) -> Settings:
    settings = Settings(home=tmp_path / "home")
    for section, values in changes.items():
        setattr(settings, section, getattr(settings, section).model_copy(update=values))
    return settings


def test_the_local_stack_needs_no_confirmation(tmp_path: Path) -> None:
    assert demo.refusal(local(tmp_path), yes=False) is None
    for host in ("127.0.0.1", "localhost", "::1", "LOCALHOST"):
        assert demo.refusal(local(tmp_path, mariadb={"host": host}), yes=False) is None, host
    for servers in ("127.0.0.1:9092", "localhost:9092,127.0.0.1:9094", "[::1]:9092", "PLAINTEXT://127.0.0.1:9092", "localhost"):
        assert demo.refusal(local(tmp_path, kafka={"bootstrap_servers": servers}), yes=False) is None, servers
    # the default catalog named explicitly is still the default catalog
    home = (tmp_path / "home").resolve()
    explicit = local(tmp_path)
    explicit.catalog = CatalogSettings(uri=f"sqlite:///{home / 'lake' / 'catalog.db'}", warehouse=(home / "lake" / "warehouse").as_uri())
    assert demo.refusal(explicit, yes=False) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"mariadb": {"host": "db.example.internal"}}, "MariaDB host db.example.internal is not loopback"),
        ({"mariadb": {"host": "10.0.0.5"}}, "MariaDB host 10.0.0.5 is not loopback"),
        ({"kafka": {"bootstrap_servers": "broker1:9092"}}, "Kafka broker1:9092 is not loopback"),
        ({"kafka": {"bootstrap_servers": "127.0.0.1:9092,broker2:9092"}}, "Kafka 127.0.0.1:9092,broker2:9092 is not loopback"),
        ({"kafka": {"bootstrap_servers": "SASL_SSL://kafka.prod:9093"}}, "is not loopback"),
        ({"catalog": {"uri": "postgresql+psycopg2://iceberg:hunter2@pg/iceberg"}}, "not the local SQLite catalog"),
        ({"catalog": {"warehouse": "s3://bucket/lake"}}, "not the local SQLite catalog"),
        ({"catalog": {"type": "rest", "uri": "http://127.0.0.1:8181"}}, "not the local SQLite catalog"),
        ({"catalog": {"properties": {"uri": "sqlite:////srv/shared/catalog.db"}}}, "not the local SQLite catalog"),
    ],
)
def test_any_other_target_is_refused_with_what_would_be_dropped(tmp_path: Path, changes: dict[str, Any], reason: str) -> None:
    settings = local(tmp_path, **changes)
    message = demo.refusal(settings, yes=False)
    assert message is not None
    assert "\n" not in message
    assert reason in message
    host, port = settings.mariadb.host, settings.mariadb.port
    assert f"would drop database `shop` on MariaDB {host}:{port}" in message
    assert f"the Kafka topics cdc.shop.* on {settings.kafka.bootstrap_servers}" in message
    assert f"the lake tables shop.* in catalog `lake` at {demo.masked_uri(settings.catalog_properties()['uri'])}" in message
    assert "--yes" in message
    assert "hunter2" not in message  # a password in the catalog URI is not printed
    assert demo.refusal(settings, yes=True) is None


def test_masked_uri() -> None:
    assert demo.masked_uri("postgresql+psycopg2://iceberg:hunter2@pg:5432/iceberg") == "postgresql+psycopg2://iceberg:***@pg:5432/iceberg"
    assert demo.masked_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_run_refuses_before_touching_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_: Any, **__: Any) -> Any:
        raise AssertionError("the demo contacted a service")

    monkeypatch.setattr(demo.services, "up", forbidden)
    monkeypatch.setattr(demo, "connect", forbidden)
    monkeypatch.setattr(demo, "open_catalog", forbidden)
    with pytest.raises(ConfigError, match="would drop database `shop` on MariaDB db.example.internal:3307"):
        demo.run(local(tmp_path, mariadb={"host": "db.example.internal"}), progress=lambda _: None)


@pytest.fixture
def remote_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's own settings point at a remote MariaDB; any service contact fails the test."""
    monkeypatch.setenv("CDC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CDC_MARIADB__HOST", "db.example.internal")

    def stop(*_: Any, **__: Any) -> Any:
        raise ServiceError("reached the stack")

    monkeypatch.setattr(demo.services, "up", stop)
    monkeypatch.setattr(demo, "connect", stop)


def test_cli_demo_exits_2_naming_what_it_would_drop(remote_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    from cdc.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["demo"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "would drop database `shop` on MariaDB db.example.internal:3307" in err[0]
    assert "MariaDB host db.example.internal is not loopback" in err[0]


def test_cli_demo_yes_goes_ahead(remote_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    from cdc.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--yes"])
    assert exit_.value.code == 3  # past the guard: the (stubbed) stack start is the next step
    assert "reached the stack" in capsys.readouterr().err
