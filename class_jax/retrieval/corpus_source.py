"""The passages of an ingested corpus as one numbered sequence of rows, for indexing and for text look-ups.

Row order is fixed: languages in the order given, then each language's `passages/passages-NNNNN.jsonl.gz` files in
name order, then lines in file order (blank lines are skipped and are not rows). Row r of an index is row r of this
sequence, so an index only needs the corpus root and the file list (with counts) to find a passage's text again.

Counts come from the ingestion's per-shard markers (`<lang>/shards/shard-NNNNN.json`, key "passages") when present,
otherwise from counting lines; either way they are checked again while streaming, so a corpus changed after
planning fails loudly instead of shifting rows.
"""

import bisect
import dataclasses
import json
import os
import pathlib
from typing import Any, Iterable, Iterator, Optional, Sequence

from class_jax.corpus import corpus_io
from class_jax.runtime.errors import UserError


@dataclasses.dataclass(frozen=True)
class PassageRecord:
    """One passage as the index needs it.

    Attributes:
      row: position in the corpus row sequence.
      passage_id: the passage's "id" field.
      title: article title.
      text: passage text.
    """

    row: int
    passage_id: str
    title: str
    text: str


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One passages file and the rows it holds.

    Attributes:
      relative_path: path below the corpus root, '/'-separated (e.g. "en/passages/passages-00000.jsonl.gz").
      lang: the language folder it belongs to.
      count: passages (non-blank lines) in the file.
      first_row: row of its first passage.
    """

    relative_path: str
    lang: str
    count: int
    first_row: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _shard_marker_count(lang_dir: pathlib.Path, passages_file: pathlib.Path) -> Optional[int]:
    """The passage count the ingestion recorded for this file, if it left a marker."""
    suffix = passages_file.name[len("passages-"):-len(".jsonl.gz")]
    marker = lang_dir / "shards" / f"shard-{suffix}.json"
    if not marker.is_file():
        return None
    try:
        with open(marker, encoding="utf-8") as f:
            return int(json.load(f).get("passages", 0))
    except (ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{marker}: unreadable shard marker ({e})") from None


def _count_records(path: pathlib.Path) -> int:
    try:
        with corpus_io.open_text(path) as lines:
            return sum(1 for line in lines if line.strip())
    except (EOFError, OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None


def _validated(record: Any, path: pathlib.Path, line_number: int, row: int) -> PassageRecord:
    where = f"{path}: line {line_number}"
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object with id, title and text")
    for field in ("id", "title", "text"):
        if field not in record:
            raise UserError(f"{where}: missing field {field!r}")
        if not isinstance(record[field], str):
            raise UserError(f"{where}: field {field!r} must be a string")
    passage_id = record["id"]
    if not passage_id or any(c in passage_id for c in "\n\r"):
        raise UserError(f"{where}: 'id' must be a non-empty string without line breaks, got {passage_id!r}")
    return PassageRecord(row=row, passage_id=passage_id, title=record["title"], text=record["text"])


class CorpusSource:
    """The passages of some languages of an ingested corpus, as rows [0, num_rows)."""

    def __init__(self, root: str | os.PathLike, files: Sequence[SourceFile]):
        """Wraps an already planned file list (use `plan` to build one from a corpus root)."""
        self.root = pathlib.Path(root).absolute()
        self.files = tuple(files)
        self.num_rows = sum(f.count for f in self.files)

    @classmethod
    def plan(cls, root: str | os.PathLike, langs: Optional[Sequence[str]] = None) -> "CorpusSource":
        """Lists the passages files of `langs` (default: every ingested language) with their counts.

        Raises:
          UserError: the root is missing, a language was not ingested, or there are no passages at all.
        """
        root = pathlib.Path(root).absolute()
        if not root.is_dir():
            raise UserError(f"{root}: corpus directory does not exist")
        langs = list(langs) if langs else corpus_io.corpus_languages(root)
        if not langs:
            raise UserError(f"{root}: no ingested language (no <lang>/manifest.json); run `class-jax ingest` first")
        if len(set(langs)) != len(langs):
            raise UserError(f"languages given more than once: {langs}")
        files, row = [], 0
        for lang in langs:
            lang_dir = corpus_io.language_dir(root, lang)
            if not (lang_dir / "manifest.json").is_file():
                raise UserError(f"{lang_dir}: {lang!r} was not (completely) ingested (manifest.json missing)")
            for path in sorted((lang_dir / "passages").glob("passages-*.jsonl.gz")):
                count = _shard_marker_count(lang_dir, path)
                count = _count_records(path) if count is None else count
                files.append(SourceFile(path.relative_to(root).as_posix(), lang, count, row))
                row += count
        if row == 0:
            raise UserError(f"{root}: no passages in {', '.join(langs)} (empty corpus)")
        return cls(root, files)

    def to_json(self) -> list[dict[str, Any]]:
        """The file list, stored in an index manifest."""
        return [f.to_json() for f in self.files]

    @classmethod
    def from_json(cls, root: str | os.PathLike, files: Iterable[dict[str, Any]]) -> "CorpusSource":
        """Rebuilds a source from `to_json` output (the corpus itself is read lazily)."""
        return cls(root, [SourceFile(**f) for f in files])

    def _records(self, source: SourceFile, wanted: Optional[set[int]] = None,
                 start: int = 0) -> Iterator[PassageRecord]:
        """Records of one file from its row `start` on (only rows in `wanted` are parsed and yielded if given)."""
        path = self.root / source.relative_path
        seen = 0
        try:
            with corpus_io.open_text(path) as lines:
                for line_number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    row = source.first_row + seen
                    seen += 1
                    if seen > source.count:
                        break
                    if row < start or (wanted is not None and row not in wanted):
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise UserError(f"{path}: line {line_number}: not valid JSON ({e.msg})") from None
                    yield _validated(record, path, line_number, row)
        except FileNotFoundError:
            raise UserError(f"{path}: missing (the corpus changed since it was planned)") from None
        except (EOFError, OSError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: unreadable after {seen} passages ({e})") from None
        if seen != source.count:
            found = f"more than {source.count}" if seen > source.count else str(seen)
            raise UserError(f"{path}: has {found} passages, {source.count} were planned (the corpus changed "
                            "since, or its shard marker is wrong)")

    def iter_rows(self, start: int, stop: int) -> Iterator[PassageRecord]:
        """Streams rows [start, stop) in order.

        Raises:
          UserError: a line is malformed (named by file and line) or a file changed since planning.
        """
        for source in self.files:
            if source.first_row + source.count <= start or source.first_row >= stop:
                continue
            for record in self._records(source, start=start):
                if record.row >= stop:
                    break
                yield record

    def fetch(self, rows: Iterable[int]) -> dict[int, PassageRecord]:
        """The records of the given rows (each needed file is read once; other lines are not parsed).

        Raises:
          UserError: a row is out of range, a line is malformed, or a file changed since planning.
        """
        wanted = set(int(r) for r in rows)
        if wanted and (min(wanted) < 0 or max(wanted) >= self.num_rows):
            raise UserError(f"rows outside [0, {self.num_rows}) asked from corpus {self.root}")
        ordered = sorted(wanted)
        found: dict[int, PassageRecord] = {}
        for source in self.files:
            first = bisect.bisect_left(ordered, source.first_row)
            if first < len(ordered) and ordered[first] < source.first_row + source.count:
                found.update((r.row, r) for r in self._records(source, wanted))
        return found
