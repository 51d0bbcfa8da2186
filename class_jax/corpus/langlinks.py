"""Reader of MediaWiki `langlinks.sql(.gz)` dumps: `INSERT INTO `langlinks` VALUES (...),(...);`.

The dump is a mysqldump script. Rows are (ll_from page id, ll_lang language code, ll_title title in that
language); column order is taken from the `CREATE TABLE` statement when present. Strings use MySQL escaping
(`\\'`, `\\\\`, `\\n`, ... and doubled quotes) and are UTF-8 bytes; one INSERT holds thousands of rows. The reader
streams statement by statement; malformed SQL raises a `UserError` with line and column, rows whose strings are
not valid UTF-8 are skipped and counted.
"""

import collections
import dataclasses
import re
from typing import Iterator

from class_jax.corpus import dump_reader
from class_jax.runtime.errors import UserError

_FAST_ROW = re.compile(rb"\((-?\d+),'((?:[^'\\]|\\.)*)','((?:[^'\\]|\\.)*)'\)", re.DOTALL)
_VALUE = re.compile(rb"\s*('(?:[^'\\]|\\.|'')*'|NULL|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*", re.DOTALL)
_INSERT = re.compile(rb"INSERT\s+(?:IGNORE\s+)?INTO\s+`?(\w+)`?\s*(?:\(([^)]*)\)\s*)?VALUES\s*", re.IGNORECASE)
_CREATE = re.compile(rb"CREATE\s+TABLE\s+`?(\w+)`?", re.IGNORECASE)
_COLUMN = re.compile(rb"^\s*`(\w+)`\s+\w+")
_ESCAPES = {b"0": b"\0", b"'": b"'", b'"': b'"', b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t",
            b"Z": b"\x1a", b"\\": b"\\", b"%": b"\\%", b"_": b"\\_"}
_ESCAPE = re.compile(rb"\\(.)|''", re.DOTALL)
_DEFAULT_COLUMNS = ("ll_from", "ll_lang", "ll_title")
_SPACE = re.compile(rb"[ \t\r\n]*")


@dataclasses.dataclass(frozen=True)
class LangLink:
    """One row of the langlinks table.

    Attributes:
      from_page_id: page id in the dump's own wiki.
      lang: language code of the linked wiki.
      title: title of the linked page in that wiki, as stored (spaces, not underscores).
    """

    from_page_id: int
    lang: str
    title: str


def _unescape(raw: bytes) -> bytes:
    return _ESCAPE.sub(lambda m: b"'" if m.group(0) == b"''" else _ESCAPES.get(m.group(1), m.group(1)), raw)


def _decode_value(token: bytes) -> bytes | None:
    if token == b"NULL":
        return None
    if token.startswith(b"'"):
        return _unescape(token[1:-1])
    return token


