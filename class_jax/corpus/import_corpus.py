"""Imports a published passage file (DPR `psgs_w100.tsv`, CORA `all_w100.tsv`) as a corpus directory.

The output is the passages part of the format `class-jax ingest` writes (`corpus_io`): per language
`<lang>/passages/passages-NNNNN.jsonl.gz` with `{"id", "lang", "title", "text", "links": []}` records, a shard marker
`<lang>/shards/shard-NNNNN.json` (`{"passages": n}`) per file, and `<lang>/manifest.json` last. That is all
`CorpusSource` (index, retrieve, refresh) and `build-fid` (`corpus_io.iter_passages`) read. There are no articles,
links, pages or entity table, so an imported corpus cannot be mined (docs/data_formats.md, "Imported corpora").

Reading follows the authors' loaders: `csv.reader(delimiter='\\t')` (fields may be double-quoted with `""` escapes
and hold tabs and newlines inside quotes), rows whose first field is `id` are skipped as headers, ids are kept
exactly as published, and CORA titles are NFC-normalised (`unicodedata.normalize('NFC', title)`) as the CORA / CLASS
code does for `all_w100.tsv`. `iter_passage_file` streams a file's passages read and checked the same way, without
writing anything (`build-fid` reads the release's `psgs_w100.tsv` with it: class_jax/fid/release_formats.py).

Sharding and resumption: input records (data rows after the header, bad ones included) are cut into chunks of
`rows_per_shard`; chunk i writes `passages-{i:05d}.jsonl.gz` in every language it holds, then the sorted 64-bit hashes
of its ids (`.import/ids-{i:05d}.npy`), then its marker `.import/chunk-{i:05d}.json` (counts, and the input's
decompressed byte offset and line after the chunk). A rerun with the same input and settings reloads the hashes of
the completed chunks, seeks past them and goes on; `import_report.json`, written last, marks the import complete.

Duplicate ids: exact within a chunk (a dict), and across chunks by 64-bit BLAKE2b hashes of the ids kept in memory
as sorted numpy arrays merged like an LSM tree: 8 bytes per passage (350 MB for CORA's 43.6M), plus as much again
for a moment while the two largest arrays merge. A hash collision would report a false duplicate; for 43.6M ids
its probability is about 5e-5.
"""

import collections
import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shutil
import unicodedata
from typing import Any, Callable, Iterator, Optional

import numpy as np

from class_jax.corpus import corpus_io, dump_reader, ingest
from class_jax.runtime.errors import UserError

FORMATS = ("dpr", "cora")
IMPORT_STATE = "import_state.json"
IMPORT_REPORT = "import_report.json"
WORK_DIR = ".import"
# Ids of 100k rows take under a second to hash and check; 43.6M CORA rows then make 436 files per run.
DEFAULT_ROWS_PER_SHARD = 100_000
_BATCH_ROWS = 4096  # rows checked against earlier chunks' hashes in one vectorised call
_MAX_EXAMPLES = 20
_HEAD_BYTES = 1 << 20
_LANG_CODE = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)*$")
# A language prefix of a CORA-style id: "ar_12345" or "ar-12345".
_ID_LANG_PREFIX = re.compile(r"^([a-z]{2,3})[_-].")
_SURROGATE = re.compile("[\udc80-\udcff]")  # what surrogateescape decoding makes of bytes invalid in UTF-8
_COLUMNS = ("id", "text", "title")
# The skip reasons, in report order.
BAD_ROW_KINDS = ("undecodable", "csv", "columns", "empty_id", "bad_id", "empty_text", "no_language", "bad_language",
                 "duplicate_id")


@dataclasses.dataclass(frozen=True)
class ImportSettings:
    """What the output depends on besides the input; part of the resume fingerprint.

    Attributes:
      format: "dpr" or "cora".
      skip_bad_rows: skip and count bad rows instead of stopping at the first.
      lang: language of rows the file does not label (DPR: default "en"; CORA: rows with neither a `lang` column
        nor a language prefix in their id).
      rows_per_shard: input records per output shard (the unit of resumption).
    """

    format: str
    skip_bad_rows: bool = False
    lang: Optional[str] = None
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD


