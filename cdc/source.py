"""Connections to the source MariaDB/MySQL (the admin user; the connector has its own)."""

from __future__ import annotations

from typing import Any

import mysql.connector

from cdc.config import Settings
from cdc.errors import ServiceError


def connect(settings: Settings, database: str | None = None, **options: Any) -> Any:
    """A mysql-connector connection in UTC with autocommit off."""
    try:
        conn = mysql.connector.connect(
            host=settings.mariadb.host,
            port=settings.mariadb.port,
            user=settings.mariadb.admin_user,
            password=settings.admin_password().get_secret_value(),
            database=database,
            time_zone="+00:00",
            charset="utf8mb4",
            collation="utf8mb4_unicode_ci",
            **options,
        )
    except mysql.connector.Error as exc:
        raise ServiceError(f"cannot connect to MariaDB at {settings.mariadb.host}:{settings.mariadb.port}: {exc.msg}") from exc
    return conn


def quote_ident(name: str) -> str:
    """A MariaDB identifier in backticks; refuses what cannot be an identifier."""
    if not name or "\x00" in name or len(name) > 64:
        raise ValueError(f"not a valid identifier: {name!r}")
    return "`" + name.replace("`", "``") + "`"
