"""Tests of the streaming MediaWiki XML reader on the real dumps and on broken input."""

import bz2
import codecs
import pathlib
import re

import pytest

from class_jax.corpus import dump_reader
from class_jax.demo.world.dump_writer import DumpPage, write_pages_xml
from class_jax.runtime.errors import UserError

ENGLISH_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
BULGARIAN_DUMP = "bgwiki-latest-pages-articles-shortened.xml.bz2"


def _raw_xml(path: pathlib.Path) -> str:
    """The decompressed dump decoded independently of the reader (BOM sniffing by the codecs module)."""
    data = bz2.decompress(path.read_bytes())
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        return data.decode("utf-16")
    return data.decode("utf-8")


@pytest.mark.parametrize("name", [ENGLISH_DUMP, BULGARIAN_DUMP, "enwiki-table-markup.xml.bz2",
                                  "enwiki-pages-articles-sample.xml.bz2"])
def test_real_dump_pages_match_an_independent_count(shared_dir, name):
    path = shared_dir / "data" / "wiki" / "dumps" / name
    raw = _raw_xml(path)
    pages = list(dump_reader.DumpReader(str(path)).pages())

    assert len(pages) == raw.count("<page>")
    assert [page.title for page in pages] == [
        re.sub(r"&amp;", "&", title) for title in re.findall(r"<title>(.*?)</title>", raw)]
    namespaces = [int(ns) for ns in re.findall(r"<ns>(-?\d+)</ns>", raw)]
    assert [page.namespace for page in pages] == namespaces
    assert sum(page.redirect_target is not None for page in pages) == raw.count("<redirect ")
    assert [page.ordinal for page in pages] == list(range(len(pages)))
    assert all(page.page_id > 0 for page in pages)


def test_english_sample_texts_are_complete(shared_dir):
    path = shared_dir / "data" / "wiki" / "dumps" / ENGLISH_DUMP
    raw = _raw_xml(path)
    pages = list(dump_reader.DumpReader(str(path)).pages())
    reader = dump_reader.DumpReader(str(path))
    next(reader.pages())
    assert reader.site_info.dbname == "enwiki"
    assert reader.site_info.namespaces["Category"] == 14
    # Entity-unescaped text lengths add up to the raw text minus what the escaping added.
    raw_texts = re.findall(r"<text[^>]*>(.*?)</text>", raw, flags=re.DOTALL)
    unescaped = [t.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
                 for t in raw_texts]
    assert [page.text for page in pages] == unescaped


def test_utf16_bulgarian_dump_parses(shared_dir):
    path = shared_dir / "data" / "wiki" / "dumps" / BULGARIAN_DUMP
    assert bz2.decompress(path.read_bytes())[:2] == codecs.BOM_UTF16_LE
    reader = dump_reader.DumpReader(str(path))
    pages = list(reader.pages())
    assert reader.site_info.dbname == "bgwiki"
    main = [page for page in pages if page.namespace == 0]
    assert [page.title for page in main] == ["Григориански календар"]
    assert "календар" in main[0].text and "[[" in main[0].text
    assert reader.site_info.namespaces["Категория"] == 14


@pytest.mark.parametrize("head,expected", [
    (codecs.BOM_UTF8 + b"<mediawiki>", ("utf-8", 3)),
    (codecs.BOM_UTF16_LE + "<m".encode("utf-16-le"), ("utf-16-le", 2)),
    (codecs.BOM_UTF16_BE + "<m".encode("utf-16-be"), ("utf-16-be", 2)),
    ("<?xml version".encode("utf-16-le"), ("utf-16-le", 0)),
    (b'<?xml version="1.0" encoding="ISO-8859-1"?><a/>', ("iso8859-1", 0)),
    (b"<mediawiki>", ("utf-8", 0)),
])
def test_encoding_detection(head, expected):
    assert dump_reader.detect_encoding(head) == expected


def test_declared_latin1_dump_is_decoded_as_declared(tmp_path):
    text = ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<mediawiki><page><title>Caf\u00e9</title><ns>0</ns>'
            '<id>1</id><revision><text>cr\u00e8me</text></revision></page></mediawiki>\n')
    path = tmp_path / "latin1.xml"
    path.write_bytes(text.encode("latin-1"))
    [page] = dump_reader.DumpReader(str(path)).pages()
    assert (page.title, page.text) == ("Caf\u00e9", "cr\u00e8me")