class _BadRow(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _IdHashes:
    """A set of 64-bit id hashes as a few sorted arrays (each at most half the size of the one before)."""

    def __init__(self):
        self._levels: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(level) for level in self._levels)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), dtype=bool)
        for level in self._levels:
            positions = np.minimum(np.searchsorted(level, hashes), len(level) - 1)
            found |= level[positions] == hashes
        return found

    def add_sorted(self, hashes: np.ndarray) -> None:
        if not len(hashes):
            return
        self._levels.append(hashes)
        # Merging while the newer array is at least half the older keeps O(log n) arrays and O(n log n) work.
        while len(self._levels) > 1 and 2 * len(self._levels[-1]) >= len(self._levels[-2]):
            newer = self._levels.pop()
            # Stable sort of two sorted runs is a linear merge (timsort).
            self._levels[-1] = np.sort(np.concatenate([self._levels[-1], newer]), kind="stable")


def id_hash(passage_id: str) -> int:
    """The 64-bit hash used for duplicate detection."""
    return int.from_bytes(hashlib.blake2b(passage_id.encode("utf-8"), digest_size=8).digest(), "little")


class _Lines:
    """The decompressed input as decoded physical lines (ending in "\\n"), counting lines and bytes consumed.

    Bytes invalid in UTF-8 are decoded with surrogateescape, so the csv reader sees them and the row holding them
    is found (and named) afterwards.
    """

    def __init__(self, stream, offset: int, line: int):
        self._stream = stream
        self.offset = offset
        self.line = line
        self.undecodable_lines = 0  # so rows are searched for escaped bytes only when a line had some

    def __iter__(self) -> Iterator[str]:
        for raw in self._stream:
            if self.offset == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw_text = raw[3:]
            else:
                raw_text = raw
            self.offset += len(raw)
            self.line += 1
            try:
                yield raw_text.decode("utf-8")
            except UnicodeDecodeError:
                self.undecodable_lines += 1
                yield raw_text.decode("utf-8", "surrogateescape")


class _ChunkWriter:
    """The files of one chunk, one passages file per language, committed together (marker last) or not at all."""

    def __init__(self, root: pathlib.Path, chunk: int):
        self.root = root
        self.chunk = chunk
        self.name = f"{chunk:05d}"
        self.counts: collections.Counter = collections.Counter()
        self._stack = contextlib.ExitStack()
        self._files: dict[str, Any] = {}
        self._hashes: list[int] = []

    def add(self, lang: str, record: dict[str, Any], hash_value: int) -> None:
        out = self._files.get(lang)
        if out is None:
            path = corpus_io.language_dir(self.root, lang) / "passages" / f"passages-{self.name}.jsonl.gz"
            out = self._files[lang] = self._stack.enter_context(corpus_io.atomic_write(path))
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.counts[lang] += 1
        self._hashes.append(hash_value)

    def commit(self, marker: dict[str, Any]) -> np.ndarray:
        """Renames the passages files into place, writes their shard markers, the id hashes and the chunk marker.

        Returns:
          The chunk's sorted id hashes.
        """
        self._stack.close()
        for lang, count in sorted(self.counts.items()):
            corpus_io.write_json(corpus_io.language_dir(self.root, lang) / "shards" / f"shard-{self.name}.json",
                                 {"passages": count})
        hashes = np.sort(np.asarray(self._hashes, dtype=np.uint64))
        with corpus_io.atomic_write(self.root / WORK_DIR / f"ids-{self.name}.npy", "wb") as out:
            np.save(out, hashes)
        corpus_io.write_json(self.root / WORK_DIR / f"chunk-{self.name}.json", marker)
        return hashes

    def abort(self) -> None:
        """Drops the chunk's temporary files (called while an exception propagates)."""
        error = RuntimeError(f"chunk {self.chunk} aborted")
        self._stack.__exit__(RuntimeError, error, None)


