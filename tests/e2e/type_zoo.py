"""A table with every MariaDB column type the pipeline carries, and edge values for each."""

from __future__ import annotations

ZOO_DDL = """CREATE TABLE zoo (
    id INT NOT NULL PRIMARY KEY,
    ti TINYINT NULL, tiu TINYINT UNSIGNED NULL, si SMALLINT NULL, siu SMALLINT UNSIGNED NULL,
    mi MEDIUMINT NULL, miu MEDIUMINT UNSIGNED NULL, i INT NULL, iu INT UNSIGNED NULL,
    bi BIGINT NULL, biu BIGINT UNSIGNED NULL,
    d52 DECIMAL(5,2) NULL, d3810 DECIMAL(38,10) NULL, d6530 DECIMAL(65,30) NULL, d650 DECIMAL(65,0) NULL,
    f FLOAT NULL, db DOUBLE NULL,
    b1 BIT(1) NULL, b10 BIT(10) NULL, b64 BIT(64) NULL, flag BOOLEAN NULL,
    c CHAR(10) NULL, vc VARCHAR(255) NULL, tx TEXT NULL,
    bn BINARY(4) NULL, vb VARBINARY(16) NULL, bl BLOB NULL,
    dt0 DATE NULL, dtm DATETIME NULL, dtm3 DATETIME(3) NULL, dtm6 DATETIME(6) NULL,
    ts TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
    tm TIME NULL, tm6 TIME(6) NULL, yr YEAR NULL,
    js JSON NULL, en ENUM('small','medium','large') NULL, st SET('red','green','blue') NULL,
    geo GEOMETRY NULL, pt POINT NULL,
    b12 BIT(12) NULL, t1 TINYINT(1) NULL, t1u TINYINT(1) UNSIGNED NULL, iu11 INTEGER(11) UNSIGNED NULL, rl REAL NULL,
    dsm DATE NULL, dtsm DATETIME NULL
)"""

COLUMNS = (
    "id", "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "d52", "d3810", "d6530", "d650", "f", "db",
    "b1", "b10", "b64", "flag", "c", "vc", "tx", "bn", "vb", "bl", "dt0", "dtm", "dtm3", "dtm6", "ts", "ts6", "tm", "tm6",
    "yr", "js", "en", "st", "geo", "pt", "b12", "t1", "t1u", "iu11", "rl", "dsm", "dtsm",
)

