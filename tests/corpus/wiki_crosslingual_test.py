"""Tests of langlinks SQL parsing, Wikidata sitelinks and the cross-language entity table."""

import collections
import gzip
import json

import pytest

from class_jax.corpus import entities, ingest, ingest_links, langlinks, wikidata
from class_jax.demo.world.dump_writer import DumpPage, sql_quote, write_langlinks_sql, write_pages_xml
from class_jax.runtime.errors import UserError

HEADER = ("CREATE TABLE `langlinks` (\n  `ll_from` int(8) unsigned NOT NULL DEFAULT 0,\n"
          "  `ll_lang` varbinary(35) NOT NULL DEFAULT '',\n  `ll_title` varbinary(255) NOT NULL DEFAULT '',\n"
          "  PRIMARY KEY (`ll_from`,`ll_lang`)\n) ENGINE=InnoDB;\n")


def read_rows(path) -> list[tuple[int, str, str]]:
    return [(row.from_page_id, row.lang, row.title) for row in langlinks.LangLinksReader(str(path))]


def test_escaping_and_multi_row_inserts(tmp_path):
    tricky = ["O'Brien", 'Say "hi"', "back\\slash", "semi;colon),(x", "tab\tand\nnewline", "日本語"]
    rows = [(index + 1, "de", title) for index, title in enumerate(tricky)] * 300  # Several INSERTs of 500.
    path = tmp_path / "xxwiki-langlinks.sql.gz"
    write_langlinks_sql(path, "xx", rows)
    assert gzip.open(path, "rt", encoding="utf-8").read().count("INSERT INTO") == 4
    assert read_rows(path) == rows


def test_doubled_quotes_null_and_column_order_from_create_table(tmp_path):
    path = tmp_path / "ll.sql"
    path.write_text(
        "CREATE TABLE `langlinks` (\n  `ll_lang` varbinary(35) NOT NULL,\n  `ll_title` varbinary(255),\n"
        "  `ll_from` int(8) unsigned NOT NULL\n) ENGINE=InnoDB;\n"
        "INSERT INTO `langlinks` VALUES ('fr','L''Oréal',5),('de',NULL,6), ( 'ja' , 'X' , 7 );\n",
        encoding="utf-8")
    reader = langlinks.LangLinksReader(str(path))
    assert [(r.from_page_id, r.lang, r.title) for r in reader] == [(5, "fr", "L'Oréal"), (7, "ja", "X")]
    assert reader.columns == ("ll_lang", "ll_title", "ll_from")
    assert reader.counts == collections.Counter(langlink_rows=3, langlink_skipped_null=1)


def test_invalid_utf8_titles_are_counted_skips(tmp_path):
    path = tmp_path / "ll.sql"
    path.write_bytes(HEADER.encode() + b"INSERT INTO `langlinks` VALUES (1,'de','ok'),(2,'de','bad\xff'),"
                                       b"(3,'fr','fine');\n")
    reader = langlinks.LangLinksReader(str(path))
    assert [r.title for r in reader] == ["ok", "fine"]
    assert reader.counts["langlink_skipped_invalid_utf8"] == 1


@pytest.mark.parametrize("statement,problem", [
    ("INSERT INTO `langlinks` VALUES (1,'de','a'),(2,'de','b');", None),
    ("INSERT INTO `langlinks` VALUES (1,'de','a'),(2,'de','b'", "ends without ';'"),
    ("INSERT INTO `langlinks` VALUES (1,'de','a') (2,'de','b');", "expected ',' or ';'"),
    ("INSERT INTO `langlinks` VALUES (1,'de');", "2 values for 3 columns"),
    ("INSERT INTO `langlinks` VALUES (1,'de',oops);", "unreadable value"),
])
def test_malformed_sql_names_line_and_column(tmp_path, statement, problem):
    path = tmp_path / "ll.sql"
    path.write_text(HEADER + "-- comment\n" + statement + "\n", encoding="utf-8")
    if problem is None:
        assert len(read_rows(path)) == 2
        return
    with pytest.raises(UserError, match=rf"ll.sql: line 8, column \d+: malformed INSERT: {problem}"):
        read_rows(path)


def test_truncated_gzip_is_reported(tmp_path):
    path = tmp_path / "ll.sql.gz"
    write_langlinks_sql(path, "xx", [(i, "de", f"Title number {i}") for i in range(3000)])
    data = path.read_bytes()
    (tmp_path / "cut.sql.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.sql.gz: line .*truncated or corrupt"):
        read_rows(tmp_path / "cut.sql.gz")


def test_sql_quote_matches_mysqldump():
    assert sql_quote("a'b\\c\nd") == "'a\\'b\\\\c\\nd'"