class LangLinksReader:
    """Streams the rows of a langlinks SQL dump.

    Args:
      path: `*-langlinks.sql` or `*-langlinks.sql.gz` (compression detected by magic bytes).
      table: the table whose INSERT statements are read.

    Attributes:
      counts: rows read (`langlink_rows`) and rows skipped by reason (`langlink_skipped_invalid_utf8`,
        `langlink_skipped_bad_page_id`, `langlink_skipped_null`).
    """

    def __init__(self, path: str, table: str = "langlinks"):
        self.path = path
        self.table = table.encode()
        self.columns: tuple[str, ...] = _DEFAULT_COLUMNS
        self.counts: collections.Counter = collections.Counter()

    def __iter__(self) -> Iterator[LangLink]:
        stream, raw = dump_reader.open_compressed(self.path)
        with raw, stream:
            line_number = 0
            creating = False
            create_columns: list[str] = []
            table_seen = False
            try:
                for line_number, line in enumerate(stream, start=1):
                    if creating:
                        column = _COLUMN.match(line)
                        if column:
                            create_columns.append(column.group(1).decode())
                        if line.lstrip().startswith(b")"):
                            creating = False
                            if {"ll_from", "ll_lang", "ll_title"} <= set(create_columns):
                                self.columns = tuple(create_columns)
                        continue
                    create = _CREATE.match(line)
                    if create and create.group(1) == self.table:
                        creating, create_columns, table_seen = True, [], True
                        continue
                    insert = _INSERT.match(line)
                    if insert and insert.group(1) == self.table:
                        table_seen = True
                        if insert.group(2):
                            self.columns = tuple(c.strip(b" `").decode() for c in insert.group(2).split(b","))
                        yield from self._rows(line, insert.end(), line_number)
            except dump_reader.DECOMPRESSION_ERRORS as e:
                raise UserError(f"{self.path}: line {line_number + 1}: the file is truncated or corrupt: "
                                f"{e}") from None
            if not table_seen:
                # An empty file, random bytes or another table's dump must not pass for an empty link table (a
                # real dump of a wiki without langlinks still has the CREATE TABLE statement).
                table = self.table.decode()
                found = "the file is empty" if line_number == 0 else (
                    f"no `CREATE TABLE` or `INSERT INTO` statement for `{table}` in its {line_number} lines")
                raise UserError(f"{self.path}: not a `{table}` SQL dump ({found})")

    def _rows(self, line: bytes, position: int, line_number: int) -> Iterator[LangLink]:
        """Parses the `(...),(...);` list of one INSERT statement."""
        column_index = {name: index for index, name in enumerate(self.columns)}
        fast = self.columns[:3] == _DEFAULT_COLUMNS and len(self.columns) == 3
        end = len(line.rstrip())
        while True:
            match = _FAST_ROW.match(line, position) if fast else None
            if match:
                values: list[bytes | None] = [match.group(1), _unescape(match.group(2)), _unescape(match.group(3))]
                position = match.end()
            else:
                values, position = self._generic_row(line, position, line_number)
            if len(values) != len(self.columns):
                raise self._error(line_number, position, f"{len(values)} values for {len(self.columns)} columns")
            row = self._make_row(values, column_index)
            if row is not None:
                yield row
            position = _SPACE.match(line, position).end()
            if position < end and line[position:position + 1] == b",":
                position = _SPACE.match(line, position + 1).end()
                continue
            if line[position:end] == b";":
                return
            if position >= end:
                raise self._error(line_number, position, "ends without ';' (truncated statement?)")
            raise self._error(line_number, position, f"expected ',' or ';' but found {line[position:position + 20]!r}")

    def _generic_row(self, line: bytes, position: int, line_number: int) -> tuple[list[bytes | None], int]:
        if line[position:position + 1] != b"(":
            raise self._error(line_number, position, f"expected '(' but found {line[position:position + 20]!r}")
        position += 1
        values: list[bytes | None] = []
        while True:
            match = _VALUE.match(line, position)
            if not match:
                raise self._error(line_number, position, f"unreadable value {line[position:position + 20]!r}")
            values.append(_decode_value(match.group(1)))
            position = match.end()
            separator = line[position:position + 1]
            position += 1
            if separator == b")":
                return values, position
            if not separator.strip():
                raise self._error(line_number, position - 1, "ends without ';' (truncated statement?)")
            if separator != b",":
                raise self._error(line_number, position - 1,
                                  f"expected ',' or ')' but found {line[position - 1:position + 19]!r}")

    def _make_row(self, values: list[bytes | None], column_index: dict[str, int]) -> LangLink | None:
        page_id, lang, title = (values[column_index[name]] for name in _DEFAULT_COLUMNS)
        self.counts["langlink_rows"] += 1
        if page_id is None or lang is None or title is None:
            self.counts["langlink_skipped_null"] += 1
            return None
        try:
            page_number = int(page_id)
        except ValueError:
            self.counts["langlink_skipped_bad_page_id"] += 1
            return None
        try:
            return LangLink(page_number, lang.decode("utf-8"), title.decode("utf-8"))
        except UnicodeDecodeError:
            self.counts["langlink_skipped_invalid_utf8"] += 1
            return None

    def _error(self, line_number: int, position: int, problem: str) -> UserError:
        return UserError(f"{self.path}: line {line_number}, column {position + 1}: malformed INSERT: {problem}")
