"""The DDL history: Debezium's schema-change events (`include.schema.changes`, topic `<prefix>`), read
for what row events cannot say: that a column was renamed (not dropped and another added), and at
which source position a table's schema changed.

Parsing is pure (`parse_alter`, `decode_schema_change`); `DdlHistory` reads the topic.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from cdc.config import Settings
from cdc.errors import ServiceError
from cdc.events.model import TableId
from cdc.events.position import STREAM, BinlogPosition, binlog_file_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchemaChange:
    """One ALTER of one table at its binlog position."""

    table: TableId
    seq: int
    ddl: str


# ---- tokens of a MariaDB statement ------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z0-9_$\u0080-\uffff]+")


def _tokens(sql: str) -> Iterator[tuple[str, str]]:
    """(kind, text): kind is `id` (a backtick identifier, unquoted), `word`, `str`, `(`, `)`, `,` or `op`."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif sql.startswith("--", i) or ch == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch == "`":
            out, i = [], i + 1
            while i < n:
                if sql[i] == "`":
                    if sql.startswith("``", i):
                        out.append("`")
                        i += 2
                        continue
                    break
                out.append(sql[i])
                i += 1
            i += 1
            yield "id", "".join(out)
        elif ch in "'\"":
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" else 1
            yield "str", sql[i : j + 1]
            i = j + 1
        elif ch in "(),":
            yield ch, ch
            i += 1
        else:
            m = _WORD.match(sql, i)
            if m:
                yield "word", m.group(0)
                i = m.end()
            else:
                yield "op", ch
                i += 1


def _specs(sql: str) -> list[list[tuple[str, str]]]:
    """The comma-separated specifications of an ALTER TABLE, after its table name."""
    toks = list(_tokens(sql))
    words = [t.upper() for k, t in toks[:8] if k == "word"]
    if not words or words[0] != "ALTER" or "TABLE" not in words:
        return []
    i = next(j for j, (k, t) in enumerate(toks) if k == "word" and t.upper() == "TABLE") + 1
    if i + 1 < len(toks) and toks[i][1].upper() == "IF" and toks[i + 1][1].upper() == "EXISTS":
        i += 2
    # the table name: name, or db . name
    i += 1
    if i + 1 < len(toks) and toks[i] == ("op", "."):
        i += 2
    if i < len(toks) and toks[i][1].upper() == "NOWAIT":
        i += 1
    elif i + 1 < len(toks) and toks[i][1].upper() == "WAIT":
        i += 2
    specs: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for kind, text in toks[i:]:
        if kind == "(":
            depth += 1
        elif kind == ")":
            depth -= 1
        if kind == "," and depth == 0:
            specs.append([])
        else:
            specs[-1].append((kind, text))
    return [s for s in specs if s]


def _name(tok: tuple[str, str]) -> str | None:
    kind, text = tok
    return text if kind in ("id", "word") else None


@dataclass(frozen=True)
class Alter:
    """What one ALTER TABLE does to columns, in order: renames (old, new), added and dropped names."""

    renames: tuple[tuple[str, str], ...] = ()
    added: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    volatile: tuple[str, ...] = ()  # added with a DEFAULT that is not a constant (CURRENT_TIMESTAMP, an expression)
    redefined: tuple[str, ...] = ()  # MODIFY, CHANGE to the same name, ALTER COLUMN ... SET/DROP DEFAULT


_NUMBER = re.compile(r"\d+(\.\d*)?([eE]\d+)?")


def _constant_default(definition: list[tuple[str, str]]) -> bool:
    """Pure: whether a column definition's DEFAULT (if any) is a constant: a string, a number, NULL, TRUE/FALSE."""
    words = [t.upper() if k == "word" else t for k, t in definition]
    if "DEFAULT" not in words:
        return True
    after = definition[words.index("DEFAULT") + 1:]
    if after and after[0] == ("op", "-"):
        after = after[1:]
    if not after:
        return False
    kind, text = after[0]
    if kind == "str" or (kind == "word" and (text.upper() in ("NULL", "TRUE", "FALSE") or _NUMBER.fullmatch(text))):
        return True
    return kind == "word" and text.lower() in ("b", "x", "_binary", "_utf8mb4", "_latin1") and len(after) > 1 and after[1][0] == "str"


