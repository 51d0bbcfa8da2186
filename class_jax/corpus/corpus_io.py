"""On-disk corpus format: gzip JSON Lines shards and small TSV tables, written atomically.

Layout of an ingested corpus root (`class-jax ingest --out ROOT`):

    ROOT/entities.jsonl.gz                  {"id", "titles": {lang: title}}  (cross-language entity table)
    ROOT/wikidata_sitelinks.jsonl.gz        {"id", "titles"}  (sitelinks of --wikidata files, merged)
    ROOT/<lang>/manifest.json               counts, settings, shard list; written last (= language complete)
    ROOT/<lang>/pages.tsv.gz                page_id  title  kind  ordinal  (kind: article | redirect;
                                            ordinal: 0-based position of the page in the dump)
    ROOT/<lang>/redirects.tsv.gz            title  target  resolved  (resolved: final title, "" for loops)
    ROOT/<lang>/langlinks.tsv.gz            title  lang  target_title   (from --langlinks)
    ROOT/<lang>/inline_langlinks.tsv.gz     title  lang  target_title   (legacy [[xx:Title]] links in wikitext)
    ROOT/<lang>/articles/articles-NNNNN.jsonl.gz
        {"lang", "page_id", "title", "text", "links": [{"start", "end", "anchor", "target"}],
         "is_disambiguation", "is_list"}
    ROOT/<lang>/passages/passages-NNNNN.jsonl.gz
        {"id", "lang", "title", "text", "links": [{"start", "end", "anchor", "target"}]}
    ROOT/<lang>/shards/shard-NNNNN.json     per-shard counts; its presence marks the shard complete
    ROOT/<lang>/pass1.json, ingest_state.json   resume bookkeeping (pass-1 counts; dump and settings fingerprint)

All TSV files have a header line; titles are normalised (spaces, first letter upper-cased). Link spans are
character offsets into "text" with text[start:end] == anchor. Passage ids are "{lang}:{page_id}:{index}";
passage text is a slice of the article text with newlines turned into spaces. Read with `iter_articles`,
`iter_passages`, `read_tsv`, `entities.EntityTable.from_corpus`.

Every file is written to a temporary name in the same folder and renamed into place, so a killed writer never
leaves a half file under a final name. gzip headers carry no timestamp, so equal data gives equal bytes.
"""

import contextlib
import csv
import gzip
import io
import json
import os
import pathlib
from typing import Any, Iterable, Iterator

from class_jax.corpus.types import Article, Link, Passage
from class_jax.runtime.errors import UserError

FORMAT_VERSION = 1
_TEMP_SUFFIX = ".partial"
# gzip level of every `.gz` file written here. Level 1 because, on ingest's output, it compresses 3.8x faster than
# level 6 for files 17% larger, and at level 6 compression is about a tenth of `class-jax ingest`'s CPU time
# (bench/RESULTS.md, "Measurements the code relies on"). Readers accept any level.
GZIP_LEVEL = 1


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wt") -> Iterator[io.IOBase]:
    """Opens a file for writing that appears under `path` only when the block completes without error.

    `.gz` paths are gzip-compressed (without a timestamp, for reproducible bytes).

    Args:
      path: the final file name.
      mode: "wt" (text, UTF-8) or "wb".

    Yields:
      The file object to write to.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}{_TEMP_SUFFIX}")
    try:
        with open(temporary, "wb") as raw:
            with contextlib.ExitStack() as layers:
                stream: io.IOBase = raw
                if path.suffix == ".gz":
                    stream = layers.enter_context(
                        gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0))
                if "b" not in mode:
                    text = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
                    # Detach rather than close, so closing the text layer never closes the layers below it.
                    layers.callback(text.detach)
                    layers.callback(text.flush)
                    stream = text
                yield stream
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def remove_partial_files(folder: str | os.PathLike) -> int:
    """Deletes temporary files left by killed writers under `folder`; returns how many."""
    removed = 0
    for partial in pathlib.Path(folder).rglob(f"*{_TEMP_SUFFIX}"):
        partial.unlink()
        removed += 1
    return removed


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Opens a (possibly gzip-compressed) UTF-8 text file for reading."""
    path = pathlib.Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return open(path, "rt", encoding="utf-8", newline="\n")


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Writes JSON Lines atomically; returns the number of records."""
    count = 0
    with atomic_write(path) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Reads JSON Lines (gzip or plain).

    Raises:
      UserError: a line is not valid JSON, or the file is truncated.
    """
    with open_text(path) as lines:
        line_number = 0
        try:
            for line_number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}: line {line_number}: not valid JSON ({e.msg})") from None
        except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:
            raise UserError(f"{path}: unreadable after line {line_number}: {e}") from None


def write_tsv(path: str | os.PathLike, header: list[str], rows: Iterable[Iterable[Any]]) -> int:
    """Writes a tab-separated table with a header line atomically; returns the number of rows.

    Raises:
      ValueError: a value contains a tab or newline (titles never do).
    """
    count = 0
    with atomic_write(path) as out:
        out.write("\t".join(header) + "\n")
        for row in rows:
            values = ["" if value is None else str(value) for value in row]
            if any("\t" in value or "\n" in value for value in values):
                raise ValueError(f"{path}: a value contains a tab or newline: {values!r}")
            out.write("\t".join(values) + "\n")
            count += 1
    return count


