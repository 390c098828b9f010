"""What a command prints, as text (Rich tables, values never read as markup) or as one JSON document.

Commands describe their result (`table`, `value`, `message`); `Output` picks the form. In JSON mode
nothing but the document goes to stdout (errors stay one line on stderr), written once by `close()`:
`{"<table name>": [{"column": value, ...}, ...], "<value name>": value, "messages": [...]}`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

Format = Literal["text", "json"]


def plain(value: Any) -> str:
    """Pure: a value as the text a table cell shows (None is empty)."""
    return "" if value is None else str(value)


class Output:
    """One command's output in the chosen format."""

    def __init__(self, fmt: Format = "text", console: Console | None = None) -> None:
        self.format: Format = fmt
        self.console = console or Console(width=None if sys.stdout.isatty() else 200)
        self._doc: dict[str, Any] = {}

    def table(self, key: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table: Rich in text mode (every cell and header plain text), a list of objects in JSON."""
        if self.format == "json":
            self._doc.setdefault(key, []).extend(dict(zip(columns, r, strict=True)) for r in rows)
            return
        t = Table(title=Text(title) if title else None, title_justify="left")
        for c in columns:
            t.add_column(Text(c))
        for r in rows:
            t.add_row(*(Text(plain(v)) for v in r))
        self.console.print(t)

    def value(self, key: str, value: Any, text: str) -> None:
        """One named value: `text` in text mode, `"key": value` in JSON."""
        if self.format == "json":
            self._doc[key] = value
        else:
            self.message(text)

    def message(self, text: str) -> None:
        """A line for people; in JSON mode it is kept under "messages"."""
        if self.format == "json":
            self._doc.setdefault("messages", []).append(text)
        else:
            self.console.print(text, markup=False, emoji=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Write the JSON document (once); nothing in text mode."""
        if self.format == "json" and self._doc is not None:
            sys.stdout.write(json.dumps(self._doc, default=str, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            self._doc = {}
            self.format = "text"
