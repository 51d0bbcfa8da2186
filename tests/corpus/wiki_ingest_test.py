"""End-to-end ingestion tests: the real English sample cross-checked against independent counts, resumption after
a kill, skipped-page accounting and the `class-jax ingest` command."""

import bz2
import collections
import gzip
import json
import re
import xml.etree.ElementTree as ElementTree

import pytest

from class_jax import cli
from class_jax.corpus import corpus_io, ingest, page_processing
from class_jax.demo.world.dump_writer import DumpPage, write_pages_xml
from class_jax.corpus.titles import normalize_title
from class_jax.runtime.errors import UserError

ENGLISH_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# Extension tags whose content MediaWiki does not parse as wikitext, and comments.
_UNPARSED = re.compile(r"<!--.*?-->|<(nowiki|gallery|math|pre|timeline|syntaxhighlight|source)\b[^>]*>.*?</\1>",
                       re.DOTALL | re.IGNORECASE)
_RAW_LINK = re.compile(r"\[\[([^\[\]|]*)(?:\]\]|\|)")


@pytest.fixture(scope="module")
def english(shared_dir, tmp_path_factory):
    """The English sample ingested once, with the dump parsed independently by ElementTree."""
    dump = shared_dir / "data" / "wiki" / "dumps" / ENGLISH_DUMP
    root = tmp_path_factory.mktemp("corpus")
    counts = ingest.DumpIngester(str(dump), root, "en", ingest.IngestSettings(pages_per_shard=50)).run()
    xml_root = ElementTree.fromstring(bz2.decompress(dump.read_bytes()))
    namespace = {"mw": xml_root.tag[1:].split("}")[0]}
    pages = []
    for page in xml_root.iterfind("mw:page", namespace):
        pages.append({"title": page.findtext("mw:title", namespaces=namespace),
                      "ns": int(page.findtext("mw:ns", namespaces=namespace)),
                      "redirect": page.find("mw:redirect", namespace) is not None,
                      "text": page.findtext("mw:revision/mw:text", default="", namespaces=namespace)})
    return root, counts, pages


def test_page_and_redirect_counts_match_elementtree(english):
    root, counts, pages = english
    main = [page for page in pages if page["ns"] == 0]
    assert counts["pages"] == len(pages) == 206
    assert counts["main_namespace_pages"] == len(main)
    assert counts["skipped_other_namespace"] == len(pages) - len(main)
    assert counts["redirects"] == sum(page["redirect"] for page in main)
    articles = list(corpus_io.iter_articles(root, "en"))
    assert counts["articles"] == len(articles) == sum(not page["redirect"] for page in main)
    assert [a.title for a in articles] == [page["title"] for page in main if not page["redirect"]]
    redirect_rows = list(corpus_io.read_tsv(root / "en" / "redirects.tsv.gz"))
    assert len(redirect_rows) == counts["redirects"]
    assert counts["disambiguation_pages"] == sum(a.is_disambiguation for a in articles) > 0
    assert counts["list_pages"] == sum(a.is_list for a in articles) > 0


def test_outputs_are_gzip_at_the_fast_level_and_read_back(english):
    root, _, _ = english
    files = sorted((root / "en").rglob("*.gz"))
    assert files
    for path in files:
        data = path.read_bytes()
        # RFC 1952 header byte XFL: 4 = "fastest algorithm" (level 1), 2 = maximum compression, 0 = the others.
        assert data[8] == 4, path
        assert gzip.decompress(data).decode("utf-8")