class _RowParser:
    """Turns the csv fields of one row of a DPR / CORA file into a passage record (`CorpusImporter` and
    `iter_passage_file` read rows the same way).

    Args:
      input_path: the file, for messages.
      settings: its format and default language.
    """

    def __init__(self, input_path: str, settings: ImportSettings):
        self.input_path = input_path
        self.settings = settings
        self.default_lang = settings.lang or ("en" if settings.format == "dpr" else None)

    def default_columns(self, row: list[str]) -> tuple[str, ...]:
        """The columns of a file without a header, from its first data row."""
        return _COLUMNS + (("lang",) if self.settings.format == "cora" and len(row) == 4 else ())

    def header_columns(self, row: list[str], line: int) -> tuple[str, ...]:
        """The column names a header row gives.

        Raises:
          UserError: the header does not name the columns of the format (file and line).
        """
        allowed = _COLUMNS + (("lang",) if self.settings.format == "cora" else ())
        if len(set(row)) != len(row) or not set(_COLUMNS) <= set(row) or not set(row) <= set(allowed):
            raise UserError(f"{self.input_path}: line {line}: header {row!r}: expected the columns "
                            f"{', '.join(allowed)} (lang optional, cora only)")
        return tuple(row)

    def parse(self, row: list[str], columns: tuple[str, ...], undecodable: bool) -> tuple[dict[str, Any], str]:
        """The passage record and language of a data row.

        Args:
          row: the csv fields.
          columns: the column names.
          undecodable: a line of the row held bytes invalid in UTF-8 (escaped as lone surrogates).

        Raises:
          _BadRow: the row is malformed.
        """
        if undecodable and any(_SURROGATE.search(field) for field in row):
            raise _BadRow("undecodable", "bytes that are not valid UTF-8")
        if len(row) != len(columns):
            raise _BadRow("columns", f"{len(row)} fields, expected {len(columns)} ({', '.join(columns)})")
        fields = dict(zip(columns, row))
        passage_id, text, title = fields["id"], fields["text"], fields["title"]
        if not passage_id.strip():
            raise _BadRow("empty_id", "empty id")
        if "\n" in passage_id or "\r" in passage_id:
            raise _BadRow("bad_id", f"id {passage_id!r} contains a line break")
        if not text.strip():
            raise _BadRow("empty_text", f"passage {passage_id!r}: empty text")
        if self.settings.format == "cora":
            title = unicodedata.normalize("NFC", title)
        lang = self.language(passage_id, fields.get("lang"))
        return {"id": passage_id, "lang": lang, "title": title, "text": text, "links": []}, lang

    def language(self, passage_id: str, column: Optional[str]) -> str:
        """The language of a row: its `lang` column, else its id's prefix, else the default (see ImportSettings).

        Raises:
          _BadRow: a malformed `lang`, or no language at all.
        """
        if self.settings.format == "dpr":
            return self.default_lang
        if column is not None:
            if not _LANG_CODE.match(column):
                raise _BadRow("bad_language", f"passage {passage_id!r}: lang {column!r} is not a language code")
            return column
        prefix = _ID_LANG_PREFIX.match(passage_id)
        if prefix:
            return prefix.group(1)
        if self.default_lang is None:
            raise _BadRow("no_language", f"passage {passage_id!r}: no lang column, no language prefix in the id "
                                         "(like ar_123) and no --lang")
        return self.default_lang


def _csv_rows(lines: _Lines) -> Iterator[tuple[int, Optional[list[str]], Optional[_BadRow], bool]]:
    """The rows of a tab-separated file as the authors' loaders read it (`csv.reader(delimiter='\\t')`).

    Yields:
      (the row's first line, its fields or None when the csv module cannot read it, that error, whether a line
      of the row held bytes invalid in UTF-8). Blank lines come as empty field lists. `lines.line` and
      `lines.offset` stand just past the row when it is yielded.
    """
    reader = csv.reader(lines, delimiter="\t")
    while True:
        start_line = lines.line + 1
        undecodable_before = lines.undecodable_lines
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start_line, None, _BadRow("csv", f"not readable as a tab-separated row ({e})"), False
            continue
        yield start_line, row, None, lines.undecodable_lines != undecodable_before


def iter_passage_file(input_path: str, settings: ImportSettings) -> Iterator[tuple[int, dict[str, Any]]]:
    """Streams the passages of a DPR / CORA file in file order, read and checked exactly as `import-corpus` does.

    Header rows and blank lines are skipped. Ids are not checked for repeats here (the importer does that across
    its shards); a caller keeping some passages checks its own.

    Args:
      input_path: the `.tsv` file (plain, `.gz` or `.bz2`, recognised by their magic bytes).
      settings: the format and default language (`skip_bad_rows` and `rows_per_shard` are not used: the first bad
        row stops the reading).

    Yields:
      (the row's first line, its record {"id", "lang", "title", "text", "links": []}).

    Raises:
      UserError: the file cannot be read, or a bad row (wrong field count, empty id or text, bytes that are not
        UTF-8, ...), naming the file and the line.
    """
    dump_reader.check_input_file(input_path)
    parser = _RowParser(input_path, settings)
    stream, raw = dump_reader.open_compressed(input_path)
    lines = _Lines(stream, 0, 0)
    columns: Optional[tuple[str, ...]] = None
    with raw, stream:
        try:
            for start_line, row, error, undecodable in _csv_rows(lines):
                if row is not None:
                    if not row:
                        continue
                    if row[0] == "id":
                        columns = columns or parser.header_columns(row, start_line)
                        continue
                    columns = columns or parser.default_columns(row)
                    try:
                        record, _ = parser.parse(row, columns, undecodable)
                    except _BadRow as bad:
                        error = bad
                if error is not None:
                    raise UserError(f"{input_path}: line {start_line}: {error}")
                yield start_line, record
        except dump_reader.DECOMPRESSION_ERRORS as e:
            raise UserError(f"{input_path}: unreadable after line {lines.line}: {e}") from None


