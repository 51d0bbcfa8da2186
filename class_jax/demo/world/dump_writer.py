"""Writers of the real Wikimedia dump formats: `pages-articles` XML (export 0.10) and `langlinks.sql`.

Used by the demo wiki generator and by tests that need small dumps; the output is read back by the same readers
as real dumps (`dump_reader`, `langlinks`). Output is deterministic: no timestamps from the clock, bz2/gzip
streams without file times.
"""

import bz2
import contextlib
import dataclasses
import hashlib
import os
import pathlib
from typing import BinaryIO, Iterable, Iterator, Sequence
from xml.sax import saxutils

from class_jax.corpus import corpus_io

_EXPORT_NAMESPACE = "http://www.mediawiki.org/xml/export-0.10/"
# Canonical namespace numbers written into <siteinfo>, with the localised names taken from the language.
_SITE_NAMESPACES = (-2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
_ROWS_PER_INSERT = 500


@dataclasses.dataclass(frozen=True)
class DumpPage:
    """One page to write.

    Attributes:
      page_id: `<id>`.
      title: full title, with the localised namespace prefix for non-main pages.
      namespace: `<ns>`.
      text: wikitext.
      redirect: the redirect target (also written as `<redirect title=...>`), or None.
    """

    page_id: int
    title: str
    namespace: int
    text: str
    redirect: str | None = None


class _Bz2Writer:
    """Compresses what is written to it into an underlying binary file."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._compressor = bz2.BZ2Compressor(9)

    def write(self, data: bytes) -> int:
        self._out.write(self._compressor.compress(data))
        return len(data)

    def finish(self) -> None:
        self._out.write(self._compressor.flush())


@contextlib.contextmanager
def _open_output(path: pathlib.Path) -> Iterator[BinaryIO]:
    """An atomic binary writer that compresses by suffix (.bz2 here, .gz by `atomic_write`) or writes plain."""
    with corpus_io.atomic_write(path, "wb") as out:
        if path.suffix == ".bz2":
            writer = _Bz2Writer(out)
            yield writer  # type: ignore[misc]
            writer.finish()
        else:
            yield out


def _revision_id(page: DumpPage) -> int:
    digest = hashlib.sha1(f"{page.page_id}:{page.title}".encode()).digest()
    return 100000000 + int.from_bytes(digest[:4], "big") % 900000000


def _sha1_base36(text: str) -> str:
    number = int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest(), "big")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, remainder = divmod(number, 36)
        out = digits[remainder] + out
    return out.rjust(31, "0")


def write_pages_xml(path: str | os.PathLike, lang: str, pages: Iterable[DumpPage],
                    namespace_names: dict[int, str], timestamp: str = "2024-01-01T00:00:00Z") -> int:
    """Writes a MediaWiki `pages-articles` XML dump.

    Args:
      path: output file; `.bz2` and `.gz` suffixes compress.
      lang: the wiki's language code (dbname `{lang}wiki`).
      pages: the pages, in order.
      namespace_names: localised namespace names by number (missing ones get the canonical English name).
      timestamp: the revision timestamp written for every page.

    Returns:
      The number of pages written.
    """
    canonical = {-2: "Media", -1: "Special", 0: "", 1: "Talk", 2: "User", 3: "User talk", 4: "Wikipedia",
                 5: "Wikipedia talk", 6: "File", 7: "File talk", 8: "MediaWiki", 9: "MediaWiki talk",
                 10: "Template", 11: "Template talk", 12: "Help", 13: "Help talk", 14: "Category",
                 15: "Category talk"}
    escape = saxutils.escape
    count = 0
    with _open_output(pathlib.Path(path)) as out:
        def emit(text: str) -> None:
            out.write(text.encode("utf-8"))

        emit(f'<mediawiki xmlns="{_EXPORT_NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
             f'xsi:schemaLocation="{_EXPORT_NAMESPACE} http://www.mediawiki.org/xml/export-0.10.xsd" '
             f'version="0.10" xml:lang="{lang}">\n')
        emit(f"  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>{lang.replace('-', '_')}wiki</dbname>\n"
             f"    <base>https://{lang}.wikipedia.org/wiki/Main_Page</base>\n"
             f"    <generator>MediaWiki 1.42.0-wmf.1</generator>\n    <case>first-letter</case>\n"
             f"    <namespaces>\n")
        for number in _SITE_NAMESPACES:
            name = namespace_names.get(number, canonical[number])
            if name:
                emit(f'      <namespace key="{number}" case="first-letter">{escape(name)}</namespace>\n')
            else:
                emit(f'      <namespace key="{number}" case="first-letter" />\n')
        emit("    </namespaces>\n  </siteinfo>\n")
        for page in pages:
            emit(f"  <page>\n    <title>{escape(page.title)}</title>\n    <ns>{page.namespace}</ns>\n"
                 f"    <id>{page.page_id}</id>\n")
            if page.redirect is not None:
                emit(f"    <redirect title={saxutils.quoteattr(page.redirect)} />\n")
            emit(f"    <revision>\n      <id>{_revision_id(page)}</id>\n      <timestamp>{timestamp}</timestamp>\n"
                 f"      <contributor>\n        <username>DemoBot</username>\n        <id>1</id>\n"
                 f"      </contributor>\n      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
                 f'      <text bytes="{len(page.text.encode("utf-8"))}" xml:space="preserve">'
                 f"{escape(page.text)}</text>\n      <sha1>{_sha1_base36(page.text)}</sha1>\n"
                 f"    </revision>\n  </page>\n")
            count += 1
        emit("</mediawiki>\n")
    return count


def sql_quote(value: str) -> str:
    """A MySQL string literal with mysqldump's backslash escaping."""
    escaped = (value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\0", "\\0").replace("\x1a", "\\Z"))
    return f"'{escaped}'"


def write_langlinks_sql(path: str | os.PathLike, lang: str, rows: Sequence[tuple[int, str, str]]) -> int:
    """Writes a `langlinks.sql(.gz)` dump as mysqldump does (header, CREATE TABLE, multi-row INSERTs).

    Args:
      path: output file; `.gz` compresses.
      lang: the wiki's language code.
      rows: (ll_from page id, ll_lang, ll_title) rows.

    Returns:
      The number of rows written.
    """
    header = (f"-- MySQL dump 10.19  Distrib 10.3.38-MariaDB, for debian-linux-gnu (x86_64)\n--\n"
              f"-- Host: 10.64.0.1    Database: {lang.replace('-', '_')}wiki\n"
              "-- ------------------------------------------------------\n-- Server version\t10.4.29-MariaDB-log\n\n"
              "/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n"
              "/*!40101 SET NAMES utf8mb4 */;\n\n--\n-- Table structure for table `langlinks`\n--\n\n"
              "DROP TABLE IF EXISTS `langlinks`;\n"
              "/*!40101 SET @saved_cs_client     = @@character_set_client */;\n"
              "/*!40101 SET character_set_client = utf8 */;\n"
              "CREATE TABLE `langlinks` (\n"
              "  `ll_from` int(8) unsigned NOT NULL DEFAULT 0,\n"
              "  `ll_lang` varbinary(35) NOT NULL DEFAULT '',\n"
              "  `ll_title` varbinary(255) NOT NULL DEFAULT '',\n"
              "  PRIMARY KEY (`ll_from`,`ll_lang`),\n"
              "  KEY `ll_lang` (`ll_lang`,`ll_title`)\n"
              ") ENGINE=InnoDB DEFAULT CHARSET=binary ROW_FORMAT=COMPRESSED;\n"
              "/*!40101 SET character_set_client = @saved_cs_client */;\n\n--\n"
              "-- Dumping data for table `langlinks`\n--\n\n"
              "/*!40000 ALTER TABLE `langlinks` DISABLE KEYS */;\n")
    with _open_output(pathlib.Path(path)) as out:
        out.write(header.encode("utf-8"))
        for first in range(0, len(rows), _ROWS_PER_INSERT):
            values = ",".join(f"({page_id},{sql_quote(code)},{sql_quote(title)})"
                              for page_id, code, title in rows[first:first + _ROWS_PER_INSERT])
            out.write(f"INSERT INTO `langlinks` VALUES {values};\n".encode("utf-8"))
        out.write(b"/*!40000 ALTER TABLE `langlinks` ENABLE KEYS */;\n\n-- Dump completed\n")
    return len(rows)
