"""Kafka Connect field schemas (as Debezium's JSON converter embeds them) -> column types and values.

One table drives both halves of exactness: which logical kind a field becomes (and so which
Iceberg type, see lake/schema.py) and how its JSON value turns into an exact Python value.
An unknown semantic type is an error, never a guess.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from cdc.errors import DecodeError
from cdc.events.model import Column, ColumnType, Kind

EPOCH_DATE = dt.date(1970, 1, 1)
EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - DATETIME is a wall clock without a zone
MAX_ICEBERG_DECIMAL = 38

Converter = Callable[[Any], Any]


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise DecodeError(f"expected an integer, got {type(v).__name__}")
    return v


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        # Connect writes NaN/Infinity as strings for some converters
        if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity"):
            return float(v)
        raise DecodeError(f"expected a number, got {type(v).__name__}")
    return float(v)


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):  # TINYINT(1) read during a snapshot
        return bool(v)
    raise DecodeError(f"expected a boolean, got {v!r}")


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise DecodeError(f"expected a string, got {type(v).__name__}")
    return v


def _bytes(v: Any) -> bytes:
    if not isinstance(v, str):
        raise DecodeError(f"expected base64 text for bytes, got {type(v).__name__}")
    try:
        return base64.b64decode(v, validate=True)
    except binascii.Error as exc:
        raise DecodeError(f"invalid base64: {exc}") from exc


def _decimal(scale: int) -> Converter:
    def convert(v: Any) -> Decimal:
        if isinstance(v, str):
            unscaled = int.from_bytes(_bytes(v), "big", signed=True)
        elif isinstance(v, int) and not isinstance(v, bool):
            unscaled = v
        else:
            raise DecodeError(f"expected an encoded decimal, got {type(v).__name__}")
        # exact: Decimal.scaleb would round to the context's 28 digits
        sign, digits, _ = Decimal(unscaled).as_tuple()
        return Decimal((sign, digits, -scale))

    return convert


def _big_decimal(scale: int) -> Converter:
    inner = _decimal(scale)

    def convert(v: Any) -> str:
        value: Decimal = inner(v)
        return format(value, "f")

    return convert


def _date(v: Any) -> dt.date:
    return EPOCH_DATE + dt.timedelta(days=_int(v))


def _timestamp_ms(v: Any) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=_int(v))


def _timestamp_us(v: Any) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=_int(v))


ZERO_TIMESTAMP = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _zoned(v: Any) -> dt.datetime | None:
    text = _str(v)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise DecodeError(f"invalid ZonedTimestamp {text!r}") from exc
    if parsed.tzinfo is None:
        raise DecodeError(f"ZonedTimestamp {text!r} has no zone")
    instant = parsed.astimezone(dt.UTC)
    # MariaDB's TIMESTAMP starts at 1970-01-01 00:00:01 UTC; the binlog writes the zero date
    # '0000-00-00 00:00:00' as epoch 0 (the snapshot and the source read it as NULL), so epoch 0 is NULL
    return None if instant == ZERO_TIMESTAMP else instant


def _time_ms(v: Any) -> int:
    return _int(v) * 1000


def _geometry(v: Any) -> bytes:
    if not isinstance(v, Mapping) or "wkb" not in v:
        raise DecodeError("expected a geometry struct with a wkb field")
    return _bytes(v["wkb"])


# semantic name -> (kind, converter); names whose value is plain text map to STRING
_SEMANTIC: dict[str, tuple[Kind, Converter]] = {
    "io.debezium.time.Date": (Kind.DATE, _date),
    "org.apache.kafka.connect.data.Date": (Kind.DATE, _date),
    "io.debezium.time.Timestamp": (Kind.TIMESTAMP, _timestamp_ms),
    "org.apache.kafka.connect.data.Timestamp": (Kind.TIMESTAMP, _timestamp_ms),
    "io.debezium.time.MicroTimestamp": (Kind.TIMESTAMP, _timestamp_us),
    "io.debezium.time.ZonedTimestamp": (Kind.TIMESTAMPTZ, _zoned),
    "io.debezium.time.MicroTime": (Kind.TIME_MICROS, _int),
    "io.debezium.time.Time": (Kind.TIME_MICROS, _time_ms),
    "org.apache.kafka.connect.data.Time": (Kind.TIME_MICROS, _time_ms),
    "io.debezium.time.Year": (Kind.INT, _int),
    "io.debezium.data.Json": (Kind.STRING, _str),
    "io.debezium.data.Enum": (Kind.STRING, _str),
    "io.debezium.data.EnumSet": (Kind.STRING, _str),
    "io.debezium.data.Xml": (Kind.STRING, _str),
    "io.debezium.data.Uuid": (Kind.STRING, _str),
    "io.debezium.data.Bits": (Kind.BINARY, _bytes),
    "io.debezium.data.geometry.Geometry": (Kind.BINARY, _geometry),
    "io.debezium.data.geometry.Point": (Kind.BINARY, _geometry),
}

_PLAIN: dict[str, tuple[Kind, Converter]] = {
    "boolean": (Kind.BOOLEAN, _bool),
    "int8": (Kind.INT, _int),
    "int16": (Kind.INT, _int),
    "int32": (Kind.INT, _int),
    "int64": (Kind.LONG, _int),
    "float": (Kind.FLOAT, _float),
    "float32": (Kind.FLOAT, _float),
    "float64": (Kind.DOUBLE, _float),
    "double": (Kind.DOUBLE, _float),
    "string": (Kind.STRING, _str),
    "bytes": (Kind.BINARY, _bytes),
}


def field_column(field: Mapping[str, Any]) -> tuple[Column, Converter]:
    """The column and the value converter for one Connect field schema."""
    name = field.get("field")
    if not isinstance(name, str) or not name:
        raise DecodeError("a schema field has no name")
    connect_type = field.get("type")
    semantic = field.get("name")
    optional = bool(field.get("optional", True))
    if semantic == "org.apache.kafka.connect.data.Decimal":
        params = field.get("parameters") or {}
        try:
            scale = int(params.get("scale", "0"))
            precision = int(params.get("connect.decimal.precision", "0"))
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"column {name!r}: bad decimal parameters {params!r}") from exc
        if precision <= 0 or precision > MAX_ICEBERG_DECIMAL:
            return Column(name, ColumnType(Kind.BIG_DECIMAL, precision or None, scale), optional), _big_decimal(scale)
        return Column(name, ColumnType(Kind.DECIMAL, precision, scale), optional), _decimal(scale)
    if semantic is not None:
        mapped = _SEMANTIC.get(semantic)
        if mapped is None:
            raise DecodeError(f"column {name!r}: unknown Debezium semantic type {semantic!r}")
    else:
        mapped = _PLAIN.get(str(connect_type))
        if mapped is None:
            raise DecodeError(f"column {name!r}: unsupported Connect type {connect_type!r}")
    kind, convert = mapped
    return Column(name, ColumnType(kind), optional), convert