# SQL expressions per column for the minimum, the maximum and an awkward middle value
MINIMUM = {
    "ti": "-128", "tiu": "0", "si": "-32768", "siu": "0", "mi": "-8388608", "miu": "0", "i": "-2147483648", "iu": "0",
    "bi": "-9223372036854775808", "biu": "0", "d52": "-999.99", "d3810": "-9999999999999999999999999999.9999999999",
    "d6530": "-99999999999999999999999999999999999.999999999999999999999999999999",
    "d650": "-99999999999999999999999999999999999999999999999999999999999999999",
    "f": "-3.40282e38", "db": "-1.7976931348623157e308", "b1": "b'0'", "b10": "b'0'", "b64": "b'0'", "flag": "FALSE",
    "c": "''", "vc": "''", "tx": "''", "bn": "x'00000000'", "vb": "x''", "bl": "x''",
    "dt0": "'1000-01-01'", "dtm": "'1000-01-01 00:00:00'", "dtm3": "'1000-01-01 00:00:00.000'",
    "dtm6": "'1000-01-01 00:00:00.000000'", "ts": "'1970-01-01 00:00:01'", "ts6": "'1970-01-01 00:00:01.000000'",
    "tm": "'-838:59:59'", "tm6": "'-838:59:59.000000'", "yr": "1901", "js": "'[]'", "en": "'small'", "st": "''",
    "geo": "ST_GeomFromText('POINT(0 0)')", "pt": "ST_GeomFromText('POINT(-180 -90)')",
    "b12": "b'0'", "t1": "-128", "t1u": "0", "iu11": "0", "rl": "-3.4e38", "dsm": "'0001-01-01'",
    "dtsm": "'0001-01-01 00:00:00'",
}
MAXIMUM = {
    "ti": "127", "tiu": "255", "si": "32767", "siu": "65535", "mi": "8388607", "miu": "16777215", "i": "2147483647",
    "iu": "4294967295", "bi": "9223372036854775807", "biu": "18446744073709551615", "d52": "999.99",
    "d3810": "9999999999999999999999999999.9999999999",
    "d6530": "99999999999999999999999999999999999.999999999999999999999999999999",
    "d650": "99999999999999999999999999999999999999999999999999999999999999999",
    "f": "3.40282e38", "db": "1.7976931348623157e308", "b1": "b'1'", "b10": "b'1111111111'",
    "b64": "b'1111111111111111111111111111111111111111111111111111111111111111'", "flag": "TRUE",
    "c": "'ÿÿÿÿÿÿÿÿÿÿ'", "vc": "CONCAT(REPEAT('z', 250), '😀🦊')", "tx": "REPEAT('𝄞', 1000)",
    "bn": "x'FFFFFFFF'", "vb": "x'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF'", "bl": "REPEAT(x'FF00', 500)",
    "dt0": "'9999-12-31'", "dtm": "'9999-12-31 23:59:59'", "dtm3": "'9999-12-31 23:59:59.999'",
    "dtm6": "'9999-12-31 23:59:59.999999'", "ts": "'2038-01-19 03:14:07'", "ts6": "'2038-01-19 03:14:07.999999'",
    "tm": "'838:59:59'", "tm6": "'838:59:59.000000'", "yr": "2155", "js": "'{\"k\": [1, 2.5, \"ü\", null, {\"x\": true}]}'",
    "en": "'large'", "st": "'red,green,blue'",
    "geo": "ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0))')", "pt": "ST_GeomFromText('POINT(180 90)')",
    "b12": "b'111111111111'", "t1": "127", "t1u": "255", "iu11": "4294967295", "rl": "3.4e38",
    "dsm": "'0099-12-31'", "dtsm": "'0099-12-31 23:59:59'",
}
MIDDLE = {
    "ti": "-1", "tiu": "128", "si": "-1", "siu": "32768", "mi": "-1", "miu": "8388608", "i": "-1", "iu": "2147483648",
    "bi": "-1", "biu": "9223372036854775808", "d52": "-0.01", "d3810": "0.0000000001",
    "d6530": "0.000000000000000000000000000001", "d650": "12345678901234567890123456789012345678901234567890",
    "f": "0.1", "db": "0.1", "b1": "b'1'", "b10": "b'1000000001'",
    "b64": "b'1000000000000000000000000000000000000000000000000000000000000001'",
    "flag": "TRUE", "c": "'a b'", "vc": "'tab\\there, quote '' \" backslash \\\\ nul? no'", "tx": "'line\\nbreak ✓ 中文'",
    "bn": "x'00FF0000'", "vb": "x'0000'", "bl": "x'00'",
    "dt0": "'2024-02-29'", "dtm": "'2025-03-30 02:30:00'", "dtm3": "'2025-10-26 02:30:00.500'",
    "dtm6": "'2025-03-30 02:30:00.000001'", "ts": "'2025-03-30 01:00:00'", "ts6": "'2025-10-26 00:59:59.999999'",
    "tm": "'-00:00:01'", "tm6": "'24:00:00.000001'", "yr": "2000", "js": "'\"just a string\"'", "en": "'medium'",
    "st": "'blue,red'", "geo": "ST_GeomFromText('LINESTRING(1 1,2 2,3 5)')", "pt": "ST_GeomFromText('POINT(1.5 -2.25)')",
    "b12": "935", "t1": "-1", "t1u": "128", "iu11": "2147483648", "rl": "2.36", "dsm": "'0018-04-01'",
    "dtsm": "'0099-12-31 23:59:59'",
}