def test_link_counts_match_an_independent_regex_count(english):
    root, counts, pages = english
    articles = {a.title: a for a in corpus_io.iter_articles(root, "en")}
    regex_count = 0
    for page in pages:
        if page["ns"] != 0 or page["redirect"]:
            continue
        source = _UNPARSED.sub("", page["text"])
        written = _RAW_LINK.findall(source)
        regex_count += len(written)
        # Every kept link points at a target written as a link in that page (or is the page's ill-template link).
        targets = {normalize_title(target) for target in written}
        article = articles[page["title"]]
        unexplained = [link for link in article.links if link.target not in targets]
        assert len(unexplained) <= counts["links_template_generated"] + counts["links_via_redirect"]
        assert all(article.text[link.start:link.end] == link.anchor for link in article.links)
    # The parser and the regex disagree only on malformed markup (a handful of links in 32k).
    assert abs(counts["links_seen"] - regex_count) <= regex_count * 0.001
    dropped = sum(counts[key] for key in (
        "links_category", "links_file", "links_interlanguage", "links_other_namespace", "links_interwiki",
        "links_section_only", "links_empty_anchor", "links_malformed_anchor", "links_nested",
        "links_in_removed_markup"))
    assert counts["links_kept"] + dropped == counts["links_seen"] + counts["links_template_generated"]
    assert counts["links_kept"] == sum(len(a.links) for a in articles.values()) > 20000
    category_links = sum(len(re.findall(r"\[\[\s*Category\s*:", _UNPARSED.sub("", p["text"]), re.IGNORECASE))
                         for p in pages if p["ns"] == 0 and not p["redirect"])
    assert 0 < counts["links_category"] <= category_links


def test_inline_interlanguage_links_match_a_regex_count(english):
    root, counts, pages = english
    codes = "|".join(["be-x-old", "bg", "da", "es", "fr", "it", "he", "nl", "ja", "pl", "fi", "sv", "th", "te", "de",
                      "ru", "zh", "ar", "pt"])
    expected = sum(len(re.findall(rf"\[\[(?:{codes}):[^\]]+\]\]", page["text"])) for page in pages
                   if page["ns"] == 0 and not page["redirect"])
    rows = list(corpus_io.read_tsv(root / "en" / "inline_langlinks.tsv.gz"))
    assert counts["links_interlanguage"] == counts["inline_langlinks"] == len(rows) == expected > 0


def test_passages_carry_every_link_of_non_disambiguation_articles(english):
    root, counts, _ = english
    articles = list(corpus_io.iter_articles(root, "en"))
    passages = list(corpus_io.iter_passages(root, "en"))
    assert counts["passages"] == len(passages)
    assert counts["passage_links"] == sum(len(a.links) for a in articles if not a.is_disambiguation)
    assert sum(len(p.links) for p in passages) == counts["passage_links"]
    by_title = collections.defaultdict(list)
    for passage in passages:
        by_title[passage.title].append(passage)
        for link in passage.links:
            assert passage.text[link.start:link.end] == link.anchor
    for article in articles:
        if not article.is_disambiguation:
            words = sum(len(p.text.split()) for p in by_title[article.title])
            assert words == len(article.text.split())
    assert len({p.passage_id for p in passages}) == len(passages)


def test_rerun_is_a_no_op_and_other_settings_are_refused(english, shared_dir):
    root, counts, _ = english
    dump = shared_dir / "data" / "wiki" / "dumps" / ENGLISH_DUMP
    again = ingest.DumpIngester(str(dump), root, "en", ingest.IngestSettings(pages_per_shard=50)).run()
    assert again["already_complete"] == 1 and again["articles"] == counts["articles"]
    with pytest.raises(UserError, match="pass --overwrite"):
        ingest.DumpIngester(str(dump), root, "en", ingest.IngestSettings(pages_per_shard=7)).run()


def _toy_dump(path, pages=60):
    rows = []
    for page_id in range(1, pages + 1):
        rows.append(DumpPage(page_id, f"Page {page_id}", 0,
                             f"'''Page {page_id}''' links to [[Page {page_id % pages + 1}]] and [[Missing {page_id}]]. "
                             + "Filler words here. " * 40))
    rows += [DumpPage(1000, "Empty", 0, "   "), DumpPage(1001, "Only templates", 0, "{{stub}}\n[[Category:X]]"),
             DumpPage(1002, "Alias", 0, "#REDIRECT [[Page 1]]", redirect="Page 1"),
             DumpPage(1003, "Template:Stub", 10, "stub"), DumpPage(1004, "Page 1", 0, "Duplicate title.")]
    write_pages_xml(path, "en", rows, {})