def _small_dump(tmp_path: pathlib.Path, name: str = "small.xml") -> pathlib.Path:
    pages = [DumpPage(page_id, f"Page {page_id}", 0, f"Text of [[Page {page_id + 1}]].\n" * 50)
             for page_id in range(1, 40)]
    path = tmp_path / name
    write_pages_xml(path, "en", pages, {})
    return path


def test_truncated_bz2_is_a_one_line_error_naming_the_file(tmp_path):
    path = _small_dump(tmp_path, "small.xml.bz2")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.xml.bz2"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as error:
        list(dump_reader.DumpReader(str(truncated)).pages())
    message = str(error.value)
    assert str(truncated) in message and "truncated" in message and "\n" not in message


def test_truncated_plain_xml_is_reported(tmp_path):
    path = _small_dump(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(UserError, match=r"truncated.xml: line \d+: the XML ends before the document is complete"):
        list(dump_reader.DumpReader(str(truncated)).pages())


def test_malformed_xml_names_line_and_previous_page(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<mediawiki>\n<page><title>Good</title><ns>0</ns><id>1</id><revision><text>x</text>"
                    "</revision></page>\n<page><title>Bad</title><ns>0</ns><id>2</id>\n<revision><text>x</txet>"
                    "</revision></page></mediawiki>\n", encoding="utf-8")
    reader = dump_reader.DumpReader(str(path))
    pages = reader.pages()
    assert next(pages).title == "Good"
    with pytest.raises(UserError) as error:
        next(pages)
    message = str(error.value)
    assert "bad.xml: line 4" in message and "malformed XML (mismatched tag)" in message and "'Good'" in message


def test_invalid_utf8_is_an_error_with_line_and_page(tmp_path):
    path = tmp_path / "invalid.xml"
    path.write_bytes(b"<mediawiki>\n<page><title>First</title><ns>0</ns><id>1</id><revision><text>ok</text>"
                     b"</revision></page>\n<page><title>Second</title><ns>0</ns><id>2</id><revision>\n"
                     b"<text>bad \xff\xfe byte</text></revision></page></mediawiki>\n")
    with pytest.raises(UserError) as error:
        list(dump_reader.DumpReader(str(path)).pages())
    message = str(error.value)
    assert "invalid.xml: line 4" in message and "invalid utf-8 byte sequence" in message and "'First'" in message


def test_invalid_utf8_can_be_replaced_and_counted(tmp_path):
    path = tmp_path / "invalid.xml"
    path.write_bytes(b"<mediawiki><page><title>P</title><ns>0</ns><id>1</id><revision><text>a\xffb\xfec</text>"
                     b"</revision></page></mediawiki>")
    reader = dump_reader.DumpReader(str(path), invalid_bytes="replace")
    [page] = reader.pages()
    assert page.text == "a\ufffdb\ufffdc" and reader.replaced_bytes == 2


@pytest.mark.parametrize("content,problem", [
    (b"", "the file is empty"),
    (b"<html><body/></html>", "not a MediaWiki XML dump"),
    (b"<mediawiki><page><ns>0</ns><id>1</id></page></mediawiki>", "has no <title>"),
    (b"<mediawiki><page><title>T</title><ns>0</ns><id>x</id></page></mediawiki>", "has no numeric <id>"),
])
def test_other_broken_files_are_one_line_errors(tmp_path, content, problem):
    path = tmp_path / "broken.xml"
    path.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(problem)):
        list(dump_reader.DumpReader(str(path)).pages())


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot open"):
        list(dump_reader.DumpReader(str(tmp_path / "nope.xml.bz2")).pages())


def _peak_memory_while_reading(path: pathlib.Path) -> int:
    import tracemalloc
    tracemalloc.start()
    try:
        count = sum(1 for _ in dump_reader.DumpReader(str(path)).pages())
        assert count > 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_dump(tmp_path):
    text = "Some words of text with a [[Link]]. " * 220  # About 8 KB per page.
    sizes = {}
    for pages in (700, 2100):
        path = tmp_path / f"dump-{pages}.xml"
        write_pages_xml(path, "en", (DumpPage(i, f"Page {i}", 0, text) for i in range(1, pages + 1)), {})
        sizes[pages] = (path.stat().st_size, _peak_memory_while_reading(path))
    (small_file, small_peak), (large_file, large_peak) = sizes[700], sizes[2100]
    assert large_file > 2.9 * small_file
    # A reader that kept pages would need 11 MB more for the larger dump; a streaming one needs the same.
    assert large_peak < small_peak * 1.25, sizes