# zero and invalid dates (a permissive sql_mode lets them in) in NOT NULL columns with and without a DEFAULT,
# and in nullable ones; the rule (README): NULL where nullable; in a NOT NULL DATE/DATETIME the column's
# DEFAULT, else the epoch (what Debezium delivers); a zero TIMESTAMP is NULL
ZERO_DDL = """CREATE TABLE zd (
    id INT NOT NULL PRIMARY KEY,
    d_nn DATE NOT NULL, d_def DATE NOT NULL DEFAULT '2001-02-03', d_null DATE NULL,
    t_nn DATETIME NOT NULL, t_def DATETIME(3) NOT NULL DEFAULT '2001-02-03 04:05:06.500', t_null DATETIME NULL,
    ts_nn TIMESTAMP NOT NULL DEFAULT '2001-02-03 04:05:06', ts_null TIMESTAMP NULL DEFAULT NULL
)"""
ZERO_COLUMNS = ("d_nn", "d_def", "d_null", "t_nn", "t_def", "t_null", "ts_nn", "ts_null")
# (date, datetime) written into every date / datetime-or-timestamp column of one row
ZERO_ROWS = {
    1: ("0000-00-00", "0000-00-00 00:00:00"),
    2: ("0001-00-00", "0001-00-00 00:00:00"),
    3: ("0000-00-00", "0000-00-00 14:02:10"),
    4: ("1970-01-01", "1970-01-01 00:00:00"),  # a real epoch: the lake cannot tell it from a zero date
    5: ("0018-04-01", "0099-12-31 23:59:59"),  # years below 100 are no zero dates
}


def insert_zero_rows(cur: object, offset: int = 0) -> None:
    """The ZERO_ROWS into `zd` (ids + offset) in a permissive session."""
    execute = cur.execute  # type: ignore[attr-defined]
    execute("SET SESSION sql_mode = ''")
    for k, (day, moment) in ZERO_ROWS.items():
        values = [day, day, day, moment, moment, moment, moment, moment]
        execute(f"INSERT INTO zd (id, {', '.join(ZERO_COLUMNS)}) VALUES ({k + offset}, {', '.join(['%s'] * 8)})", values)


def expected_zero_rows() -> dict[int, dict[str, object]]:
    """What the lake holds for ZERO_ROWS (by id), on every path."""
    import datetime as dt

    epoch_day, epoch = dt.date(1970, 1, 1), dt.datetime(1970, 1, 1)  # noqa: DTZ001 - DATETIME has no zone
    default_day, default_moment = dt.date(2001, 2, 3), dt.datetime(2001, 2, 3, 4, 5, 6, 500000)  # noqa: DTZ001
    zero = {"d_nn": epoch_day, "d_def": default_day, "d_null": None, "t_nn": epoch, "t_def": default_moment, "t_null": None,
            "ts_nn": None, "ts_null": None}
    return {
        1: zero,
        2: zero,
        3: zero,
        4: {"d_nn": epoch_day, "d_def": epoch_day, "d_null": epoch_day, "t_nn": epoch, "t_def": epoch, "t_null": epoch,
            "ts_nn": None, "ts_null": None},  # 1970-01-01 00:00:00 UTC is below TIMESTAMP's range: a zero TIMESTAMP
        5: {"d_nn": dt.date(18, 4, 1), "d_def": dt.date(18, 4, 1), "d_null": dt.date(18, 4, 1),
            "t_nn": dt.datetime(99, 12, 31, 23, 59, 59), "t_def": dt.datetime(99, 12, 31, 23, 59, 59),  # noqa: DTZ001
            "t_null": dt.datetime(99, 12, 31, 23, 59, 59), "ts_nn": None, "ts_null": None},  # noqa: DTZ001
    }

VALUE_SETS = (MINIMUM, MAXIMUM, MIDDLE)


def random_values(rng: object, columns: tuple[str, ...]) -> dict[str, str]:
    """For each column an edge value (or NULL) as a SQL expression."""
    import random

    assert isinstance(rng, random.Random)
    out = {}
    for c in columns:
        pick = rng.randrange(4)
        out[c] = "NULL" if pick == 3 else VALUE_SETS[pick][c]
    return out