_NOT_COLUMNS = frozenset({"INDEX", "KEY", "CONSTRAINT", "PRIMARY", "UNIQUE", "FULLTEXT", "SPATIAL", "FOREIGN", "PERIOD",
                          "SYSTEM", "PARTITION", "CHECK"})


def _skip_if(spec: list[tuple[str, str]], words: tuple[str, ...]) -> list[tuple[str, str]]:
    upper = [t.upper() for _, t in spec[: len(words)]]
    return spec[len(words):] if tuple(upper) == words else spec


def parse_alter(sql: str) -> Alter:
    """Pure: the column renames, additions and drops of one ALTER TABLE statement:
    `RENAME COLUMN a TO b`, `CHANGE [COLUMN] [IF EXISTS] a b <definition>`,
    `ADD [COLUMN] [IF NOT EXISTS] a <definition>` or `ADD [COLUMN] (a ..., b ...)`, `DROP [COLUMN] [IF EXISTS] a`."""
    renames: list[tuple[str, str]] = []
    added: list[str] = []
    dropped: list[str] = []
    volatile: list[str] = []
    redefined: list[str] = []
    for spec in _specs(sql):
        head = spec[0][1].upper() if spec[0][0] == "word" else ""
        rest = spec[1:]
        if head == "RENAME" and rest and rest[0][1].upper() == "COLUMN":
            rest = _skip_if(rest[1:], ("IF", "EXISTS"))
            if len(rest) >= 3 and rest[1][0] == "word" and rest[1][1].upper() == "TO":
                old, new = _name(rest[0]), _name(rest[2])
                if old and new:
                    renames.append((old, new))
        elif head == "CHANGE":
            rest = _skip_if(_skip_if(rest, ("COLUMN",)), ("IF", "EXISTS"))
            if len(rest) >= 2:
                old, new = _name(rest[0]), _name(rest[1])
                if old and new and old != new:
                    renames.append((old, new))
                elif old:
                    redefined.append(old)
        elif head == "MODIFY":
            rest = _skip_if(_skip_if(rest, ("COLUMN",)), ("IF", "EXISTS"))
            if rest and _name(rest[0]):
                redefined.append(rest[0][1])
        elif head == "ALTER":
            rest = _skip_if(rest, ("COLUMN",))
            if rest and _name(rest[0]):
                redefined.append(rest[0][1])
        elif head == "ADD" and rest and not (rest[0][0] == "word" and rest[0][1].upper() in _NOT_COLUMNS):
            rest = _skip_if(_skip_if(rest, ("COLUMN",)), ("IF", "NOT", "EXISTS"))
            if rest and rest[0][0] == "(":  # ADD COLUMN (a INT, b INT): each definition starts after ( or ,
                depth, expect = 0, True
                for kind, text in rest:
                    if kind == "(":
                        depth += 1
                        expect = depth == 1
                        continue
                    if kind == ")":
                        depth -= 1
                    elif kind == "," and depth == 1:
                        expect = True
                        continue
                    elif expect and depth == 1 and _name((kind, text)):
                        added.append(text)
                    expect = False
                if not _constant_default(rest):
                    volatile.extend(added)  # one of the list's DEFAULTs is not a constant: all are suspect
            elif rest and _name(rest[0]):
                added.append(rest[0][1])
                if not _constant_default(rest[1:]):
                    volatile.append(rest[0][1])
        elif head == "DROP" and rest and not (rest[0][0] == "word" and rest[0][1].upper() in _NOT_COLUMNS):
            rest = _skip_if(_skip_if(rest, ("COLUMN",)), ("IF", "EXISTS"))
            if rest and _name(rest[0]):
                dropped.append(rest[0][1])
    return Alter(tuple(renames), tuple(added), tuple(dropped), tuple(volatile), tuple(redefined))


