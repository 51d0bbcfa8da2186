"""Ingestion of the cross-language link sources: a langlinks SQL dump per language and Wikidata JSON.

`ingest_langlinks` turns (page id, lang, title) rows into ROOT/<lang>/langlinks.tsv.gz keyed by the source page's
title (taken from the language's ingested page table); `ingest_wikidata` merges sitelinks into
ROOT/wikidata_sitelinks.jsonl.gz. Both are followed by `entities.build_entity_table`.
"""

import collections
import os
import pathlib
from typing import Iterator, Sequence

from class_jax.corpus import corpus_io, dump_reader, entities, langlinks, wiki_languages, wikidata
from class_jax.corpus.titles import normalize_title
from class_jax.runtime.errors import UserError


def _page_table(root: str | os.PathLike, lang: str) -> dict[int, tuple[str, str]]:
    path = corpus_io.language_dir(root, lang) / "pages.tsv.gz"
    if not path.is_file():
        raise UserError(f"{path}: missing; ingest the {lang!r} dump before its langlinks")
    table: dict[int, tuple[str, str]] = {}
    for row in corpus_io.read_tsv(path):
        table.setdefault(int(row["page_id"]), (row["title"], row["kind"]))  # a repeated page id: the first page
    return table


def ingest_langlinks(root: str | os.PathLike, lang: str, path: str) -> collections.Counter:
    """Reads one language's langlinks dump into ROOT/<lang>/langlinks.tsv.gz.

    Args:
      root: the corpus root, where `lang` has been ingested.
      lang: the language of the wiki the langlinks dump belongs to.
      path: the `langlinks.sql(.gz)` file.

    Returns:
      Counts: langlink_rows, langlinks (kept), and skips by reason (unknown source page id, source page is a
      redirect, unknown language code, empty title, invalid UTF-8, NULL values).

    Raises:
      UserError: the file is missing, malformed or truncated, or the language was not ingested.
    """
    dump_reader.check_input_file(path, "--langlinks")
    pages = _page_table(root, lang)
    reader = langlinks.LangLinksReader(path)
    counts: collections.Counter = collections.Counter()

    def rows() -> Iterator[tuple[str, str, str]]:
        for row in reader:
            page = pages.get(row.from_page_id)
            if page is None:
                counts["langlinks_skipped_unknown_page_id"] += 1
                continue
            title, kind = page
            if kind != "article":
                counts["langlinks_skipped_from_redirect"] += 1
                continue
            if row.lang not in wiki_languages.WIKIPEDIA_LANGUAGE_CODES:
                counts["langlinks_skipped_unknown_language"] += 1
                continue
            target = normalize_title(row.title)
            if not target:
                counts["langlinks_skipped_empty_title"] += 1
                continue
            counts["langlinks"] += 1
            yield title, row.lang, target

    corpus_io.write_tsv(corpus_io.language_dir(root, lang) / "langlinks.tsv.gz", ["title", "lang", "target_title"],
                        rows())
    counts.update(reader.counts)
    return counts


def ingest_wikidata(root: str | os.PathLike, paths: Sequence[str]) -> collections.Counter:
    """Merges the sitelinks of Wikidata JSON files into ROOT/wikidata_sitelinks.jsonl.gz.

    Entities already in the file are replaced by the newer record (same Q-id).

    Args:
      root: the corpus root.
      paths: Wikidata JSON files (API answers, single entities, the JSON dump or JSON Lines).

    Returns:
      Counts: wikidata_entities, wikidata_sitelinks and skips by reason.

    Raises:
      UserError: a file is missing or not Wikidata JSON.
    """
    counts: collections.Counter = collections.Counter()
    target = pathlib.Path(root) / entities.WIKIDATA_FILE
    merged: dict[str, dict[str, str]] = {}
    if target.is_file():
        merged = {record["id"]: record["titles"] for record in corpus_io.read_jsonl(target)}
    for path in paths:
        dump_reader.check_input_file(path, "--wikidata")
        for entity in wikidata.read_sitelinks(path, counts):
            merged[entity.entity_id] = entity.titles
    corpus_io.write_jsonl(target, ({"id": entity_id, "titles": titles}
                                   for entity_id, titles in sorted(merged.items())))
    return counts