def test_skips_and_red_links_are_counted(tmp_path):
    dump = tmp_path / "enwiki.xml.bz2"
    _toy_dump(dump)
    counts = ingest.DumpIngester(str(dump), tmp_path / "c", "en",
                                 ingest.IngestSettings(pages_per_shard=16, drop_red_links=True)).run()
    assert counts["skipped_empty_page"] == 1
    assert counts["skipped_empty_after_cleaning"] == 1
    assert counts["skipped_duplicate_title"] == 1 and counts["skipped_other_namespace"] == 1
    assert counts["redirects"] == 1 and counts["articles"] == 60
    assert counts["links_to_missing_pages"] == counts["links_dropped_missing_page"] == 60
    articles = list(corpus_io.iter_articles(tmp_path / "c", "en"))
    assert all(link.target.startswith("Page ") for a in articles for link in a.links)


def test_killed_ingest_resumes_from_completed_shards(tmp_path, monkeypatch):
    dump = tmp_path / "enwiki.xml.bz2"
    _toy_dump(dump)
    settings = ingest.IngestSettings(pages_per_shard=16)
    reference = ingest.DumpIngester(str(dump), tmp_path / "reference", "en", settings).run()

    original_commit = ingest._ShardWriter.commit
    commits = []

    def dying_commit(self):
        if len(commits) == 2:
            raise KeyboardInterrupt  # The process is killed while shard 2 is being finished.
        commits.append(self.shard)
        return original_commit(self)

    monkeypatch.setattr(ingest._ShardWriter, "commit", dying_commit)
    with pytest.raises(KeyboardInterrupt):
        ingest.DumpIngester(str(dump), tmp_path / "resumed", "en", settings).run()
    folder = tmp_path / "resumed" / "en"
    assert not (folder / "manifest.json").exists()
    assert sorted(p.name for p in (folder / "shards").glob("shard-*.json")) == ["shard-00000.json",
                                                                             "shard-00001.json"]
    assert not list(folder.rglob("*.partial"))
    monkeypatch.setattr(ingest._ShardWriter, "commit", original_commit)

    cleaned_titles = []
    original_process = page_processing.PageProcessor.__call__
    monkeypatch.setattr(page_processing.PageProcessor, "__call__",
                        lambda self, page: (cleaned_titles.append(page.title), original_process(self, page))[1])
    resumed = ingest.DumpIngester(str(dump), tmp_path / "resumed", "en", settings).run()
    assert resumed["resumed_shards"] == 2
    assert "Page 1" not in cleaned_titles and "Page 60" in cleaned_titles  # Completed shards were not redone.
    resumed.pop("resumed_shards")
    reference.pop("resumed_shards")
    assert resumed == reference
    for kind in ("articles", "passages"):
        first = sorted((tmp_path / "reference" / "en" / kind).glob("*.gz"))
        second = sorted((folder / kind).glob("*.gz"))
        assert [p.name for p in first] == [p.name for p in second]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


def test_invalid_bytes_replaced_are_counted(tmp_path):
    dump = tmp_path / "bad.xml"
    dump.write_bytes(b"<mediawiki><siteinfo><dbname>enwiki</dbname></siteinfo><page><title>P</title><ns>0</ns><id>1</id><revision><text>a \xff b [[Q]]</text>"
                     b"</revision></page></mediawiki>")
    counts = ingest.DumpIngester(str(dump), tmp_path / "c", "en", ingest.IngestSettings(invalid_bytes="replace")).run()
    assert counts["invalid_bytes_replaced"] == 1 and counts["articles"] == 1


