"""Streaming reader of MediaWiki `pages-articles` XML dumps (bz2, gzip or plain; any declared encoding).

Memory stays constant in the dump size: the XML is fed to an incremental parser in 1 MiB chunks and every
`<page>` element is dropped as soon as it has been handed out. The text encoding is taken from a byte-order
mark or the XML declaration (one real test dump is UTF-16), and decoding happens here rather than in expat so
that an invalid byte can be reported with its line and page instead of an opaque parser error.

Every failure is raised as a `UserError` naming the file, the line and the last page started.
"""

import bz2
import codecs
import dataclasses
import errno
import gzip
import os
import re
import stat
import xml.etree.ElementTree as ElementTree
import zlib
from typing import BinaryIO, Callable, Iterator

from class_jax.runtime.errors import UserError

_CHUNK_BYTES = 1 << 20
_DECLARED_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
# What a corrupt gzip / bz2 body raises while being read (zlib.error is not an OSError).
DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error)
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclasses.dataclass(frozen=True)
class SiteInfo:
    """The `<siteinfo>` block of a dump.

    Attributes:
      dbname: e.g. "enwiki" ("" when absent).
      first_letter_case: titles have their first letter upper-cased (`<case>first-letter</case>`).
      namespaces: localised namespace name -> number, as declared by the dump.
    """

    dbname: str = ""
    first_letter_case: bool = True
    namespaces: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RawPage:
    """One `<page>` of a dump, before any wikitext processing.

    Attributes:
      ordinal: 0-based position of the page among all pages of the dump.
      page_id: `<id>` of the page.
      title: `<title>` as in the dump (already normalised by MediaWiki).
      namespace: `<ns>`.
      redirect_target: the `<redirect title=...>` attribute, or None.
      text: wikitext of the last revision ("" when absent).
      model: content model of the last revision ("wikitext" when absent).
    """

    ordinal: int
    page_id: int
    title: str
    namespace: int
    redirect_target: str | None
    text: str
    model: str


def check_input_file(path: str, what: str = "") -> None:
    """Checks that `path` names a readable regular file (or a named pipe), before any reading starts.

    Args:
      path: the file.
      what: the flag that named it (e.g. "--dump"), put in front of the message when given.

    Raises:
      UserError: one line naming the file and the problem: missing, a directory, a symlink loop, a name too long,
        no permission, or not a regular file.
    """
    prefix = f"{what} {path}" if what else f"{path}"
    try:
        status = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            problem = "symbolic link loop"
        elif e.errno == errno.ENAMETOOLONG:
            problem = "file name too long"
        elif e.errno == errno.ENOENT:
            problem = "no such file"
        else:
            problem = f"cannot open: {e.strerror or e}"
        raise UserError(f"{prefix}: {problem}") from None
    except ValueError as e:  # e.g. an embedded NUL character
        raise UserError(f"{prefix}: not a usable file name ({e})") from None
    if stat.S_ISDIR(status.st_mode):
        raise UserError(f"{prefix}: is a directory, expected a file")
    if not (stat.S_ISREG(status.st_mode) or stat.S_ISFIFO(status.st_mode)):
        raise UserError(f"{prefix}: not a regular file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{prefix}: cannot open: permission denied")


def open_compressed(path: str) -> tuple[BinaryIO, BinaryIO]:
    """Opens a plain, `.bz2` or `.gz` file for binary reading, detecting compression by magic bytes.

    Args:
      path: the file.

    Returns:
      (decompressed stream, underlying raw file); `raw.tell()` measures progress in compressed bytes.

    Raises:
      UserError: the file cannot be opened.
    """
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise UserError(f"{path}: cannot open: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"{path}: not a usable file name ({e})") from None
    try:
        magic = raw.read(3)
        raw.seek(0)
    except OSError as e:
        raw.close()
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    if magic == b"BZh":
        return bz2.BZ2File(raw), raw
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw), raw
    return raw, raw


def detect_encoding(head: bytes) -> tuple[str, int]:
    """Finds the text encoding of an XML document from its first bytes.

    Args:
      head: the first bytes of the document (at least 4; 512 recommended).

    Returns:
      (codec name, number of BOM bytes to skip).
    """
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    # UTF-16 without a BOM: every other byte of "<?" / "<m" is zero.
    if head[:4] == b"<\x00?\x00" or head[:2] == b"<\x00":
        return "utf-16-le", 0
    if head[:4] == b"\x00<\x00?" or head[:2] == b"\x00<":
        return "utf-16-be", 0
    declared = _DECLARED_ENCODING.match(head)
    if declared:
        name = declared.group(1).decode("ascii")
        try:
            return codecs.lookup(name).name, 0
        except LookupError:
            raise UserError(f"unknown encoding {name!r} declared in the XML declaration") from None
    return "utf-8", 0