_QUOTED_ID = re.compile(r'^"((?:[^"]|"")*)"\."((?:[^"]|"")*)"$')


def decode_schema_change(value: bytes | None) -> list[SchemaChange]:
    """Pure: the ALTERs one schema-change message records (Connect JSON with or without schemas); [] for
    anything else (snapshot DDL, CREATE/DROP, other messages)."""
    if not value:
        return []
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return []
    payload: Any = doc.get("payload", doc) if isinstance(doc, dict) else None
    if not isinstance(payload, dict):
        return []
    source, ddl, changes = payload.get("source"), payload.get("ddl"), payload.get("tableChanges")
    if not isinstance(source, dict) or not isinstance(ddl, str) or not isinstance(changes, list):
        return []
    if str(source.get("snapshot", "false")) not in ("false", "None", ""):
        return []
    try:
        seq = BinlogPosition(STREAM, binlog_file_index(str(source["file"])), int(source["pos"]), 0).pack()
    except (KeyError, TypeError, ValueError):
        return []
    out: list[SchemaChange] = []
    for change in changes:
        if not isinstance(change, dict) or change.get("type") != "ALTER":
            continue
        m = _QUOTED_ID.match(str(change.get("id", "")))
        if m:
            out.append(SchemaChange(TableId(m.group(1).replace('""', '"'), m.group(2).replace('""', '"')), seq, ddl))
    return out


class DdlHistory:
    """The schema-change topic, read from its start once and then incrementally (no consumer group)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.connect.topic_prefix
        self._next: dict[int, int] = {}
        self._changes: dict[TableId, list[SchemaChange]] = {}
        self._consumer: Consumer | None = None

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer({**self.settings.kafka.client_config(), "group.id": f"cdc-ddl-{uuid.uuid4().hex[:8]}",
                                       "enable.auto.commit": False, "allow.auto.create.topics": False,
                                       "logger": logging.getLogger("cdc.librdkafka")})
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def refresh(self) -> None:
        """Read what was added to the topic since the last read (one long-lived client, no consumer group)."""
        try:
            consumer = self._client()
            meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is None or meta.error is not None:
                return
            ends = {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1] for p in meta.partitions}
            todo = {p: high for p, high in ends.items() if self._next.get(p, 0) < high}
            if not todo:
                return
            consumer.assign([TopicPartition(self.topic, p, self._next.get(p, 0)) for p in todo])
            deadline = time.monotonic() + 60
            while todo and time.monotonic() < deadline:
                for msg in consumer.consume(500, timeout=1.0):
                    if msg.error() is not None:
                        continue
                    p, o = msg.partition(), msg.offset()
                    if p is None or o is None:
                        continue
                    self._next[p] = o + 1
                    for change in decode_schema_change(msg.value()):
                        self._changes.setdefault(change.table, []).append(change)
                    if o + 1 >= todo.get(p, 0):
                        todo.pop(p, None)
            consumer.unassign()
        except Exception as exc:  # noqa: BLE001 - librdkafka raises KafkaException and RuntimeError alike
            self.close()
            raise ServiceError(f"cannot read the schema-change topic {self.topic}: {exc}") from exc

    def changes(self, table: TableId, after: int, upto: int, refresh: bool = True) -> list[SchemaChange]:
        """The table's ALTERs with `after < seq <= upto`, in source order (read up to the topic's end first,
        unless `refresh` is off: the caller read it for this batch already)."""
        if refresh:
            self.refresh()
        found = [c for c in self._changes.get(table, []) if after < c.seq <= upto]
        return sorted(found, key=lambda c: c.seq)
