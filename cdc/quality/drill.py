"""Pure parts of the reconciliation: which buckets differ, and which keys (or rows) differ inside them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Aggregates = dict[int, tuple[int, int]]  # bucket or cell -> (rows, sum of row hashes)


def add(into: Aggregates, rows: Iterable[Sequence[Any]], sign: int = 1) -> Aggregates:
    """`into` plus (or minus) the (bucket, count, sum) rows of one query; empty buckets dropped."""
    for b, n, total in rows:
        count, s = into.get(int(b), (0, 0))
        into[int(b)] = (count + sign * int(n), s + sign * int(total or 0))
    return {b: v for b, v in into.items() if v != (0, 0)}


def differing(source: Mapping[int, tuple[int, int]], lake: Mapping[int, tuple[int, int]]) -> list[int]:
    """The buckets (or cells) whose count or checksum differ, in order."""
    return sorted(b for b in set(source) | set(lake) if source.get(b, (0, 0)) != lake.get(b, (0, 0)))


@dataclass(frozen=True)
class Row:
    """One row as a drill-down lists it: its identity (key text, or the row's hash without a key), its row
    hash, each compared column's canonical text, and the key columns' values."""

    ident: str
    hash: int
    texts: tuple[str | None, ...]
    key: tuple[Any, ...]


@dataclass
class KeyDiff:
    kind: str  # missing (at the source, not in the lake), extra (in the lake only), different
    key: dict[str, str | None]  # key column -> canonical text (a keyless row: every column)
    columns: list[str] = field(default_factory=list)  # the differing columns (kind "different")
    source: dict[str, str | None] | None = None
    lake: dict[str, str | None] | None = None
    values: tuple[Any, ...] = ()  # the key's values as a side read them (for `cdc repair`)


def row_of(raw: Sequence[Any], width: int) -> Row:
    """A drill-down result row: ident, hash, `width` column texts, then the key values."""
    return Row(str(raw[0]), int(raw[1]), tuple(None if v is None else _text(v) for v in raw[2:2 + width]),
               tuple(raw[2 + width:]))


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


def compare_keyed(names: Sequence[str], key: Sequence[str], source: Iterable[Row], lake: Iterable[Row],
                  skip: set[str]) -> tuple[list[KeyDiff], int]:
    """Keys missing in the lake, extra in the lake (a key held twice counts as extra), different (with the
    columns); keys in `skip` (not evaluable as of S) are left out. Also returns how many were skipped."""
    idx = [names.index(k) for k in key]
    src: dict[str, Row] = {}
    for r in source:
        src[r.ident] = r
    lake_map: dict[str, Row] = {}
    out: list[KeyDiff] = []
    skipped = {r for r in src if r in skip}

    def key_of(r: Row) -> dict[str, str | None]:
        return {k: r.texts[i] for k, i in zip(key, idx, strict=True)}

    for r in lake:
        if r.ident in skip:
            skipped.add(r.ident)
            continue
        if r.ident in lake_map:
            out.append(KeyDiff("extra", key_of(r), lake=dict(zip(names, r.texts, strict=True)), values=r.key))
            continue
        lake_map[r.ident] = r
    for ident, r in src.items():
        if ident in skip:
            continue
        other = lake_map.get(ident)
        if other is None:
            out.append(KeyDiff("missing", key_of(r), source=dict(zip(names, r.texts, strict=True)), values=r.key))
        elif other.hash != r.hash or other.texts != r.texts:
            cols = [n for n, a, b in zip(names, r.texts, other.texts, strict=True) if a != b]
            out.append(KeyDiff("different", key_of(r), cols, dict(zip(names, r.texts, strict=True)),
                               dict(zip(names, other.texts, strict=True)), values=r.key))
    for ident, r in lake_map.items():
        if ident not in src:
            out.append(KeyDiff("extra", key_of(r), lake=dict(zip(names, r.texts, strict=True)), values=r.key))
    return out, len(skipped)


def compare_multiset(names: Sequence[str], source: Iterable[Row], lake: Iterable[Row]) -> list[KeyDiff]:
    """A table without a key: each distinct row must occur as often on both sides; every surplus copy is listed."""
    src_rows = list(source)
    lake_rows = list(lake)
    texts = {r.ident: r.texts for r in [*src_rows, *lake_rows]}
    a, b = Counter(r.ident for r in src_rows), Counter(r.ident for r in lake_rows)
    out = [KeyDiff("missing", dict(zip(names, texts[i], strict=True))) for i in (a - b).elements()]
    out += [KeyDiff("extra", dict(zip(names, texts[i], strict=True))) for i in (b - a).elements()]
    return out
