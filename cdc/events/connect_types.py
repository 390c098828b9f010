"""Kafka Connect field schemas (as Debezium's JSON converter embeds them) -> column types and values.

Which lake type a field becomes comes from the MariaDB source type Debezium propagates with it
(`column.propagate.source.type`), mapped by `cdc.events.source_types`, the table the bootstrap uses
too; the Connect schema type decides how the JSON value is read, and is the whole answer only for
messages without the source-type parameters. An unknown semantic type is an error, never a guess.
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
from cdc.events.source_types import GEOMETRY, MAX_ICEBERG_DECIMAL, SourceType, from_debezium, lake_type

EPOCH_DATE = dt.date(1970, 1, 1)
EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - DATETIME is a wall clock without a zone

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


_INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}


def _unsigned(bits: int, then: Converter | None = None) -> Converter:
    """An unsigned column Debezium declared with a narrower signed Connect type: a negative value is
    the same bits read as two's complement (a streamed `INTEGER(11) UNSIGNED` is int32: 4294967295 is -1)."""

    def convert(v: Any) -> Any:
        n = _int(v)
        n = n + (1 << bits) if n < 0 else n
        return then(n) if then is not None else n

    return convert


def _bool_as_int(v: Any) -> int:
    # a column declared BOOLEAN while streaming: Debezium already made -1 (and any non-zero) true
    return int(_bool(v))


def _bits_int(v: Any) -> int:
    return int.from_bytes(_bytes(v), "little")  # Debezium's Bits are little-endian: the number `b+0`


def _bits_decimal(v: Any) -> Decimal:
    return Decimal(_bits_int(v))


def _connect_mapping(name: str, field: Mapping[str, Any]) -> tuple[ColumnType, Converter]:
    """The column type and converter the Connect schema alone describes."""
    connect_type = field.get("type")
    semantic = field.get("name")
    if semantic == "org.apache.kafka.connect.data.Decimal":
        params = field.get("parameters") or {}
        try:
            scale = int(params.get("scale", "0"))
            precision = int(params.get("connect.decimal.precision", "0"))
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"column {name!r}: bad decimal parameters {params!r}") from exc
        if precision <= 0 or precision > MAX_ICEBERG_DECIMAL:
            return ColumnType(Kind.BIG_DECIMAL, precision or None, scale), _big_decimal(scale)
        return ColumnType(Kind.DECIMAL, precision, scale), _decimal(scale)
    if semantic is not None:
        mapped = _SEMANTIC.get(semantic)
        if mapped is None:
            raise DecodeError(f"column {name!r}: unknown Debezium semantic type {semantic!r}")
    else:
        mapped = _PLAIN.get(str(connect_type))
        if mapped is None:
            raise DecodeError(f"column {name!r}: unsupported Connect type {connect_type!r}")
    kind, convert = mapped
    return ColumnType(kind), convert


def _adapt(name: str, source: SourceType, wanted: ColumnType, given: ColumnType, field: Mapping[str, Any],
           convert: Converter) -> Converter:
    """The converter that reads the Connect value as the lake type the source type maps to."""
    connect_type, semantic = str(field.get("type")), field.get("name")
    if source.unsigned and semantic is None and connect_type in _INT_BITS and wanted.kind in (Kind.INT, Kind.LONG, Kind.DECIMAL):
        return _unsigned(_INT_BITS[connect_type], Decimal if wanted.kind is Kind.DECIMAL else None)
    if wanted.kind is Kind.INT and connect_type == "boolean" and semantic is None:
        return _bool_as_int
    if semantic == "io.debezium.data.Bits" and wanted.kind is Kind.LONG:
        return _bits_int
    if semantic == "io.debezium.data.Bits" and wanted.kind is Kind.DECIMAL:
        return _bits_decimal
    if wanted.kind is Kind.DOUBLE and given.kind in (Kind.FLOAT, Kind.DOUBLE):
        return _float  # a JSON number read as a Python float is the double MariaDB holds (REAL is DOUBLE)
    if wanted.kind is given.kind and wanted.kind not in (Kind.DECIMAL, Kind.BIG_DECIMAL):
        return convert
    if wanted.kind is given.kind and wanted.scale == given.scale:
        return convert
    raise DecodeError(f"column {name!r}: source type {source.declared or source.name} maps to {_describe(wanted)}, "
                      f"but Debezium sent {_describe(given)} (Connect {connect_type}{f' {semantic}' if semantic else ''})")


def _describe(t: ColumnType) -> str:
    return f"{t.kind.value}({t.precision},{t.scale})" if t.kind in (Kind.DECIMAL, Kind.BIG_DECIMAL) else t.kind.value


def implicit_default(t: ColumnType, source: SourceType | None, allowed: str | None = None) -> Any:
    """Pure: the value MariaDB gives the rows of a NOT NULL column without a DEFAULT (its implicit
    default: what existing rows read after `ALTER TABLE ... ADD COLUMN`), as the lake holds it."""
    kind = t.kind
    if kind in (Kind.INT, Kind.LONG, Kind.TIME_MICROS):
        return 0
    if kind in (Kind.FLOAT, Kind.DOUBLE):
        return 0.0
    if kind is Kind.DECIMAL:
        return Decimal((0, (0,), -(t.scale or 0)))
    if kind is Kind.BIG_DECIMAL:
        return format(Decimal((0, (0,), -(t.scale or 0))), "f")
    if kind is Kind.BOOLEAN:
        return False
    if kind is Kind.STRING:
        if source is not None and source.name == "ENUM" and allowed:
            return allowed.split(",")[0]  # the first member
        return ""
    if kind is Kind.BINARY:
        if source is not None and source.name in GEOMETRY:
            return None
        if source is not None and source.name == "BINARY" and source.length:
            return bytes(source.length)  # BINARY(n) pads with zero bytes
        return b""
    # the zero date '0000-00-00' ('0000-00-00 00:00:00') of a NOT NULL column reads as the epoch (the zero-date
    # rule, README); a zero TIMESTAMP reads as NULL
    if kind is Kind.DATE:
        return EPOCH_DATE
    if kind is Kind.TIMESTAMP:
        return EPOCH
    return None


def field_column(field: Mapping[str, Any]) -> tuple[Column, Converter]:
    """The column and the value converter for one Connect field schema.

    The column's `default` is the Connect field's `default` read by the same converter, or, for a
    NOT NULL field without one, MariaDB's implicit default (`implicit_default`).
    """
    name = field.get("field")
    if not isinstance(name, str) or not name:
        raise DecodeError("a schema field has no name")
    optional = bool(field.get("optional", True))
    column_type, convert = _connect_mapping(name, field)
    params = field.get("parameters")
    source = from_debezium(params) if isinstance(params, Mapping) else None
    if source is not None:
        wanted = lake_type(source)
        if wanted is not None:
            convert = _adapt(name, source, wanted, column_type, field, convert)
            column_type = wanted
    default: Any = None
    if field.get("default") is not None:
        try:
            default = convert(field["default"])
        except DecodeError as exc:
            raise DecodeError(f"column {name!r}: its default {field['default']!r}: {exc}") from exc
    elif not optional:
        allowed = params.get("allowed") if isinstance(params, Mapping) else None
        default = implicit_default(column_type, source, allowed if isinstance(allowed, str) else None)
    return Column(name, column_type, optional, default), convert
