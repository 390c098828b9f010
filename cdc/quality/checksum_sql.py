"""Pure builders of the reconciliation SQL: one canonical text per value, computed inside MariaDB and
inside DuckDB (over the lake's Arrow batches), byte for byte the same on both sides.

The canonical text of a value, by family (the lake column's Iceberg type and the source type):
| family    | source (MariaDB, on `select_expr`)                | lake (DuckDB)                | text                     |
|-----------|---------------------------------------------------|------------------------------|--------------------------|
| int       | CAST(e AS CHAR) (BIT as its number, YEAR)         | CAST(c AS VARCHAR)           | `-128`                   |
| bool      | CAST(e AS CHAR) (BIT(1), opted-in TINYINT(1))     | CASE c THEN '1' ELSE '0'     | `0` / `1`                |
| decimal   | CAST(e AS CHAR) (BIGINT UNSIGNED, BIT(64) too)    | CAST(c AS VARCHAR)           | `-0.01` at the scale     |
| float     | shortest digits of the float32 as a double        | same                         | `[-]<digits>e<exp>`      |
| double    | shortest round-trip digits                        | same                         | `[-]<digits>e<exp>`      |
| date      | DATEDIFF(e, '1970-01-01')                         | c - DATE '1970-01-01'        | days since the epoch     |
| datetime  | TIMESTAMPDIFF(MICROSECOND, epoch, e)              | epoch_us(c)                  | wall clock as UTC micros |
| timestamp | same, in a `+00:00` session                       | epoch_us(c)                  | UTC micros               |
| time      | TIME_TO_SEC(e) * 1000000                          | CAST(c AS VARCHAR)           | signed micros            |
| text      | CONVERT(e USING utf8mb4) (ENUM, SET, JSON, p>38)  | c                            | the UTF-8 text           |
| binary    | LOWER(HEX(e)) (BLOB, BINARY, GEOMETRY WKB)        | lower(hex(c))                | lower-case hex           |

Floats: both engines print a double's shortest round-trip digits, but in different shapes (`1e15` and
`1000000000000000.0`, `1e-5` and `1e-05`): the text is taken apart into sign, significant digits and a
decimal exponent on both sides, so only the digits, which both compute exactly, remain.

A row's text is each value as `<bytes>:<text>`, NULL as `-`, one after the other: no value can be
mistaken for another or for NULL. Its MD5 gives the row hash (the first 15 hex digits, a 60-bit
integer summed per bucket: order-independent, exact as DECIMAL/HUGEINT) and, for a table without a
key, its bucket; a keyed table's bucket comes from the MD5 of the key's text.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from cdc.bootstrap.source_schema import SourceColumn, select_expr, zero_date_condition
from cdc.source import quote_ident

SUB_CELLS = 256  # second-level buckets per bucket
HASH_DIGITS = 15  # hex digits of the row hash summed per bucket (60 bits)


class Family(enum.StrEnum):
    INT = "int"
    BOOL = "bool"
    DECIMAL = "decimal"
    FLOAT = "float"
    DOUBLE = "double"
    DATE = "date"
    DATETIME = "datetime"
    TIMESTAMP = "timestamp"
    TIME = "time"
    TEXT = "text"
    BINARY = "binary"


def family(kind: IcebergType, source: SourceColumn) -> Family:
    """Pure: the canonical family of a compared column; ValueError for a type without one."""
    data_type = source.data_type.lower()
    if isinstance(kind, IntegerType | LongType):
        return Family.TIME if data_type == "time" else Family.INT
    simple: dict[type, Family] = {BooleanType: Family.BOOL, DecimalType: Family.DECIMAL, FloatType: Family.FLOAT,
                                  DoubleType: Family.DOUBLE, DateType: Family.DATE, TimestampType: Family.DATETIME,
                                  TimestamptzType: Family.TIMESTAMP, StringType: Family.TEXT, BinaryType: Family.BINARY}
    for t, f in simple.items():
        if isinstance(kind, t):
            return f
    raise ValueError(f"column {source.name!r}: no canonical form for lake type {kind}")


@dataclass(frozen=True)
class Compared:
    """One column both sides have, with how each side reads it."""

    name: str
    family: Family
    source: SourceColumn


def duck_ident(name: str) -> str:
    """A DuckDB identifier in double quotes."""
    if not name or "\x00" in name:
        raise ValueError(f"not a valid identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


# ---- the two dialects -------------------------------------------------------------------------


class _Maria:
    def before(self, t: str, sep: str) -> str:
        return f"SUBSTRING_INDEX({t}, '{sep}', 1)"

    def after(self, t: str, sep: str) -> str:
        return f"IF(LOCATE('{sep}', {t}) > 0, SUBSTRING_INDEX({t}, '{sep}', -1), '')"

    def has(self, t: str, sep: str) -> str:
        return f"LOCATE('{sep}', {t}) > 0"

    def ltrim(self, t: str, ch: str) -> str:
        return f"TRIM(LEADING '{ch}' FROM {t})"

    def rtrim(self, t: str, ch: str) -> str:
        return f"TRIM(TRAILING '{ch}' FROM {t})"

    def length(self, t: str) -> str:
        return f"LENGTH({t})"  # bytes

    def concat(self, *parts: str) -> str:
        return f"CONCAT({', '.join(parts)})"

    def to_int(self, t: str) -> str:
        return f"CAST({t} AS SIGNED)"

    def hex_int(self, t: str) -> str:
        return f"CAST(CONV({t}, 16, 10) AS UNSIGNED)"

    def md5(self, t: str) -> str:
        return f"MD5({t})"

    def substr(self, t: str, start: int, n: int) -> str:
        return f"SUBSTR({t}, {int(start)}, {int(n)})"


class _Duck(_Maria):
    def before(self, t: str, sep: str) -> str:
        return f"split_part({t}, '{sep}', 1)"

    def after(self, t: str, sep: str) -> str:
        return f"split_part({t}, '{sep}', 2)"

    def has(self, t: str, sep: str) -> str:
        return f"strpos({t}, '{sep}') > 0"

    def ltrim(self, t: str, ch: str) -> str:
        return f"ltrim({t}, '{ch}')"

    def rtrim(self, t: str, ch: str) -> str:
        return f"rtrim({t}, '{ch}')"

    def length(self, t: str) -> str:
        return f"strlen({t})"  # bytes

    def concat(self, *parts: str) -> str:
        return f"({' || '.join(f'CAST({p} AS VARCHAR)' for p in parts)})"

    def to_int(self, t: str) -> str:
        return f"CAST({t} AS BIGINT)"

    def hex_int(self, t: str) -> str:
        return f"CAST('0x' || {t} AS UBIGINT)"

    def md5(self, t: str) -> str:
        return f"md5({t})"

    def substr(self, t: str, start: int, n: int) -> str:
        return f"substr({t}, {int(start)}, {int(n)})"


MARIA, DUCK = _Maria(), _Duck()
Dialect = _Maria


def float_text(t: str, d: Dialect) -> str:
    """Pure: the canonical text of a printed double `t` (NULL stays NULL): `[-]<digits>e<exp>`, the value
    being 0.<digits> x 10^exp, without leading or trailing zeros; zero (either sign) is `0`."""
    mantissa = d.ltrim(d.before(t, "e"), "-")
    exponent = f"(CASE WHEN {d.has(t, 'e')} THEN {d.to_int(d.after(t, 'e'))} ELSE 0 END)"
    whole = d.before(mantissa, ".")
    digits_all = d.concat(whole, d.after(mantissa, "."))
    leading = f"({d.length(digits_all)} - {d.length(d.ltrim(digits_all, '0'))})"
    digits = d.rtrim(d.ltrim(digits_all, "0"), "0")
    power = f"({d.length(whole)} - {leading} + {exponent})"
    sign = f"(CASE WHEN {d.substr(t, 1, 1)} = '-' THEN '-' ELSE '' END)"
    joined = d.concat(sign, digits, "'e'", power)
    return f"(CASE WHEN {t} IS NULL THEN NULL WHEN {digits} = '' THEN '0' ELSE {joined} END)"


_COLON = "':'"
_EPOCH_DAY = "'1970-01-01'"
_EPOCH = "'1970-01-01 00:00:00'"


def source_text(c: Compared) -> str:
    """Pure: MariaDB expression of the column's canonical text (NULL for NULL)."""
    e = select_expr(c.source)
    f = c.family
    if f in (Family.INT, Family.BOOL, Family.DECIMAL):
        text = f"CAST({e} AS CHAR)"
    elif f is Family.FLOAT:
        text = float_text(f"CAST({e} AS CHAR)", MARIA)  # select_expr reads FLOAT as the exact double
    elif f is Family.DOUBLE:
        text = float_text(f"CAST(CAST({e} AS DOUBLE) AS CHAR)", MARIA)
    elif f is Family.DATE:
        text = f"CAST(DATEDIFF({e}, {_EPOCH_DAY}) AS CHAR)"
    elif f in (Family.DATETIME, Family.TIMESTAMP):
        text = f"CAST(TIMESTAMPDIFF(MICROSECOND, {_EPOCH}, {e}) AS CHAR)"
    elif f is Family.TIME:
        text = f"CAST(CAST(TIME_TO_SEC({e}) * 1000000 AS SIGNED) AS CHAR)"
    elif f is Family.BINARY:
        text = f"LOWER(HEX({e}))"
    else:
        text = f"CONVERT({e} USING utf8mb4)"
    data_type = c.source.data_type.lower()
    # a zero date left by select_expr (nullable DATE/DATETIME, any TIMESTAMP) is NULL in the lake
    if data_type == "timestamp" or (data_type in ("date", "datetime") and c.source.nullable):
        text = f"(CASE WHEN {zero_date_condition(c.source)} THEN NULL ELSE {text} END)"
    return text


