"""The bootstrap's chunk SELECTs (keyset pagination over the primary key), pure."""

from __future__ import annotations

from cdc.bootstrap.snapshot import chunk_query, key_position_expr
from cdc.bootstrap.source_schema import SourceColumn
from cdc.events.model import TableId

T = TableId("shop", "t")


def col(name: str, data_type: str, column_type: str | None = None) -> SourceColumn:
    return SourceColumn(name, data_type, column_type or data_type, False)


def test_an_int_key_compares_and_carries_its_own_value() -> None:
    columns = [col("id", "int"), col("note", "varchar", "varchar(10)")]
    q = chunk_query(T, columns, ["id"], 1000)
    assert q.first == "SELECT `id`, `note` FROM `shop`.`t` ORDER BY `id` LIMIT 1000"
    assert q.next == "SELECT `id`, `note` FROM `shop`.`t` WHERE (`id`) > (%s) ORDER BY `id` LIMIT 1000"
    assert (q.width, q.positions) == (2, (0,))


def test_enum_and_set_key_parts_are_compared_and_carried_as_numbers() -> None:
    columns = [
        col("v", "int"),
        col("region", "enum", "enum('west','east')"),
        col("id", "bigint"),
        col("tags", "set", "set('b','a')"),
    ]
    q = chunk_query(T, columns, ["region", "tags", "id"], 5000)
    # the row keeps the label and the member list; the numbers follow as extra columns
    select = "SELECT `v`, `region`, `id`, CAST(`tags` AS CHAR), `region`+0, `tags`+0 FROM `shop`.`t`"
    # ordered by the columns (the index order, which for ENUM/SET is their number), compared as numbers
    assert q.first == f"{select} ORDER BY `region`, `tags`, `id` LIMIT 5000"
    assert q.next == f"{select} WHERE (`region`+0, `tags`+0, `id`) > (%s, %s, %s) ORDER BY `region`, `tags`, `id` LIMIT 5000"
    assert q.width == 4
    assert q.positions == (4, 5, 2)


def test_position_expressions_by_type() -> None:
    assert key_position_expr(col("e", "ENUM", "enum('x')")) == "`e`+0"
    assert key_position_expr(col("s", "set", "set('x')")) == "`s`+0"
    # a BIT key is read (and carried) as its integer, which compares with the column as a number
    for data_type in ("bit", "decimal", "datetime", "timestamp", "varchar", "varbinary", "int"):
        assert key_position_expr(col("k", data_type)) is None
    bit = chunk_query(T, [col("b", "bit", "bit(12)")], ["b"], 1000)
    assert bit.next == "SELECT CAST(`b` AS UNSIGNED) FROM `shop`.`t` WHERE (`b`) > (%s) ORDER BY `b` LIMIT 1000"
    assert bit.positions == (0,)


def test_identifiers_are_quoted() -> None:
    q = chunk_query(TableId("d`b", "t"), [col("we`ird", "enum", "enum('x')")], ["we`ird"], 1000)
    assert q.next == ("SELECT `we``ird`, `we``ird`+0 FROM `d``b`.`t` WHERE (`we``ird`+0) > (%s) "
                      "ORDER BY `we``ird` LIMIT 1000")
