"""The Debezium decoder on realistic MariaDB messages (JSON converter, schemas embedded).

Fixtures are built the way Kafka Connect's JsonConverter writes them with schemas.enable=true:
compact JSON, `{"schema":...,"payload":...}`, non-ASCII text as `\\uXXXX` escapes.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cdc.events.debezium import decode
from cdc.events.model import (
    ChangeEvent,
    ColumnType,
    DecodeFailure,
    Kind,
    Op,
    Skip,
    TableId,
)
from cdc.events.position import SNAPSHOT, STREAM, BinlogPosition
from tests.debezium_messages import (
    COORDS,
    DECIMAL,
    ID,
    ROW_FIELDS,
    TABLE,
    TOPIC,
    decimal_field,
    envelope,
    field,
    key,
    payload,
    source,
    value,
    value_schema,
)

KEY = key([ID], {"id": 1})
ROW = {"id": 1, "d": "BNI=", "ts": "2026-03-29T01:30:00.123Z", "dt": 1767261600123456, "b": True, "v": "h\U0001f600"}
CREATE = value(payload("c", after=ROW))
EXPECTED_ROW = {
    "id": 1,
    "d": Decimal("12.34"),
    "ts": dt.datetime(2026, 3, 29, 1, 30, 0, 123000, tzinfo=dt.UTC),
    "dt": dt.datetime(2026, 1, 1, 10, 0, 0, 123456),
    "b": True,
    "v": "h\U0001f600",
}


def decoded(k: bytes | None, v: bytes | None, table_of_topic: Any = None) -> ChangeEvent:
    result = decode(k, v, COORDS, table_of_topic)
    assert isinstance(result, ChangeEvent), result
    return result


def failure(k: bytes | None, v: bytes | None, table_of_topic: Any = None) -> DecodeFailure:
    result = decode(k, v, COORDS, table_of_topic)
    assert isinstance(result, DecodeFailure), result
    assert (result.key, result.value, result.coordinates) == (k, v, COORDS)  # kept whole for the dead letters
    return result


# ---- the four row operations and truncate -------------------------------------------------------


def test_create_decodes_every_value_exactly() -> None:
    assert b"h\\ud83d\\ude00" in CREATE  # the emoji travels as a surrogate pair escape
    event = decoded(KEY, CREATE)
    assert event.table == TABLE
    assert event.op is Op.CREATE
    assert event.values == EXPECTED_ROW
    assert str(event.values["d"]) == "12.34"  # the scale is kept, not just the numeric value
    assert event.values["ts"].utcoffset() == dt.timedelta(0)
    assert event.values["dt"].tzinfo is None  # DATETIME is a wall clock: no zone applied
    assert len(event.values["v"]) == 2
    assert event.seq == BinlogPosition(STREAM, 1, 2277, 0).pack()
    assert event.source_ts_us == 1795619313000000
    assert event.coordinates == COORDS
    assert event.schema.key == ("id",)
    assert event.schema.columns[0].optional is False
    assert {c.name: c.type for c in event.schema.columns} == {
        "id": ColumnType(Kind.INT),
        "d": ColumnType(Kind.DECIMAL, 10, 2),
        "ts": ColumnType(Kind.TIMESTAMPTZ),
        "dt": ColumnType(Kind.TIMESTAMP),
        "b": ColumnType(Kind.BOOLEAN),
        "v": ColumnType(Kind.STRING),
    }


def test_raw_utf8_and_pretty_printed_envelopes_decode_the_same() -> None:
    schema, body = value_schema(ROW_FIELDS), payload("c", after=ROW)
    raw_utf8 = envelope(schema, body, ensure_ascii=False)
    assert "h\U0001f600".encode() in raw_utf8
    pretty = envelope(schema, body, indent=2)
    assert not pretty.startswith(b'{"schema":')  # takes the full-parse path, not the split one
    for variant in (raw_utf8, pretty):
        assert decoded(KEY, variant).values == EXPECTED_ROW


def test_update_carries_the_after_image() -> None:
    before = {**ROW, "v": "old", "d": "AMg="}  # 2.00
    after = {**ROW, "v": "new", "d": "+y4="}  # -12.34
    event = decoded(KEY, value(payload("u", before=before, after=after, src=source(pos=3000, row=1))))
    assert event.op is Op.UPDATE
    assert event.values["v"] == "new"
    assert event.values["d"] == Decimal("-12.34")
    assert event.seq == BinlogPosition(STREAM, 1, 3000, 1).pack()


def test_delete_carries_the_before_image() -> None:
    event = decoded(KEY, value(payload("d", before=ROW, after=None)))
    assert event.op is Op.DELETE
    assert event.values == EXPECTED_ROW


def test_snapshot_read_is_a_read_in_the_snapshot_phase() -> None:
    event = decoded(KEY, value(payload("r", after=ROW, src=source(snapshot="true", pos=900))))
    assert event.op is Op.READ
    assert event.values == EXPECTED_ROW
    assert BinlogPosition.unpack(event.seq) == BinlogPosition(SNAPSHOT, 1, 900, 0)


def test_truncate_has_no_image_and_needs_no_key() -> None:
    event = decoded(None, value(payload("t", src=source(pos=5000))))
    assert event.op is Op.TRUNCATE
    assert event.values == dict.fromkeys(("id", "d", "ts", "dt", "b", "v"))
    assert event.schema.key == ()
    assert event.seq == BinlogPosition(STREAM, 1, 5000, 0).pack()


def test_tombstone_is_skipped() -> None:
    assert decode(KEY, None, COORDS) == Skip("tombstone", COORDS)


def test_null_optional_values_stay_null() -> None:
    row = dict.fromkeys(ROW) | {"id": 7}
    assert decoded(KEY, value(payload("c", after=row))).values == {"id": 7} | dict.fromkeys(("d", "ts", "dt", "b", "v"))


def test_composite_key() -> None:
    fields = [field("tenant", "string", optional=False), ID, field("v", "string")]
    k = key([fields[0], ID], {"tenant": "acme", "id": 3})
    event = decoded(k, value(payload("c", after={"tenant": "acme", "id": 3, "v": "x"}), fields))
    assert event.schema.key == ("tenant", "id")
    assert event.values == {"tenant": "acme", "id": 3, "v": "x"}


# ---- one column at a time: every kind of value ----------------------------------------------------

BIG_POSITIVE = "12345678901234567890123456789012345.123456789012345678901234567890"  # 65 digits
BIG_NEGATIVE = "-" + BIG_POSITIVE
POINT_WKB = bytes.fromhex("0101000000000000000000f03f0000000000000040")  # POINT(1 2), little endian

VALUE_CASES = [
    # (field schema, JSON value, Python value, column type)
    pytest.param(decimal_field("x", 10, 2), "BNI=", Decimal("12.34"), ColumnType(Kind.DECIMAL, 10, 2), id="decimal"),
    pytest.param(decimal_field("x", 10, 2), "+y4=", Decimal("-12.34"), ColumnType(Kind.DECIMAL, 10, 2), id="neg-decimal"),
    pytest.param(decimal_field("x", 10, 2), "AA==", Decimal("0.00"), ColumnType(Kind.DECIMAL, 10, 2), id="zero-decimal"),
    pytest.param(decimal_field("x", 20, 0), "AP//////////", Decimal(2**64 - 1), ColumnType(Kind.DECIMAL, 20, 0), id="bigint-unsigned"),
    pytest.param(
        decimal_field("x", 38, 10),
        "tMSzV6V5O4X2dd3AAAAAAQ==",
        Decimal("-9999999999999999999999999999.9999999999"),
        ColumnType(Kind.DECIMAL, 38, 10),
        id="38-digit-decimal",
    ),
    pytest.param(
        decimal_field("x", 65, 30),
        "HgK8HpeFi9xsuVBY80JNfTp/7HsD4maOPwrS",
        BIG_POSITIVE,
        ColumnType(Kind.BIG_DECIMAL, 65, 30),
        id="65-digit-decimal",
    ),
    pytest.param(
        decimal_field("x", 65, 30),
        "4f1D4Wh6dCOTRq+nDL2ygsWAE4T8HZlxwPUu",
        BIG_NEGATIVE,
        ColumnType(Kind.BIG_DECIMAL, 65, 30),
        id="neg-65-digit-decimal",
    ),
    pytest.param(
        decimal_field("x", 65, 30),
        "Eu7C6zhpr2TfYAAAAA==",
        "1.500000000000000000000000000000",
        ColumnType(Kind.BIG_DECIMAL, 65, 30),
        id="big-decimal-keeps-trailing-zeros",
    ),
    pytest.param(
        field("x", "string", semantic="io.debezium.time.ZonedTimestamp"),
        "2026-03-29T03:30:00.123456+02:00",
        dt.datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=dt.UTC),
        ColumnType(Kind.TIMESTAMPTZ),
        id="zoned-timestamp-to-utc",
    ),
    pytest.param(
        field("x", "string", semantic="io.debezium.time.ZonedTimestamp"),
        "1970-01-01T00:00:00Z",
        None,
        ColumnType(Kind.TIMESTAMPTZ),
        id="zero-timestamp-from-the-binlog-is-null",
    ),
    pytest.param(
        field("x", "string", semantic="io.debezium.time.ZonedTimestamp"),
        "1970-01-01T00:00:01Z",
        dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC),
        ColumnType(Kind.TIMESTAMPTZ),
        id="earliest-mariadb-timestamp",
    ),
    pytest.param(
        field("x", "int64", semantic="io.debezium.time.MicroTimestamp"),
        -1,
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
        ColumnType(Kind.TIMESTAMP),
        id="micro-timestamp-before-epoch",
    ),
    pytest.param(
        field("x", "int64", semantic="io.debezium.time.Timestamp"),
        1767261600123,
        dt.datetime(2026, 1, 1, 10, 0, 0, 123000),
        ColumnType(Kind.TIMESTAMP),
        id="milli-timestamp",
    ),
    pytest.param(field("x", "int32", semantic="io.debezium.time.Date"), 20000, dt.date(2024, 10, 4), ColumnType(Kind.DATE), id="date"),
    pytest.param(field("x", "int32", semantic="io.debezium.time.Date"), -1, dt.date(1969, 12, 31), ColumnType(Kind.DATE), id="old-date"),
    pytest.param(
        field("x", "int64", semantic="io.debezium.time.MicroTime"),
        45296123456,
        45296123456,
        ColumnType(Kind.TIME_MICROS),
        id="micro-time",
    ),
    pytest.param(
        field("x", "int64", semantic="io.debezium.time.MicroTime"),
        -3020399000000,
        -3020399000000,
        ColumnType(Kind.TIME_MICROS),
        id="negative-time-past-24h",
    ),
    pytest.param(
        field("x", "int32", semantic="io.debezium.time.Time"), 45296123, 45296123000, ColumnType(Kind.TIME_MICROS), id="milli-time"
    ),
    pytest.param(field("x", "int32", semantic="io.debezium.time.Year"), 2026, 2026, ColumnType(Kind.INT), id="year"),
    pytest.param(field("x", "bytes"), "3q2+7w==", b"\xde\xad\xbe\xef", ColumnType(Kind.BINARY), id="bytes"),
    pytest.param(field("x", "string", semantic="io.debezium.data.Json"), '{"a": [1]}', '{"a": [1]}', ColumnType(Kind.STRING), id="json"),
    pytest.param(
        field("x", "string", semantic="io.debezium.data.Enum", parameters={"allowed": "s,m"}),
        "m",
        "m",
        ColumnType(Kind.STRING),
        id="enum",
    ),
    pytest.param(field("x", "string"), "\u00e9\u4e2d\U0001f600", "\u00e9\u4e2d\U0001f600", ColumnType(Kind.STRING), id="utf8"),
    pytest.param(field("x", "int64"), -(2**63), -(2**63), ColumnType(Kind.LONG), id="long-min"),
    pytest.param(field("x", "float64"), 0.1, 0.1, ColumnType(Kind.DOUBLE), id="double"),
    pytest.param(field("x", "float32"), 1.5, 1.5, ColumnType(Kind.FLOAT), id="float"),
    pytest.param(field("x", "boolean"), 1, True, ColumnType(Kind.BOOLEAN), id="tinyint-1-as-boolean"),
    pytest.param(
        {
            "type": "struct",
            "fields": [
                field("x", "float64", optional=False),
                field("y", "float64", optional=False),
                field("wkb", "bytes"),
                field("srid", "int32"),
            ],
            "optional": True,
            "name": "io.debezium.data.geometry.Point",
            "version": 1,
            "field": "x",
        },
        {"x": 1.0, "y": 2.0, "wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": None},
        POINT_WKB,
        ColumnType(Kind.BINARY),
        id="point-as-wkb",
    ),
]


@pytest.mark.parametrize(("column", "raw", "expected", "column_type"), VALUE_CASES)
def test_value_conversion(column: dict, raw: Any, expected: Any, column_type: ColumnType) -> None:
    event = decoded(KEY, value(payload("c", after={"id": 1, "x": raw}), [ID, column]))
    got = event.values["x"]
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(expected, Decimal | dt.datetime):
        assert str(got) == str(expected)  # same scale / same zone, not merely an equal value
    assert event.schema.columns[1].type == column_type


# ---- ordering: `_seq` ------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["true", "first", "first_in_data_collection", "last_in_data_collection", "last"])
def test_snapshot_read_ranks_below_a_streamed_change_at_an_earlier_position(marker: str) -> None:
    read = decoded(KEY, value(payload("r", after=ROW, src=source(file="mysql-bin.000002", pos=9000, snapshot=marker))))
    streamed = decoded(KEY, value(payload("u", before=ROW, after=ROW, src=source(file="mysql-bin.000001", pos=4))))
    assert read.seq < streamed.seq


@pytest.mark.parametrize("marker", [None, "false"])
def test_a_change_outside_the_snapshot_is_streamed(marker: str | None) -> None:
    event = decoded(KEY, value(payload("c", after=ROW, src=source(snapshot=marker))))
    assert BinlogPosition.unpack(event.seq).phase == STREAM


def test_streamed_changes_order_by_file_number_then_position_then_row() -> None:
    def seq(file: str, pos: int, row: int = 0) -> int:
        return decoded(KEY, value(payload("c", after=ROW, src=source(file=file, pos=pos, row=row)))).seq

    assert seq("mysql-bin.999999", 10**9) < seq("mysql-bin.1000000", 4)  # text order would say otherwise
    assert seq("mysql-bin.000001", 100, 5) < seq("mysql-bin.000001", 101, 0)
    assert seq("mysql-bin.000001", 100, 0) < seq("mysql-bin.000001", 100, 1)


# ---- failures: a DecodeFailure with a message that says what is wrong -------------------------------


def _without(d: dict, name: str) -> dict:
    return {k: v for k, v in d.items() if k != name}


FAILURES = [
    # (key, value, expected error type, message fragment)
    pytest.param(KEY, b'{"schema":{"type":"struct"', "DecodeError", "not valid JSON", id="truncated-json"),
    pytest.param(KEY, b"\xff\xfe{}", "DecodeError", "not valid JSON", id="not-utf8"),
    pytest.param(KEY, CREATE[:-1] + b"]", "DecodeError", "not valid JSON", id="wrong-closing-bracket"),
    pytest.param(KEY, CREATE[:-1] + b" ", "DecodeError", "not valid JSON", id="missing-closing-brace"),
    pytest.param(KEY, json.dumps(payload("c", after=ROW)).encode(), "DecodeError", "not a Connect JSON envelope", id="no-schema"),
    pytest.param(KEY, b"[1, 2]", "DecodeError", "not a Connect JSON envelope", id="array"),
    pytest.param(KEY, envelope({}, "text"), "DecodeError", "payload is not an object", id="payload-not-object"),
    pytest.param(KEY, value(_without(payload("c", after=ROW), "source")), "DecodeError", "payload has no source block", id="no-source"),
    pytest.param(
        KEY,
        value(payload("c", after=ROW, src=_without(source(), "table"))),
        "DecodeError",
        "source block names no database and table",
        id="source-without-table",
    ),
    pytest.param(KEY, value(payload("x", after=ROW)), "DecodeError", "unknown op code 'x'", id="unknown-op"),
    pytest.param(
        KEY,
        value(payload("c", after={"id": 1, "x": 5}), [ID, field("x", "int64", semantic="com.example.Mystery")]),
        "DecodeError",
        "column 'x': unknown Debezium semantic type 'com.example.Mystery'",
        id="unknown-semantic-type",
    ),
    pytest.param(
        KEY,
        value(payload("c", after={"id": 1, "x": []}), [ID, field("x", "array", items={"type": "int32"})]),
        "DecodeError",
        "column 'x': unsupported Connect type 'array'",
        id="unsupported-connect-type",
    ),
    pytest.param(
        key([field("nope", "int32", optional=False)], {"nope": 1}),
        CREATE,
        "DecodeError",
        "key columns ['nope'] are not in the row schema",
        id="key-not-in-row",
    ),
    pytest.param(
        key([{"type": "int32", "optional": False}], {"id": 1}),
        CREATE,
        "DecodeError",
        "a key schema field has no name",
        id="key-field-without-name",
    ),
    pytest.param(b"{id: 1}", CREATE, "DecodeError", "key is not valid JSON", id="key-not-json"),
    pytest.param(b'{"id": 1}', CREATE, "DecodeError", "key is not a Connect JSON envelope", id="key-without-envelope"),
    pytest.param(KEY, value(payload("c", after={**ROW, "id": None})), "DecodeError", "key column 'id' is null", id="null-key-value"),
    pytest.param(KEY, value(payload("c", after={**ROW, "d": "@@@="})), "DecodeError", "column 'd': invalid base64", id="bad-base64"),
    pytest.param(
        KEY,
        value(payload("c", after={"id": 1, "x": "3q2+7w"}), [ID, field("x", "bytes")]),
        "DecodeError",
        "column 'x': invalid base64",
        id="unpadded-base64",
    ),
    pytest.param(
        KEY, value(payload("c", after={**ROW, "id": "1"})), "DecodeError", "column 'id': expected an integer, got str", id="wrong-type"
    ),
    pytest.param(
        KEY,
        value(payload("c", after={**ROW, "ts": "2026-03-29T01:30:00"})),
        "DecodeError",
        "column 'ts': ZonedTimestamp '2026-03-29T01:30:00' has no zone",
        id="zoneless-zoned-timestamp",
    ),
    pytest.param(
        KEY,
        value(payload("c", after={"id": 1, "x": "1.5"}), [ID, field("x", "bytes", semantic=DECIMAL, parameters={"scale": "x"})]),
        "DecodeError",
        "column 'x': bad decimal parameters",
        id="bad-decimal-parameters",
    ),
    pytest.param(KEY, value(payload("c", before=ROW)), "DecodeError", "op 'c' without its after image", id="create-without-after"),
    pytest.param(KEY, value(payload("d", after=ROW)), "DecodeError", "op 'd' without its before image", id="delete-without-before"),
    pytest.param(
        KEY,
        value(payload("c", after=ROW, src=_without(source(), "pos"))),
        "DecodeError",
        "source block has no usable binlog position",
        id="no-binlog-position",
    ),
    pytest.param(
        KEY,
        value(payload("c", after=ROW, src=source(file="mysql-bin"))),
        "DecodeError",
        "binlog file name 'mysql-bin' has no numeric suffix",
        id="binlog-file-without-number",
    ),
    pytest.param(
        KEY,
        value(_without(payload("c", after=ROW, src=_without(_without(source(), "ts_ms"), "ts_us")), "ts_ms")),
        "DecodeError",
        "no source timestamp",
        id="no-timestamp",
    ),
    pytest.param(
        KEY,
        value(payload("c", after={**ROW, "dt": 10**18})),
        "OverflowError",
        "out of range",
        id="timestamp-out-of-range",
    ),
]


@pytest.mark.parametrize(("k", "v", "error", "fragment"), FAILURES)
def test_bad_input_is_a_decode_failure(k: bytes | None, v: bytes, error: str, fragment: str) -> None:
    result = failure(k, v)
    assert result.error == error
    assert fragment in result.message


def test_a_failure_names_the_table_once_the_source_block_is_known() -> None:
    assert failure(KEY, value(payload("x", after=ROW))).table == TABLE
    assert failure(KEY, value(_without(payload("c", after=ROW), "source"))).table is None


def test_a_message_for_another_table_than_its_topic_is_a_failure() -> None:
    other = TableId("probe", "other")
    result = failure(KEY, CREATE, {TOPIC: other}.get)
    assert result.message == "message for probe.t on the topic of probe.other"
    assert result.table == TABLE


def test_the_topic_check_passes_for_the_right_table_and_unknown_topics() -> None:
    assert decoded(KEY, CREATE, {TOPIC: TABLE}.get).table == TABLE
    assert decoded(KEY, CREATE, {}.get).table == TABLE  # a topic the mapping does not know


# ---- properties -------------------------------------------------------------------------------------

RECORDS = (ChangeEvent, Skip, DecodeFailure)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(database=None)
@given(
    k=st.none() | st.binary(),
    v=st.none() | st.binary() | st.binary().map(lambda b: b'{"schema":' + b) | st.binary().map(lambda b: CREATE[: len(b)] + b),
)
def test_decode_never_raises_on_arbitrary_bytes(k: bytes | None, v: bytes | None) -> None:
    result = decode(k, v, COORDS)
    assert isinstance(result, RECORDS)
    assert result.coordinates == COORDS
    assert isinstance(result, Skip) == (v is None)


@settings(database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    part=st.sampled_from(["op", "source", "after", "row_field", "key_fields", "key_payload", "db", "pos", "snapshot"]),
    junk=json_values,
)
def test_decode_never_raises_on_a_realistic_message_with_one_part_replaced(part: str, junk: Any) -> None:
    body, src, fields = payload("c", after=dict(ROW)), source(), list(ROW_FIELDS)
    key_fields, key_body = [ID], {"id": 1}
    if part in ("op", "source", "after"):
        body[part] = junk
    elif part in ("db", "pos", "snapshot"):
        src[part] = junk
    elif part == "row_field":
        fields[1] = junk
    elif part == "key_fields":
        key_fields = junk
    else:
        key_body = junk
    if part != "source":
        body["source"] = src
    result = decode(key(key_fields, key_body), value(body, fields), COORDS)
    assert isinstance(result, ChangeEvent | DecodeFailure)