def lake_text(c: Compared) -> str:
    """Pure: DuckDB expression of the lake column's canonical text (NULL for NULL)."""
    q = duck_ident(c.name)
    f = c.family
    if f in (Family.INT, Family.DECIMAL, Family.TIME):
        return f"CAST({q} AS VARCHAR)"
    if f is Family.BOOL:
        return f"(CASE WHEN {q} IS NULL THEN NULL WHEN {q} THEN '1' ELSE '0' END)"
    if f in (Family.FLOAT, Family.DOUBLE):
        return float_text(f"CAST(CAST({q} AS DOUBLE) AS VARCHAR)", DUCK)
    if f is Family.DATE:
        return f"CAST({q} - DATE '1970-01-01' AS VARCHAR)"
    if f in (Family.DATETIME, Family.TIMESTAMP):
        return f"CAST(epoch_us({q}) AS VARCHAR)"
    if f is Family.BINARY:
        return f"lower(hex({q}))"
    return f"CAST({q} AS VARCHAR)"


def encoded(texts: Sequence[str], d: Dialect) -> str:
    """Pure: the values' texts as one unambiguous text: `<bytes>:<text>` each, NULL as `-`."""
    parts = [f"(CASE WHEN {t} IS NULL THEN '-' ELSE {d.concat(d.length(t), _COLON, t)} END)" for t in texts]
    return d.concat(*parts) if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class Hashing:
    """How rows are bucketed and summed on one side: the row's and the key's text, and the bucket count."""

    row_text: str
    key_text: str | None  # None: a table without a key (bucketed by the row hash)
    buckets: int
    d: Dialect

    @property
    def row_md5(self) -> str:
        return self.d.md5(self.row_text)

    @property
    def row_hash(self) -> str:
        return self.d.hex_int(self.d.substr(self.row_md5, 1, HASH_DIGITS))

    @property
    def _place_md5(self) -> tuple[str, int]:
        # keyed: the key's own hash from its first digits; keyless: later digits of the row hash
        return (self.d.md5(self.key_text), 1) if self.key_text is not None else (self.row_md5, 17)

    @property
    def bucket(self) -> str:
        md5, start = self._place_md5
        return f"({self.d.hex_int(self.d.substr(md5, start, 8))} % {int(self.buckets)})"

    @property
    def cell(self) -> str:
        """bucket * SUB_CELLS + sub-bucket (from other digits of the same hash)."""
        md5, start = self._place_md5
        return f"({self.bucket} * {SUB_CELLS} + {self.d.hex_int(self.d.substr(md5, start + 8, 2))})"


