"""Wikidata entities -> Wikipedia sitelinks (the titles of one entity in each language edition).

Accepted inputs (plain, .gz or .bz2):
  * the `wbgetentities` API answer `{"entities": {"Q1": {...}, ...}}`;
  * one entity object `{"id": "Q1", "sitelinks": {...}, ...}`;
  * the full JSON dump (`latest-all.json`): a `[` line, one entity per line followed by `,`, a `]` line;
  * JSON Lines, one entity per line.
The dump forms are streamed line by line; the API form is small and read whole.
"""

import collections
import dataclasses
import json
from typing import Any, Iterator

from class_jax.corpus import dump_reader, wiki_languages
from class_jax.runtime.errors import UserError

# Wikimedia sites named "...wiki" that are not language editions of Wikipedia.
_NON_WIKIPEDIA_SITES = frozenset({
    "commonswiki", "specieswiki", "metawiki", "mediawikiwiki", "wikidatawiki", "sourceswiki", "incubatorwiki",
    "foundationwiki", "outreachwiki", "wikimaniawiki", "testwiki", "test2wiki", "testwikidatawiki",
    "wikifunctionswiki", "nostalgiawiki", "tenwiki", "beta_wikiversitywiki",
})


@dataclasses.dataclass(frozen=True)
class EntitySitelinks:
    """The Wikipedia titles of one Wikidata entity.

    Attributes:
      entity_id: the Q-id.
      titles: language code -> page title.
    """

    entity_id: str
    titles: dict[str, str]


def site_language(site: str) -> str | None:
    """The Wikipedia language code of a sitelink site id ("enwiki" -> "en", "zh_min_nanwiki" -> "zh-min-nan").

    Returns:
      The code, or None for sites that are not Wikipedia language editions (Commons, Wikiquote, ...).
    """
    if site in _NON_WIKIPEDIA_SITES or not site.endswith("wiki"):
        return None
    code = site[: -len("wiki")].replace("_", "-")
    return code if code in wiki_languages.WIKIPEDIA_LANGUAGE_CODES else None


def _entity_document(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Reads a single-document file (an API answer or one entity); these are small, so it is read whole."""
    stream, raw = dump_reader.open_compressed(path)
    with raw, stream:
        try:
            content = stream.read()
        except dump_reader.DECOMPRESSION_ERRORS as e:
            raise UserError(f"{path}: the file is truncated or corrupt: {e}") from None
    if not content.strip():
        raise UserError(f"{path}: the file is empty")
    try:
        document = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
    entities = document.get("entities") if isinstance(document, dict) else None
    if isinstance(entities, dict):
        for entity in entities.values():
            yield 1, entity
    elif isinstance(document, list):
        for entity in document:
            yield 1, entity
    else:
        yield 1, document


def _entity_lines(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Streams a line-based dump without loading it whole."""
    stream, raw = dump_reader.open_compressed(path)
    with raw, stream:
        line_number = 0
        try:
            for line_number, raw_line in enumerate(stream, start=1):
                line = raw_line.decode("utf-8").strip().rstrip(",")
                if not line or line in ("[", "]"):
                    continue
                try:
                    yield line_number, json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}: line {line_number}: not a JSON entity ({e.msg})") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: line {line_number}: invalid UTF-8 ({e.reason})") from None
        except dump_reader.DECOMPRESSION_ERRORS as e:
            raise UserError(f"{path}: line {line_number + 1}: the file is truncated or corrupt: {e}") from None


def read_sitelinks(path: str, counts: collections.Counter | None = None) -> Iterator[EntitySitelinks]:
    """Streams the Wikipedia sitelinks of every entity in a Wikidata JSON file.

    Args:
      path: the file (any of the accepted forms).
      counts: receives `wikidata_entities`, `wikidata_sitelinks` and skips by reason
        (`wikidata_skipped_no_sitelinks`, `wikidata_skipped_other_sites`, `wikidata_skipped_not_entity`,
        `wikidata_skipped_invalid_title`).

    Yields:
      One record per entity that has at least one Wikipedia sitelink.

    Raises:
      UserError: the file is unreadable or not JSON.
    """
    counts = counts if counts is not None else collections.Counter()
    stream, raw = dump_reader.open_compressed(path)
    with raw, stream:
        try:
            first_line = stream.readline().strip()
        except dump_reader.DECOMPRESSION_ERRORS as e:
            raise UserError(f"{path}: line 1: the file is truncated or corrupt: {e}") from None
    # A dump opens with "[" on its own line, JSON Lines with a complete entity; anything else is one document.
    line_based = first_line == b"[" or (first_line.startswith(b"{") and first_line.rstrip(b",").endswith(b"}")
                                        and _is_json(first_line.rstrip(b",")))
    records = _entity_lines(path) if line_based else _entity_document(path)
    for line_number, entity in _expand_api_answers(records):
        if not isinstance(entity, dict) or "id" not in entity or _has_lone_surrogate(str(entity["id"])):
            counts["wikidata_skipped_not_entity"] += 1
            continue
        counts["wikidata_entities"] += 1
        sitelinks = entity.get("sitelinks") or {}
        if not isinstance(sitelinks, dict):
            raise UserError(f"{path}: line {line_number}: entity {entity['id']}: 'sitelinks' is not an object")
        titles: dict[str, str] = {}
        for site, link in sitelinks.items():
            lang = site_language(site)
            title = link.get("title") if isinstance(link, dict) else None
            if lang is None or not title:
                counts["wikidata_skipped_other_sites"] += 1
                continue
            if not isinstance(title, str) or _has_lone_surrogate(title):
                # JSON can spell a lone surrogate (`"\\ud800"`); no wiki has such a title, and no file can hold it.
                counts["wikidata_skipped_invalid_title"] += 1
                continue
            titles[lang] = title
        if not titles:
            counts["wikidata_skipped_no_sitelinks"] += 1
            continue
        counts["wikidata_sitelinks"] += len(titles)
        yield EntitySitelinks(entity_id=str(entity["id"]), titles=titles)


def _expand_api_answers(records: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """Unpacks `{"entities": {...}}` answers met on one line (an API answer saved without line breaks)."""
    for line_number, record in records:
        entities = record.get("entities") if isinstance(record, dict) else None
        if isinstance(entities, dict):
            for entity in entities.values():
                yield line_number, entity
        else:
            yield line_number, record


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