def read_tsv(path: str | os.PathLike) -> Iterator[dict[str, str]]:
    """Reads a table written by `write_tsv` as dicts keyed by the header.

    Raises:
      UserError: a row has the wrong number of fields.
    """
    with open_text(path) as lines:
        header = lines.readline().rstrip("\n").split("\t")
        for line_number, line in enumerate(lines, start=2):
            values = line.rstrip("\n").split("\t")
            if len(values) != len(header):
                raise UserError(f"{path}: line {line_number}: {len(values)} fields, expected {len(header)}")
            yield dict(zip(header, values))


def _links_to_json(links: Iterable[Link]) -> list[dict[str, Any]]:
    return [{"start": link.start, "end": link.end, "anchor": link.anchor, "target": link.target}
            for link in links]


def _links_from_json(records: list[dict[str, Any]]) -> tuple[Link, ...]:
    return tuple(Link(start=r["start"], end=r["end"], anchor=r["anchor"], target=r["target"]) for r in records)


def article_to_json(article: Article) -> dict[str, Any]:
    """The JSON record of an article (field names as in `Article`)."""
    return {"lang": article.lang, "page_id": article.page_id, "title": article.title, "text": article.text,
            "links": _links_to_json(article.links), "is_disambiguation": article.is_disambiguation,
            "is_list": article.is_list}


def article_from_json(record: dict[str, Any]) -> Article:
    """Rebuilds an `Article` from its JSON record."""
    return Article(lang=record["lang"], page_id=int(record["page_id"]), title=record["title"],
                   text=record["text"], links=_links_from_json(record.get("links", [])),
                   is_disambiguation=bool(record.get("is_disambiguation", False)),
                   is_list=bool(record.get("is_list", False)))


def passage_to_json(passage: Passage) -> dict[str, Any]:
    """The JSON record of a passage ("id" holds `passage_id`, as in DPR files)."""
    return {"id": passage.passage_id, "lang": passage.lang, "title": passage.title, "text": passage.text,
            "links": _links_to_json(passage.links)}


def passage_from_json(record: dict[str, Any]) -> Passage:
    """Rebuilds a `Passage` from its JSON record."""
    return Passage(passage_id=record["id"], lang=record["lang"], title=record["title"], text=record["text"],
                   links=_links_from_json(record.get("links", [])))


def language_dir(root: str | os.PathLike, lang: str) -> pathlib.Path:
    """The folder of one language inside a corpus root."""
    return pathlib.Path(root) / lang


def corpus_languages(root: str | os.PathLike) -> list[str]:
    """Languages whose ingestion completed (their manifest exists), sorted."""
    root = pathlib.Path(root)
    if not root.is_dir():
        return []
    return sorted(child.name for child in root.iterdir() if (child / "manifest.json").is_file())


def _shard_files(root: str | os.PathLike, lang: str, kind: str) -> list[pathlib.Path]:
    folder = language_dir(root, lang) / kind
    if not (language_dir(root, lang) / "manifest.json").is_file():
        raise UserError(f"{language_dir(root, lang)}: no completed ingestion of {lang!r} "
                        "(manifest.json missing); run `class-jax ingest` first")
    return sorted(folder.glob(f"{kind}-*.jsonl.gz"))


def iter_articles(root: str | os.PathLike, lang: str) -> Iterator[Article]:
    """Streams the articles of one language of an ingested corpus, in dump order.

    Raises:
      UserError: the language was not (completely) ingested under `root`.
    """
    for path in _shard_files(root, lang, "articles"):
        for record in read_jsonl(path):
            yield article_from_json(record)


def iter_passages(root: str | os.PathLike, lang: str) -> Iterator[Passage]:
    """Streams the passages of one language of an ingested corpus, in dump order.

    Raises:
      UserError: the language was not (completely) ingested under `root`.
    """
    for path in _shard_files(root, lang, "passages"):
        for record in read_jsonl(path):
            yield passage_from_json(record)


def write_dpr_tsv(path: str | os.PathLike, passages: Iterable[Passage]) -> int:
    """Writes passages in DPR's `psgs_w100.tsv` layout (`id\\ttext\\ttitle`, header line, csv-quoted).

    Args:
      path: output file (`.tsv` or `.tsv.gz`).
      passages: the passages.

    Returns:
      The number of passages written.
    """
    count = 0
    with atomic_write(path) as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        for passage in passages:
            writer.writerow([passage.passage_id, passage.text, passage.title])
            count += 1
    return count


def read_manifest(root: str | os.PathLike, lang: str) -> dict[str, Any]:
    """The manifest of one ingested language (counts and settings).

    Raises:
      UserError: the language was not (completely) ingested.
    """
    path = language_dir(root, lang) / "manifest.json"
    if not path.is_file():
        raise UserError(f"{path}: missing; {lang!r} was not ingested (completely) under {root}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Writes a JSON document atomically (pretty-printed, UTF-8)."""
    with atomic_write(path) as out:
        json.dump(value, out, ensure_ascii=False, indent=2, sort_keys=True)
        out.write("\n")