def source_hashing(columns: Sequence[Compared], key: Sequence[str], buckets: int) -> Hashing:
    by_name = {c.name: c for c in columns}
    row = f"CONVERT({encoded([source_text(c) for c in columns], MARIA)} USING utf8mb4)"
    key_text = f"CONVERT({encoded([source_text(by_name[k]) for k in key], MARIA)} USING utf8mb4)" if key else None
    return Hashing(row, key_text, buckets, MARIA)


def lake_hashing(columns: Sequence[Compared], key: Sequence[str], buckets: int) -> Hashing:
    by_name = {c.name: c for c in columns}
    key_text = encoded([lake_text(by_name[k]) for k in key], DUCK) if key else None
    return Hashing(encoded([lake_text(c) for c in columns], DUCK), key_text, buckets, DUCK)


def _ints(values: Sequence[int]) -> str:
    return ", ".join(str(int(v)) for v in values)


# ---- source statements (MariaDB) --------------------------------------------------------------


def source_table(db: str, table: str) -> str:
    return f"{quote_ident(db)}.{quote_ident(table)}"


def source_buckets_sql(source: str, h: Hashing) -> str:
    """Pure: per bucket, the row count and the sum of the row hashes."""
    return f"SELECT {h.bucket} AS b, COUNT(*), SUM({h.row_hash}) FROM {source} GROUP BY b"  # noqa: S608 - built here