class DumpReader:
    """Iterates over the pages of one dump file.

    Args:
      path: the dump (`.xml`, `.xml.bz2`, `.xml.gz`, or a `-shortened.bz2` sample).
      invalid_bytes: "error" raises on bytes that are invalid in the declared encoding; "replace" substitutes
        U+FFFD and counts them in `replaced_bytes`.
      on_progress: called with the number of compressed bytes read so far, after every chunk.
      require_siteinfo: raise a `UserError` for a dump without `<siteinfo>` (ingestion needs its namespaces and
        title case; Special:Export files may leave it out, and are read with the defaults otherwise).

    Attributes:
      site_info: the dump's `<siteinfo>`, set once the block has been read (before the first page).
      replaced_bytes: number of invalid byte sequences replaced (with invalid_bytes="replace"; counted as the
        U+FFFD characters of the decoded text).
    """

    def __init__(self, path: str, invalid_bytes: str = "error",
                 on_progress: Callable[[int], None] | None = None, require_siteinfo: bool = False):
        if invalid_bytes not in ("error", "replace"):
            raise ValueError(f"invalid_bytes must be 'error' or 'replace', not {invalid_bytes!r}")
        self.path = os.fspath(path)
        self.invalid_bytes = invalid_bytes
        self.on_progress = on_progress
        self.require_siteinfo = require_siteinfo
        self.site_info = SiteInfo()
        self.replaced_bytes = 0
        self._line = 1
        self._last_page = "before the first page"

    def _where(self) -> str:
        return f"{self.path}: line {self._line} ({self._last_page})"

    def _text_chunks(self) -> Iterator[str]:
        """Yields the decoded document in chunks, tracking the line number for error messages."""
        stream, raw = open_compressed(self.path)
        with raw, stream:
            try:
                head = stream.read(_CHUNK_BYTES)
            except EOFError as e:
                raise UserError(f"{self.path}: the compressed file is truncated ({e}) within its first "
                                f"{_CHUNK_BYTES} bytes") from None
            except (OSError, zlib.error) as e:
                raise UserError(f"{self.path}: the compressed data is corrupt at the start ({e})") from None
            if not head:
                raise UserError(f"{self.path}: the file is empty")
            try:
                encoding, bom_bytes = detect_encoding(head[:512])
            except UserError as e:
                raise UserError(f"{self.path}: {e}") from None
            decoder = codecs.getincrementaldecoder(encoding)(
                errors="strict" if self.invalid_bytes == "error" else "replace")
            chunk = head[bom_bytes:]
            offset = bom_bytes
            while True:
                final = not chunk
                buffered = decoder.getstate()[0]
                try:
                    text = decoder.decode(chunk, final)
                except UnicodeDecodeError as e:
                    # Hand the valid part to the parser first, so the error names the page it occurs in.
                    valid = codecs.decode((buffered + chunk)[:max(e.start, 0)], encoding, errors="ignore")
                    yield valid
                    line = self._line + valid.count("\n")
                    raise UserError(f"{self.path}: line {line} ({self._last_page}): invalid {e.encoding} byte "
                                    f"sequence {e.object[e.start:e.end]!r} at byte "
                                    f"{offset - len(buffered) + e.start}") from None
                if self.invalid_bytes == "replace":
                    self.replaced_bytes += text.count("\ufffd")
                if text:
                    yield text
                    self._line += text.count("\n")
                if final:
                    return
                offset += len(chunk)
                if self.on_progress is not None:
                    self.on_progress(raw.tell())
                try:
                    chunk = stream.read(_CHUNK_BYTES)
                except EOFError as e:
                    raise UserError(f"{self._where()}: the compressed file is truncated ({e}); "
                                    f"{offset} bytes were decompressed") from None
                except (OSError, zlib.error) as e:
                    raise UserError(f"{self._where()}: the compressed data is corrupt ({e}); "
                                    f"{offset} bytes were decompressed") from None

    def pages(self) -> Iterator[RawPage]:
        """Yields every page of the dump, in dump order.

        Yields:
          RawPage records; `site_info` is filled before the first one.

        Raises:
          UserError: the file is unreadable, truncated, not well-formed XML, or not a MediaWiki dump.
        """
        parser = ElementTree.XMLPullParser(events=("start", "end"))
        root: ElementTree.Element | None = None
        depth = 0
        ordinal = 0
        seen_siteinfo = False
        for text in self._text_chunks():
            parser.feed(text)  # A pull parser queues syntax errors behind the events that precede them.
            events = parser.read_events()
            while True:
                try:
                    event, element = next(events)
                except StopIteration:
                    break
                except ElementTree.ParseError as e:
                    raise self._xml_error(e) from None
                tag = _local_name(element.tag)
                if event == "start":
                    depth += 1
                    if root is None:
                        root = element
                        if tag != "mediawiki":
                            raise UserError(f"{self.path}: the root element is <{tag}>, not <mediawiki>: "
                                            "not a MediaWiki XML dump")
                    elif tag == "page" and depth == 2:
                        if self.require_siteinfo and not seen_siteinfo:
                            raise UserError(f"{self.path}: no <siteinfo> before the first <page>: not a complete "
                                            "MediaWiki dump (its namespaces are unknown)")
                        self._last_page = f"page #{ordinal + 1}, after {self._last_page}"
                    continue
                depth -= 1
                if depth != 1:
                    continue
                if tag == "siteinfo":
                    self.site_info = _parse_siteinfo(element)
                    seen_siteinfo = True
                elif tag == "page":
                    page = self._parse_page(element, ordinal)
                    self._last_page = f"page {page.title!r} (id {page.page_id})"
                    ordinal += 1
                    yield page
                assert root is not None
                # Dropping finished children keeps memory constant: nothing of earlier pages stays reachable.
                root.clear()
        try:
            parser.close()
            list(parser.read_events())
        except ElementTree.ParseError as e:
            raise self._xml_error(e, at_end=True) from None
        if root is None:
            raise UserError(f"{self.path}: no XML element found")
        if self.require_siteinfo and not seen_siteinfo:
            raise UserError(f"{self.path}: no <siteinfo> in the dump: not a complete MediaWiki dump")

    def _xml_error(self, error: ElementTree.ParseError, at_end: bool = False) -> UserError:
        line, column = error.position
        problem = str(error).split(":")[0]
        if at_end or problem == "no element found":
            return UserError(f"{self.path}: line {line}: the XML ends before the document is complete "
                             f"(truncated file?) after {self._last_page}")
        return UserError(f"{self.path}: line {line}, column {column}: malformed XML ({problem}) "
                         f"in or after {self._last_page}")

    def _parse_page(self, element: ElementTree.Element, ordinal: int) -> RawPage:
        fields: dict[str, str] = {}
        redirect_target = None
        revision: ElementTree.Element | None = None
        for child in element:
            tag = _local_name(child.tag)
            if tag == "redirect":
                redirect_target = child.get("title")
            elif tag == "revision":
                revision = child  # pages-meta-history has many; the last one is the current text.
            else:
                fields[tag] = child.text or ""
        title = fields.get("title", "").strip()
        if not title:
            raise UserError(f"{self.path}: {self._last_page} has no <title>")
        try:
            page_id = int(fields.get("id", ""))
        except ValueError:
            raise UserError(f"{self.path}: page #{ordinal + 1} {title!r} has no numeric <id> "
                            f"({fields.get('id')!r})") from None
        try:
            namespace = int(fields.get("ns", "0") or "0")
        except ValueError:
            raise UserError(f"{self.path}: page #{ordinal + 1} {title!r} has a non-numeric <ns> "
                            f"({fields.get('ns')!r})") from None
        text, model = "", "wikitext"
        if revision is not None:
            for child in revision:
                tag = _local_name(child.tag)
                if tag == "text":
                    text = child.text or ""
                elif tag == "model":
                    model = (child.text or "").strip() or model
        return RawPage(ordinal=ordinal, page_id=page_id, title=title, namespace=namespace,
                       redirect_target=redirect_target, text=text, model=model)


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_siteinfo(element: ElementTree.Element) -> SiteInfo:
    dbname, case = "", "first-letter"
    namespaces: dict[str, int] = {}
    for child in element:
        tag = _local_name(child.tag)
        if tag == "dbname":
            dbname = (child.text or "").strip()
        elif tag == "case":
            case = (child.text or "").strip()
        elif tag == "namespaces":
            for namespace in child:
                try:
                    namespaces[(namespace.text or "").strip()] = int(namespace.get("key", "0"))
                except ValueError:
                    continue
    return SiteInfo(dbname=dbname, first_letter_case=case != "case-sensitive", namespaces=namespaces)
