"""Tests of the generated demo wiki: determinism, real formats, round trip through ingestion, parallel facts,
question files."""

import collections
import hashlib
import json
import re
import unicodedata

import pytest

from class_jax import cli
from class_jax.corpus import corpus_io, dump_reader, entities, langlinks
from class_jax.demo.world import language as demo_language, wiki as demo_wiki
from class_jax.demo.world.articles import build_language_wiki
from class_jax.demo.world.facts import build_world
from class_jax.evaluation import files as evaluation_files

# Manifest count -> ingestion count that must equal it.
EXPECTED_COUNTS = {
    "pages": "pages", "main_namespace_pages": "main_namespace_pages", "articles": "articles",
    "redirects": "redirects", "redirect_loops": "redirects_loop", "broken_redirects": "redirects_broken",
    "disambiguation_pages": "disambiguation_pages", "list_pages": "list_pages",
    "other_namespace_pages": "skipped_other_namespace", "links": "links_kept", "red_links": "links_to_missing_pages",
}
XOR_FIELDS = ["answers", "id", "lang", "question", "split"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small demo wiki, generated and ingested once."""
    out = tmp_path_factory.mktemp("demo")
    manifest = demo_wiki.make_demo_wiki(out, size="small", seed=3)
    corpus = tmp_path_factory.mktemp("corpus")
    result = demo_wiki.ingest_demo_wiki(out, corpus)
    return out, manifest, corpus, result


def _digests(folder) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_generation_is_deterministic(tmp_path, small):
    out, _, _, _ = small
    again = demo_wiki.make_demo_wiki(tmp_path / "again", size="small", seed=3)
    assert _digests(tmp_path / "again") == _digests(out)
    demo_wiki.make_demo_wiki(tmp_path / "other", size="small", seed=4)
    assert _digests(tmp_path / "other") != _digests(out)
    assert again["counts"] == small[1]["counts"]


def test_files_are_real_dump_formats(small):
    out, manifest, _, _ = small
    for lang in manifest["languages"]:
        dump = out / manifest["files"][lang]["dump"]
        assert dump.read_bytes()[:3] == b"BZh"
        reader = dump_reader.DumpReader(str(dump))
        pages = list(reader.pages())
        assert reader.site_info.dbname == f"{lang}wiki" and len(pages) == manifest["counts"][lang]["pages"]
        sql = out / manifest["files"][lang]["langlinks"]
        assert sql.read_bytes()[:2] == b"\x1f\x8b"
        rows = list(langlinks.LangLinksReader(str(sql)))
        assert len(rows) == manifest["counts"][lang]["langlinks"]
        page_ids = {page.page_id for page in pages if page.namespace == 0 and page.redirect_target is None}
        assert {row.from_page_id for row in rows} <= page_ids
        assert lang not in {row.lang for row in rows}


def test_round_trip_counts_match_the_manifest(small):
    _, manifest, corpus, result = small
    for lang in manifest["languages"]:
        expected, found = manifest["counts"][lang], result["languages"][lang]
        for written, ingested in EXPECTED_COUNTS.items():
            assert found.get(ingested, 0) == expected.get(written, 0), (lang, written)
        assert found["langlinks"] + found.get("langlinks_skipped_unknown_page_id", 0) == expected["langlinks"]
        assert found.get("pages_with_markup_residue", 0) == 0
        assert found["links_kept"] > 0 and found["passages"] > 0
    stale = sum(counts["stale_langlinks"] for counts in manifest["counts"].values())
    assert result["entities"]["langlinks_skipped_unknown_title"] == stale
    assert result["entities"]["entities"] == manifest["entities"]["linked_across_languages"]
    assert set(corpus_io.corpus_languages(corpus)) == set(manifest["languages"])


def test_languages_scripts_and_uneven_coverage(small):
    _, manifest, corpus, _ = small
    languages = manifest["languages"]
    assert len(languages) >= 6 and languages[0] == "en"
    scripts = {}
    for lang in languages:
        titles = [a.title for a in corpus_io.iter_articles(corpus, lang)]
        letters = [ch for title in titles for ch in title if ch.isalpha()]
        scripts[lang] = collections.Counter(unicodedata.name(ch).split()[0] for ch in letters).most_common(1)[0][0]
    non_latin = {lang for lang, script in scripts.items() if script != "LATIN"}
    assert len(non_latin) >= 3, scripts
    table = entities.EntityTable.from_corpus(corpus)
    english_entities = {entity for entity, titles in table if "en" in titles}
    assert english_entities == {entity for entity, _ in table}  # English has every entity.
    articles = {lang: manifest["counts"][lang]["articles"] for lang in languages}
    assert all(articles["en"] > count for lang, count in articles.items() if lang != "en")
    assert len(set(articles.values())) > 2


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.。!?？])\s*", text.replace("\n", " ")) if s]


def test_parallel_sentences_share_linked_entities_but_not_always_all_facts(small):
    """Mining can pair sentences by shared linked entities; non-English articles drop and reorder facts."""
    _, manifest, corpus, _ = small
    table = entities.EntityTable.from_corpus(corpus)
    english = {a.title: a for a in corpus_io.iter_articles(corpus, "en")}
    for lang in [lang for lang in manifest["languages"] if lang != "en"]:
        pairs = fewer_links = 0
        for article in corpus_io.iter_articles(corpus, lang):
            counterpart = english.get(table.title_in(lang, article.title, "en") or "")
            if counterpart is None or article.is_disambiguation or article.is_list:
                continue
            english_targets = {link.target for link in counterpart.links}
            translated = {table.title_in(lang, link.target, "en") for link in article.links}
            pairs += len(translated & english_targets)
            fewer_links += len(article.links) < len(counterpart.links)
        assert pairs >= 10, lang
        assert fewer_links > 0, lang


def test_questions_are_xor_tydi_records_with_answers_in_the_text(small, shared_dir):
    out, manifest, corpus, _ = small
    real_fields = sorted(json.loads((shared_dir / "data" / "xor_tydi" / "xor_dev_full_v1_1.jsonl")
                                    .open(encoding="utf-8").readline()))
    assert real_fields == XOR_FIELDS
    english_text = " ".join(p.text for p in corpus_io.iter_passages(corpus, "en"))
    for name, relative in manifest["question_files"].items():
        path = out / relative
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert records and all(sorted(record) == XOR_FIELDS for record in records)
        gold = evaluation_files.load_gold_questions(path)
        assert len(gold) == len(records) == sum(manifest["questions"][name].values())
        assert all(record["split"] in name for record in records)
        assert {record["lang"] for record in records} <= set(manifest["languages"]) - {"en"}
        assert all(re.fullmatch(r"-?\d+", record["id"]) for record in records)
        if "retrieve" in name:
            assert all(record["answers"][0] in english_text for record in records)
    retrieve = {r["id"] for r in map(json.loads, (out / "xor_tydi" / "xor_dev_retrieve_eng_span_v1_1.jsonl")
                                     .read_text(encoding="utf-8").splitlines())}
    train_full = {r["id"] for r in map(json.loads, (out / "xor_tydi" / "xor_train_full.jsonl")
                                       .read_text(encoding="utf-8").splitlines())}
    assert not retrieve & train_full  # A question keeps its split across both kinds.


def test_in_language_answers_are_stated_in_that_language(small):
    """Full answers of facts that the language's own articles state appear in its passages."""
    out, manifest, corpus, _ = small
    records = [json.loads(line) for name in ("xor_train_full.jsonl", "xor_dev_full_v1_1.jsonl")
               for line in (out / "xor_tydi" / name).read_text(encoding="utf-8").splitlines()]
    by_lang = collections.defaultdict(list)
    for record in records:
        by_lang[record["lang"]].append(record["answers"][0])
    for lang, answers in by_lang.items():
        text = " ".join(p.text for p in corpus_io.iter_passages(corpus, lang))
        found = sum(answer.replace("\u00a0", " ") in text for answer in answers)
        assert found >= 0.6 * len(answers), (lang, found, len(answers))


def test_english_states_every_fact_and_others_a_subset():
    world = build_world("small", 5, demo_language.DEFAULT_LANGUAGES)
    english = build_language_wiki(world, "en", seed=1)
    assert english.stated_facts == {f for f in world.facts if world.entities[f.subject].kind != "red_person"}
    for lang in ("ja", "ar"):
        wiki = build_language_wiki(world, lang, seed=1)
        assert wiki.stated_facts < english.stated_facts


def test_default_size_is_a_few_hundred_entities_and_fast(tmp_path):
    import time
    started = time.time()
    manifest = demo_wiki.make_demo_wiki(tmp_path, size="default", seed=0)
    assert time.time() - started < 20  # Seconds on a loaded CI core; ~1 s on a laptop.
    assert 300 <= sum(manifest["entities"]["world"].values()) <= 800
    assert sum(counts["articles"] for counts in manifest["counts"].values()) > 1500
    assert all(sum(per_lang.values()) > 100 for per_lang in manifest["questions"].values())


def test_cli_make_demo_wiki_and_bad_arguments(tmp_path, capsys):
    assert cli.main(["make-demo-wiki", "--out", str(tmp_path / "w"), "--size", "small",
                     "--languages", "en,ja,ko"]) == 0
    output = capsys.readouterr().out
    assert "ja" in output and "xor_dev_full_v1_1.jsonl" in output
    manifest = json.loads((tmp_path / "w" / "demo_manifest.json").read_text())
    assert manifest["languages"] == ["en", "ja", "ko"]
    for lang in manifest["languages"]:
        files = manifest["files"][lang]
        assert cli.main(["ingest", "--dump", str(tmp_path / "w" / files["dump"]), "--lang", lang, "--out",
                         str(tmp_path / "corpus"), "--langlinks", str(tmp_path / "w" / files["langlinks"]),
                         "--no_progress"]) == 0
    report = capsys.readouterr().out
    assert re.search(r"entities\s+\d+", report) and "langlinks used" in report
    table = entities.EntityTable.from_corpus(tmp_path / "corpus")
    assert len(table) == sum(1 for _, titles in table if {"en"} < set(titles)) > 0
    assert cli.main(["make-demo-wiki", "--out", str(tmp_path / "x"), "--languages", "en,xx"]) == 2
    assert "no demo templates for xx" in capsys.readouterr().err
    assert cli.main(["make-demo-wiki", "--out", str(tmp_path / "x"), "--languages", "ja,en"]) == 2
    assert "must start with en" in capsys.readouterr().err


@pytest.mark.slow
def test_default_demo_wiki_round_trips(tmp_path):
    manifest = demo_wiki.make_demo_wiki(tmp_path / "demo", size="default", seed=0)
    result = demo_wiki.ingest_demo_wiki(tmp_path / "demo", tmp_path / "corpus")
    for lang in manifest["languages"]:
        for written, ingested in EXPECTED_COUNTS.items():
            assert result["languages"][lang].get(ingested, 0) == manifest["counts"][lang].get(written, 0)
    assert sum(counts["passages"] for counts in result["languages"].values()) >= 2000
    assert result["entities"]["entities"] == manifest["entities"]["linked_across_languages"]


@pytest.mark.parametrize("size,seed", [("small", 0), ("small", 1), ("small", 2), ("default", 0), ("default", 7)])
def test_titles_are_unique_in_every_language(size, seed):
    """Transliteration can merge names (Arabic writes e/i and o/u alike); no two pages may share a title."""
    world = build_world(size, seed, demo_language.DEFAULT_LANGUAGES)
    for lang in world.languages:
        titles = [page.title for page in build_language_wiki(world, lang, seed=seed).pages]
        duplicates = [title for title, count in collections.Counter(titles).items() if count > 1]
        assert not duplicates, (lang, duplicates)