def source_cells_sql(source: str, h: Hashing, buckets: Sequence[int]) -> str:
    """Pure: the same per second-level cell, over the given buckets only."""
    return (f"SELECT {h.cell} AS c, COUNT(*), SUM({h.row_hash}) FROM {source} "  # noqa: S608 - built here
            f"WHERE {h.bucket} IN ({_ints(buckets)}) GROUP BY c")


def source_rows_sql(source: str, h: Hashing, columns: Sequence[Compared], key: Sequence[str], cells: Sequence[int]) -> str:
    """Pure: the rows of the given cells: key text (or row hash), row hash, each column's text, the key values."""
    ident = h.key_text if h.key_text is not None else h.row_md5
    texts = ", ".join(source_text(c) for c in columns)
    by_name = {c.name: c for c in columns}
    keys = "".join(f", {select_expr(by_name[k].source)}" for k in key)
    return (f"SELECT {ident}, {h.row_hash}, {texts}{keys} FROM {source} "  # noqa: S608 - built here
            f"WHERE {h.cell} IN ({_ints(cells)})")


# ---- lake statements (DuckDB over a registered relation) --------------------------------------


def lake_buckets_sql(relation: str, h: Hashing, where: str = "TRUE") -> str:
    return (f"SELECT {h.bucket} AS b, COUNT(*), SUM({h.row_hash}) FROM {duck_ident(relation)} "  # noqa: S608 - built here
            f"WHERE {where} GROUP BY b")


def lake_cells_sql(relation: str, h: Hashing, buckets: Sequence[int], where: str = "TRUE") -> str:
    return (f"SELECT {h.cell} AS c, COUNT(*), SUM({h.row_hash}) FROM {duck_ident(relation)} "  # noqa: S608 - built here
            f"WHERE {where} AND {h.bucket} IN ({_ints(buckets)}) GROUP BY c")


def lake_rows_sql(relation: str, h: Hashing, columns: Sequence[Compared], key: Sequence[str], cells: Sequence[int],
                  where: str = "TRUE") -> str:
    ident = h.key_text if h.key_text is not None else h.row_md5
    texts = ", ".join(lake_text(c) for c in columns)
    keys = "".join(f", {duck_ident(k)}" for k in key)
    return (f"SELECT {ident}, {h.row_hash}, {texts}{keys} FROM {duck_ident(relation)} "  # noqa: S608 - built here
            f"WHERE {where} AND {h.cell} IN ({_ints(cells)})")


def bucket_count(rows_estimate: int, rows_per_bucket: int = 20_000, most: int = 4096) -> int:
    """Pure: how many buckets a table of about this many rows is compared in."""
    return max(1, min(most, rows_estimate // rows_per_bucket))


def encode_texts(texts: Sequence[str | None]) -> str:
    """Pure: what `encoded` computes in SQL, in Python (a key's text from the canonical texts of its parts)."""
    return "".join("-" if t is None else f"{len(t.encode())}:{t}" for t in texts)


def source_keys_sql(source: str, columns: Sequence[SourceColumn], key: Sequence[Compared], keys: int) -> str:
    """Pure: every column of the rows whose key text is one of `keys` parameters, read as the bootstrap reads them."""
    key_text = f"CONVERT({encoded([source_text(c) for c in key], MARIA)} USING utf8mb4)"
    select = ", ".join(select_expr(c) for c in columns)
    marks = ", ".join(["%s"] * int(keys))
    return f"SELECT {key_text}, {select} FROM {source} WHERE {key_text} IN ({marks})"  # noqa: S608 - built here