def test_cli_ingest_prints_report_and_errors_in_one_line(tmp_path, capsys, shared_dir):
    dump = tmp_path / "enwiki.xml.bz2"
    _toy_dump(dump, pages=10)
    wikidata = [str(p) for p in sorted((shared_dir / "data" / "wiki" / "wikidata").glob("*.json"))]
    code = cli.main(["ingest", "--dump", str(dump), "--lang", "en", "--out", str(tmp_path / "c"), "--no_progress",
                     "--wikidata", *wikidata])
    output = capsys.readouterr().out
    assert code == 0
    assert re.search(r"articles\s+10\n", output) and re.search(r"skipped empty page\s+1\n", output)
    assert re.search(r"links to missing pages\s+10\n", output) and "pages/s" in output
    assert json.loads((tmp_path / "c" / "en" / "manifest.json").read_text())["counts"]["articles"] == 10
    assert (tmp_path / "c" / "entities.jsonl.gz").is_file()

    truncated = tmp_path / "cut.xml.bz2"
    truncated.write_bytes(dump.read_bytes()[:300])
    code = cli.main(["ingest", "--dump", str(truncated), "--lang", "en", "--out", str(tmp_path / "d"),
                     "--no_progress"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "cut.xml.bz2" in error and "truncated" in error
    code = cli.main(["ingest", "--dump", str(dump), "--lang", "de", "--out", str(tmp_path / "e"), "--no_progress"])
    assert code == 2 and "the dump is 'enwiki' but --lang is 'de'" in capsys.readouterr().err


def test_worker_processes_give_identical_outputs_and_errors(tmp_path):
    dump = tmp_path / "enwiki.xml.bz2"
    _toy_dump(dump)
    one = ingest.DumpIngester(str(dump), tmp_path / "one", "en", ingest.IngestSettings(pages_per_shard=16)).run()
    two = ingest.DumpIngester(str(dump), tmp_path / "two", "en",
                              ingest.IngestSettings(pages_per_shard=16, workers=2)).run()
    assert one == two
    for path in sorted((tmp_path / "one" / "en").rglob("*.gz")):
        assert path.read_bytes() == (tmp_path / "two" / "en" / path.relative_to(tmp_path / "one" / "en")).read_bytes()
    truncated = tmp_path / "cut.xml.bz2"
    truncated.write_bytes(dump.read_bytes()[: len(dump.read_bytes()) * 2 // 3])
    with pytest.raises(UserError, match="truncated"):
        ingest.DumpIngester(str(truncated), tmp_path / "three", "en", ingest.IngestSettings(workers=2)).run()


def test_page_kind_markers_are_configurable(tmp_path, capsys):
    dump = tmp_path / "enwiki.xml"
    pages = [DumpPage(1, "Mercury", 0, "'''Mercury''' may be:\n* [[Mercury (planet)]]\n{{Set index}}"),
             DumpPage(2, "Catalogue of comets", 0, "* [[Halley]]")]
    write_pages_xml(dump, "en", pages, {})
    default = ingest.DumpIngester(str(dump), tmp_path / "a", "en").run()
    assert default["disambiguation_pages"] == 0 and default["list_pages"] == 0
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"disambiguation_templates": ["Set index"], "list_title": "^Catalogue of "}))
    assert cli.main(["ingest", "--dump", str(dump), "--lang", "en", "--out", str(tmp_path / "b"), "--no_progress",
                     "--language_profile", str(profile)]) == 0
    articles = {a.title: a for a in corpus_io.iter_articles(tmp_path / "b", "en")}
    assert articles["Mercury"].is_disambiguation and articles["Catalogue of comets"].is_list
    profile.write_text(json.dumps({"disambiguation_pattern": "x"}))
    assert cli.main(["ingest", "--dump", str(dump), "--lang", "en", "--out", str(tmp_path / "c"), "--no_progress",
                     "--language_profile", str(profile)]) == 2
    assert "unknown setting 'disambiguation_pattern'" in capsys.readouterr().err


def test_utf16_bulgarian_dump_ingests_with_localised_namespaces(shared_dir, tmp_path):
    dump = shared_dir / "data" / "wiki" / "dumps" / "bgwiki-latest-pages-articles-shortened.xml.bz2"
    counts = ingest.DumpIngester(str(dump), tmp_path, "bg").run()
    raw = bz2.decompress(dump.read_bytes()).decode("utf-16")
    assert counts["pages"] == raw.count("<page>") and counts["articles"] == 1
    [article] = corpus_io.iter_articles(tmp_path, "bg")
    [main_page] = [page for page in raw.split("<page>")[1:] if "<ns>0</ns>" in page]
    categories = len(re.findall(r"\[\[Категория:", main_page))
    assert counts["links_category"] == categories > 0
    assert article.text.startswith("Григорианският календар") and "[[" not in article.text
    assert article.links and all(article.text[l.start:l.end] == l.anchor for l in article.links)