def _fingerprint(input_path: str, settings: ImportSettings) -> dict[str, Any]:
    with open(input_path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    return {"format": settings.format, "input_bytes": os.path.getsize(input_path),
            "input_head_sha256": hashlib.sha256(head).hexdigest(), "skip_bad_rows": settings.skip_bad_rows,
            "lang": settings.lang, "rows_per_shard": settings.rows_per_shard,
            "format_version": corpus_io.FORMAT_VERSION}


class CorpusImporter:
    """Imports one passage file into a corpus root (see the module docstring).

    Args:
      input_path: the `.tsv` file (plain, `.gz` or `.bz2`; compression is recognised by its magic bytes).
      root: the output corpus root; must be empty, missing, or an earlier import of the same input and settings.
      settings: see `ImportSettings`.
      progress: show a tqdm bar.
    """

    def __init__(self, input_path: str, root: str | os.PathLike, settings: ImportSettings, progress: bool = False):
        if settings.format not in FORMATS:
            raise UserError(f"--format {settings.format!r}: expected one of {', '.join(FORMATS)}")
        if settings.rows_per_shard < 1:
            raise UserError(f"--rows_per_shard must be at least 1, got {settings.rows_per_shard}")
        if settings.lang is not None and not _LANG_CODE.match(settings.lang):
            raise UserError(f"--lang {settings.lang!r} is not a language code")
        dump_reader.check_input_file(input_path, "--input")
        self.input_path = input_path
        self.root = pathlib.Path(root)
        self.settings = settings
        self.progress = progress
        self.fingerprint = _fingerprint(input_path, settings)
        self._parser = _RowParser(input_path, settings)

    # -- orchestration -------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Runs (or resumes, or finds complete) the import.

        Returns:
          The report (also in ROOT/import_report.json), with `already_complete` true when nothing had to be done.

        Raises:
          UserError: bad input (naming file and line) unless skipped, or an output directory holding something else.
        """
        self._claim_output()
        report_path = self.root / IMPORT_REPORT
        if report_path.is_file():
            with open(report_path, encoding="utf-8") as f:
                return dict(json.load(f), already_complete=True)
        corpus_io.remove_partial_files(self.root)
        corpus_io.write_json(self.root / IMPORT_STATE, {**self.fingerprint, "input": os.path.abspath(self.input_path)})
        markers = self._completed_chunks()
        hashes = _IdHashes()
        for chunk in range(len(markers)):
            path = self.root / WORK_DIR / f"ids-{chunk:05d}.npy"
            try:
                hashes.add_sorted(np.load(path))
            except (OSError, ValueError) as e:
                raise UserError(f"{path}: unreadable resume file ({e}); delete {self.root} and import again") from None
        new_markers = self._import(markers, hashes)
        report = self._finish(markers + new_markers, resumed=len(markers))
        for path in (self.root / WORK_DIR).glob("ids-*.npy"):
            path.unlink()  # only needed to resume; the complete import is never resumed
        return dict(report, already_complete=False)

    def _claim_output(self) -> None:
        """Refuses an output that is a file, holds something else, or an import of another input or settings."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--out {self.root}: exists and is not a directory")
        state_path = self.root / IMPORT_STATE
        if state_path.is_file():
            try:
                with open(state_path, encoding="utf-8") as f:
                    recorded = json.load(f)
            except (OSError, ValueError) as e:
                raise UserError(f"{state_path}: unreadable ({e})") from None
            differing = sorted(key for key in self.fingerprint if recorded.get(key) != self.fingerprint[key])
            if differing and not (self.root / WORK_DIR / "chunk-00000.json").is_file():
                # Nothing was completed (e.g. the first run stopped at a bad row): start again with the new flags.
                # Everything in the folder is ours: it was empty when the first run claimed it.
                for child in self.root.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            elif differing:
                raise UserError(f"--out {self.root}: holds an import of {recorded.get('input')!r} with other input or "
                                f"settings ({', '.join(differing)} differ); use an empty directory")
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise UserError(f"--out {self.root}: not empty and not an import-corpus output; use an empty directory")

    def _completed_chunks(self) -> list[dict[str, Any]]:
        """Markers of the chunks 0..k-1 an earlier run completed (a gap ends the prefix)."""
        markers = []
        while True:
            path = self.root / WORK_DIR / f"chunk-{len(markers):05d}.json"
            if not path.is_file():
                return markers
            with open(path, encoding="utf-8") as f:
                markers.append(json.load(f))

    def _finish(self, markers: list[dict[str, Any]], resumed: int) -> dict[str, Any]:
        """Writes every language's manifest, then the report (which marks the import complete)."""
        by_lang: collections.Counter = collections.Counter()
        skipped: collections.Counter = collections.Counter()
        header_rows = blank_lines = 0
        examples: list[dict[str, Any]] = []
        shards: dict[str, list[str]] = collections.defaultdict(list)
        for marker in markers:
            for lang, count in marker["passages"].items():
                by_lang[lang] += count
                shards[lang].append(f"shard-{marker['chunk']:05d}.json")
            skipped.update(marker["skipped"])
            header_rows += marker["header_rows"]
            blank_lines += marker["blank_lines"]
            examples += marker["skipped_examples"][:_MAX_EXAMPLES - len(examples)]
        if not by_lang:
            raise UserError(f"{self.input_path}: no passages imported (empty file, or every row was skipped)")
        for lang in sorted(by_lang):
            corpus_io.write_json(corpus_io.language_dir(self.root, lang) / "manifest.json", {
                "source": "import-corpus", "format": self.settings.format, "lang": lang,
                "input": os.path.abspath(self.input_path), "input_bytes": self.fingerprint["input_bytes"],
                "format_version": corpus_io.FORMAT_VERSION, "counts": {"passages": by_lang[lang]},
                "has_articles": False, "has_links": False, "shards": shards[lang],
            })
        report = {
            "format": self.settings.format, "input": os.path.abspath(self.input_path),
            "settings": dataclasses.asdict(self.settings),
            "records": sum(marker["records"] for marker in markers), "passages": sum(by_lang.values()),
            "passages_by_lang": dict(sorted(by_lang.items())), "header_rows": header_rows,
            "blank_lines": blank_lines, "skipped": {kind: skipped[kind] for kind in BAD_ROW_KINDS if skipped[kind]},
            "skipped_total": sum(skipped.values()), "skipped_examples": examples, "shards": len(markers),
            "resumed_shards": resumed,
        }
        corpus_io.write_json(self.root / IMPORT_REPORT, report)
        return report

    # -- reading -------------------------------------------------------------------------------------------------

    def _import(self, done: list[dict[str, Any]], hashes: _IdHashes) -> list[dict[str, Any]]:
        """Reads the input from the end of the last completed chunk and writes the remaining chunks."""
        offset = done[-1]["end_offset"] if done else 0
        line = done[-1]["end_line"] if done else 0
        columns = tuple(done[-1]["columns"]) if done and done[-1]["columns"] else None
        stream, raw = dump_reader.open_compressed(self.input_path)
        bar = ingest.ByteProgress(self.progress, os.path.getsize(self.input_path), "import-corpus")
        markers: list[dict[str, Any]] = []
        lines = _Lines(stream, offset, line)
        try:
            try:
                if offset:
                    stream.seek(offset)  # gzip and bz2 decompress up to it: still far cheaper than parsing
                bar.update_to(raw.tell())
                chunk = _ChunkState(len(done), lines.line, lines.offset, columns)
                for state in self._rows(lines, chunk, hashes, bar, raw.tell):
                    markers.append(state)
            except dump_reader.DECOMPRESSION_ERRORS as e:
                raise UserError(f"{self.input_path}: unreadable after line {lines.line}: {e}") from None
        finally:
            bar.close()
            stream.close()
            if raw is not stream:
                raw.close()
        return markers

    def _rows(self, lines: _Lines, chunk: "_ChunkState", hashes: _IdHashes, bar: ingest.ByteProgress,
              position: Callable[[], int]) -> Iterator[dict[str, Any]]:
        """Parses rows chunk by chunk; yields each committed chunk's marker."""
        writer: Optional[_ChunkWriter] = None
        pending: list[tuple[int, dict[str, Any], str, int]] = []
        seen_in_chunk: dict[str, int] = {}

        def flush() -> None:
            """Writes the pending rows that are not duplicates of an earlier chunk's or this chunk's ids."""
            nonlocal writer
            if not pending:
                return
            earlier = hashes.contains(np.asarray([item[3] for item in pending], dtype=np.uint64))
            for (start_line, record, lang, hash_value), duplicate in zip(pending, earlier):
                passage_id = record["id"]
                if duplicate or passage_id in seen_in_chunk:
                    where = (f"line {seen_in_chunk[passage_id]}" if passage_id in seen_in_chunk
                             else "an earlier line")
                    self._bad(chunk, start_line, _BadRow("duplicate_id",
                                                         f"duplicate id {passage_id!r} (first seen on {where})"))
                    continue
                seen_in_chunk[passage_id] = start_line
                if writer is None:
                    writer = _ChunkWriter(self.root, chunk.index)
                writer.add(lang, record, hash_value)
            pending.clear()

        def commit() -> dict[str, Any]:
            nonlocal writer
            flush()
            marker = chunk.marker(lines.offset, lines.line, writer.counts if writer else {})
            if writer is not None:
                hashes.add_sorted(writer.commit(marker))
            else:
                corpus_io.write_json(self.root / WORK_DIR / f"chunk-{chunk.index:05d}.json", marker)
            writer = None
            seen_in_chunk.clear()
            return marker

        try:
            for start_line, row, error, undecodable in _csv_rows(lines):
                if row is not None and not row:
                    chunk.blank_lines += 1
                    continue
                if row is not None and row[0] == "id":
                    # As DPR's and CORA's loaders do, any row whose first field is "id" is a header.
                    chunk.header_rows += 1
                    if chunk.columns is None:
                        chunk.columns = self._parser.header_columns(row, start_line)
                    continue
                if row is not None:
                    if chunk.columns is None:
                        chunk.columns = self._parser.default_columns(row)
                    try:
                        record, lang = self._parser.parse(row, chunk.columns, undecodable)
                    except _BadRow as bad:
                        error = bad
                chunk.records += 1
                if error is not None:
                    self._bad(chunk, start_line, error)
                else:
                    pending.append((start_line, record, lang, id_hash(record["id"])))
                    if len(pending) >= _BATCH_ROWS:
                        flush()
                if chunk.records % 1024 == 0:
                    bar.update_to(position())
                if chunk.records == self.settings.rows_per_shard:
                    yield commit()
                    chunk = chunk.next(lines.line, lines.offset)
            if chunk.records or chunk.header_rows or chunk.blank_lines:
                yield commit()
            bar.update_to(position())
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

    def _bad(self, chunk: "_ChunkState", line: int, error: _BadRow) -> None:
        message = f"{self.input_path}: line {line}: {error}"
        if not self.settings.skip_bad_rows:
            raise UserError(f"{message} (pass --skip_bad_rows to skip and count such rows)")
        chunk.skipped[error.kind] += 1
        if len(chunk.examples) < _MAX_EXAMPLES:
            chunk.examples.append({"line": line, "kind": error.kind, "message": str(error)})


@dataclasses.dataclass
class _ChunkState:
    """Counts of the chunk being read."""

    index: int
    start_line: int
    start_offset: int
    columns: Optional[tuple[str, ...]]
    records: int = 0
    header_rows: int = 0
    blank_lines: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: list = dataclasses.field(default_factory=list)

    def marker(self, end_offset: int, end_line: int, passages: dict[str, int]) -> dict[str, Any]:
        return {"chunk": self.index, "start_line": self.start_line, "end_line": end_line,
                "start_offset": self.start_offset, "end_offset": end_offset,
                "columns": list(self.columns) if self.columns else None, "records": self.records,
                "header_rows": self.header_rows, "blank_lines": self.blank_lines,
                "passages": dict(sorted(passages.items())), "skipped": dict(self.skipped),
                "skipped_examples": self.examples}

    def next(self, line: int, offset: int) -> "_ChunkState":
        return _ChunkState(self.index + 1, line, offset, self.columns)