def test_real_wikidata_sitelinks_load(shared_dir):
    counts: collections.Counter = collections.Counter()
    records = {}
    for path in sorted((shared_dir / "data" / "wiki" / "wikidata").glob("Q*.json")):
        for record in wikidata.read_sitelinks(str(path), counts):
            records[record.entity_id] = record.titles
        raw = json.loads(path.read_text(encoding="utf-8"))["entities"]
        for entity_id, entity in raw.items():
            expected = {site[:-4].replace("_", "-"): link["title"] for site, link in entity["sitelinks"].items()
                        if site.endswith("wiki") and site not in ("commonswiki", "specieswiki", "metawiki")}
            assert records[entity_id] == expected
    assert records["Q1299"]["en"] == "The Beatles" and records["Q1299"]["ja"] == "ビートルズ"
    assert records["Q8646"]["ko"] == "홍콩" and records["Q8646"]["zh-yue"]
    assert wikidata.site_language("enwikiquote") is None and wikidata.site_language("zh_min_nanwiki") == "zh-min-nan"
    assert counts["wikidata_entities"] == 6 and counts["wikidata_skipped_other_sites"] > 0


def test_wikidata_dump_and_jsonl_forms(tmp_path):
    entity = {"id": "Q1", "sitelinks": {"enwiki": {"title": "One"}, "dewiki": {"title": "Eins"}}}
    dump = tmp_path / "latest-all.json"
    dump.write_text("[\n" + json.dumps(entity) + ",\n" + json.dumps({**entity, "id": "Q2"}) + "\n]\n")
    assert [r.entity_id for r in wikidata.read_sitelinks(str(dump))] == ["Q1", "Q2"]
    lines = tmp_path / "entities.jsonl"
    lines.write_text(json.dumps(entity) + "\n" + "{broken\n")
    with pytest.raises(UserError, match="entities.jsonl: line 2: not a JSON entity"):
        list(wikidata.read_sitelinks(str(lines)))


def _ingest_language(tmp_path, root, lang, pages, langlink_rows):
    dump = tmp_path / f"{lang}wiki-pages-articles.xml.bz2"
    write_pages_xml(dump, lang, pages, {})
    ingest.DumpIngester(str(dump), root, lang).run()
    sql = tmp_path / f"{lang}wiki-langlinks.sql.gz"
    write_langlinks_sql(sql, lang, langlink_rows)
    return ingest_links.ingest_langlinks(root, lang, str(sql))


def test_entity_table_from_langlinks_and_wikidata(tmp_path):
    root = tmp_path / "corpus"
    en_pages = [DumpPage(1, "Tokyo", 0, "'''Tokyo''' is in [[Japan]]."), DumpPage(2, "Japan", 0, "A country."),
                DumpPage(3, "Nippon", 0, "", redirect="Japan"), DumpPage(4, "Osaka", 0, "A city.")]
    en_counts = _ingest_language(tmp_path, root, "en", en_pages, [
        (1, "ja", "東京"), (2, "ja", "日本国"), (4, "ja", "存在しない"), (99, "ja", "X"), (3, "ja", "日本"),
        (1, "de", "Tokio"), (2, "qqq", "Bad")])
    assert en_counts["langlinks"] == 4
    assert en_counts["langlinks_skipped_unknown_page_id"] == 1
    assert en_counts["langlinks_skipped_from_redirect"] == 1
    assert en_counts["langlinks_skipped_unknown_language"] == 1
    ja_pages = [DumpPage(10, "東京", 0, "[[日本]]の首都。"), DumpPage(11, "日本", 0, "国。"),
                DumpPage(12, "日本国", 0, "", redirect="日本")]
    _ingest_language(tmp_path, root, "ja", ja_pages, [(10, "en", "Tokyo"), (11, "en", "Nippon")])
    wikidata_file = tmp_path / "q.json"
    wikidata_file.write_text(json.dumps({"entities": {"Q1490": {"id": "Q1490", "sitelinks": {
        "enwiki": {"title": "Tokyo"}, "jawiki": {"title": "東京"}, "frwiki": {"title": "Tokyo"}}}}}))
    ingest_links.ingest_wikidata(root, [str(wikidata_file)])

    counts = entities.build_entity_table(root)
    table = entities.EntityTable.from_corpus(root)
    assert table.titles("Q1490") == {"en": "Tokyo", "ja": "東京", "fr": "Tokyo", "de": "Tokio"}
    assert table.entity_of("en", "Japan") == "en:Japan"
    assert table.translations("en", "Japan") == {"ja": "日本"}  # "日本国" and "Nippon" resolved as redirects.
    assert table.title_in("en", "Nippon", "ja") == "日本" and table.title_in("ja", "日本国", "en") == "Japan"
    assert table.entity_of("en", "Osaka") is None
    assert counts["langlinks_skipped_unknown_title"] == 1  # 存在しない is not in the ja dump.
    assert counts["langlinks_target_language_not_ingested"] == 1  # de
    assert counts["entities"] == 2 == len(table)


def test_langlinks_before_the_dump_is_a_user_error(tmp_path):
    sql = tmp_path / "ll.sql"
    write_langlinks_sql(sql, "en", [(1, "de", "X")])
    with pytest.raises(UserError, match="ingest the 'en' dump before its langlinks"):
        ingest_links.ingest_langlinks(tmp_path / "corpus", "en", str(sql))
