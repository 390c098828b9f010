"""The bootstrap's type mapping (from information_schema) and its pre-flight checks, pure."""

from __future__ import annotations

import pytest

from cdc.bootstrap.snapshot import check_binlog
from cdc.bootstrap.source_schema import column_type
from cdc.errors import ConfigError
from cdc.events.model import ColumnType, Kind

# the lake type of each column of the type zoo (both paths: tests/unit/test_type_agreement.py)
CASES = [
    ("tinyint", "tinyint(4)", ColumnType(Kind.INT)),
    ("tinyint", "tinyint(3) unsigned", ColumnType(Kind.INT)),
    ("smallint", "smallint(5) unsigned", ColumnType(Kind.INT)),
    ("mediumint", "mediumint(8) unsigned", ColumnType(Kind.INT)),
    ("int", "int(11)", ColumnType(Kind.INT)),
    ("int", "int(10) unsigned", ColumnType(Kind.LONG)),
    ("bigint", "bigint(20)", ColumnType(Kind.LONG)),
    ("bigint", "bigint(20) unsigned", ColumnType(Kind.DECIMAL, 20, 0)),
    ("decimal", "decimal(5,2)", ColumnType(Kind.DECIMAL, 5, 2)),
    ("decimal", "decimal(38,10)", ColumnType(Kind.DECIMAL, 38, 10)),
    ("decimal", "decimal(65,30)", ColumnType(Kind.BIG_DECIMAL, 65, 30)),
    ("float", "float", ColumnType(Kind.FLOAT)),
    ("double", "double", ColumnType(Kind.DOUBLE)),
    ("bit", "bit(1)", ColumnType(Kind.BOOLEAN)),
    ("bit", "bit(10)", ColumnType(Kind.LONG)),  # the number `b+0`
    ("bit", "bit(64)", ColumnType(Kind.DECIMAL, 20, 0)),
    ("tinyint", "tinyint(1)", ColumnType(Kind.INT)),  # exact, -128..127: a boolean only by opt-in
    ("tinyint", "tinyint(1) unsigned", ColumnType(Kind.INT)),
    ("float", "float(7,4)", ColumnType(Kind.FLOAT)),
    ("char", "char(10)", ColumnType(Kind.STRING)),
    ("longtext", "longtext", ColumnType(Kind.STRING)),  # MariaDB's JSON
    ("enum", "enum('small','medium','large')", ColumnType(Kind.STRING)),
    ("set", "set('red','green','blue')", ColumnType(Kind.STRING)),
    ("binary", "binary(4)", ColumnType(Kind.BINARY)),
    ("blob", "blob", ColumnType(Kind.BINARY)),
    ("date", "date", ColumnType(Kind.DATE)),
    ("datetime", "datetime(6)", ColumnType(Kind.TIMESTAMP)),
    ("timestamp", "timestamp(3)", ColumnType(Kind.TIMESTAMPTZ)),
    ("time", "time(6)", ColumnType(Kind.TIME_MICROS)),
    ("year", "year(4)", ColumnType(Kind.INT)),
    ("geometry", "geometry", ColumnType(Kind.BINARY)),
    ("point", "point", ColumnType(Kind.BINARY)),
]


@pytest.mark.parametrize(("data_type", "full", "expected"), CASES)
def test_column_type(data_type: str, full: str, expected: ColumnType) -> None:
    assert column_type(data_type, full) == expected


def test_unknown_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="has no lake mapping"):
        column_type("vector", "vector(3)")


ON = {"log_bin": "ON", "binlog_format": "ROW"}


def test_binlog_checks() -> None:
    check_binlog({**ON, "expire_logs_days": "0"}, 10**9)  # never purged
    check_binlog({**ON, "expire_logs_days": "7"}, 2_000_000)
    with pytest.raises(ConfigError, match="log_bin=OFF"):
        check_binlog({"log_bin": "OFF"}, 1)
    with pytest.raises(ConfigError, match="binlog_format is MIXED"):
        check_binlog({"log_bin": "ON", "binlog_format": "MIXED"}, 1)
    with pytest.raises(ConfigError, match="binlog retention is 3600 s"):
        check_binlog({**ON, "binlog_expire_logs_seconds": "3600"}, 2_000_000)
