"""Tests of w100 passage splitting and of the corpus file formats."""

import gzip
import json
import random

import pytest

from class_jax.corpus import corpus_io, passages
from class_jax.corpus.types import Article, Link, Passage
from class_jax.runtime.errors import UserError


def article_with_links(words: int, link_every: int, lang: str = "en") -> Article:
    parts, links, position = [], [], 0
    for index in range(words):
        word = f"w{index}"
        if index % link_every == 0:
            word = f"Anchor {index}"
            links.append(Link(position, position + len(word), word, f"Target {index}"))
        parts.append(word)
        position += len(word) + 1
        if index % 37 == 36:
            parts[-1] += "\n"
    text = " ".join(parts).replace("\n ", "\n")
    # Recompute spans after the newline substitution (it does not change lengths).
    assert all(text[link.start:link.end] == link.anchor for link in links)
    return Article(lang=lang, page_id=7, title="Title", text=text, links=tuple(links))


def test_passages_have_100_words_stable_ids_and_keep_every_link():
    article = article_with_links(words=450, link_every=9)
    cut = passages.split_passages(article, units_per_passage=100)
    assert [p.passage_id for p in cut] == [f"en:7:{index}" for index in range(len(cut))]
    assert all(len(p.text.split()) >= 100 for p in cut[:-1])
    assert all(len(p.text.split()) <= 102 for p in cut)  # A cut never splits an anchor ("Anchor N" is 2 words).
    assert sum(len(p.text.split()) for p in cut) == len(article.text.split())
    assert all("\n" not in p.text and "\t" not in p.text for p in cut)
    assert sum(len(p.links) for p in cut) == len(article.links)
    for passage in cut:
        assert passage.title == "Title" and passage.lang == "en"
        for link in passage.links:
            assert passage.text[link.start:link.end] == link.anchor


def test_anchor_straddling_a_cut_moves_the_cut():
    text = " ".join(f"w{i}" for i in range(99)) + " New York City rest"
    start = text.index("New York")
    article = Article("en", 1, "T", text, (Link(start, start + 8, "New York", "New York"),))
    first, second = passages.split_passages(article, units_per_passage=100)
    assert first.text.endswith("New York") and second.text == "City rest"
    assert first.links[0].anchor == "New York"


def test_japanese_counts_characters():
    text = "東京は日本の首都である。" * 30
    article = Article("ja", 3, "東京", text, (Link(0, 2, "東京", "東京"),))
    cut = passages.split_passages(article, units_per_passage=150, char_units=True)
    assert [len(p.text) for p in cut] == [150, 150, 60]
    assert cut[0].links[0].anchor == "東京"


def test_empty_article_and_bad_size():
    assert passages.split_passages(Article("en", 1, "T", ""), 100) == []
    with pytest.raises(ValueError):
        passages.split_passages(Article("en", 1, "T", "x"), 0)


def test_records_round_trip_through_jsonl(tmp_path):
    article = article_with_links(words=120, link_every=10)
    cut = passages.split_passages(article)
    corpus_io.write_jsonl(tmp_path / "a.jsonl.gz", [corpus_io.article_to_json(article)])
    corpus_io.write_jsonl(tmp_path / "p.jsonl.gz", [corpus_io.passage_to_json(p) for p in cut])
    [back] = [corpus_io.article_from_json(r) for r in corpus_io.read_jsonl(tmp_path / "a.jsonl.gz")]
    assert back == article
    assert [corpus_io.passage_from_json(r) for r in corpus_io.read_jsonl(tmp_path / "p.jsonl.gz")] == cut
    record = json.loads(gzip.open(tmp_path / "p.jsonl.gz", "rt").readline())
    assert sorted(record) == ["id", "lang", "links", "text", "title"]
    assert sorted(record["links"][0]) == ["anchor", "end", "start", "target"]


def test_dpr_tsv_layout(tmp_path):
    rows = [Passage("en:1:0", "en", "A \"quoted\" title", "some text"), Passage("en:1:1", "en", "T", "more")]
    corpus_io.write_dpr_tsv(tmp_path / "psgs.tsv", rows)
    lines = (tmp_path / "psgs.tsv").read_text().splitlines()
    assert lines[0] == "id\ttext\ttitle" and lines[1] == 'en:1:0\tsome text\t"A ""quoted"" title"'


def test_atomic_write_leaves_nothing_on_failure_and_gzip_is_reproducible(tmp_path):
    with pytest.raises(RuntimeError):
        with corpus_io.atomic_write(tmp_path / "x.jsonl.gz") as out:
            out.write("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    corpus_io.write_jsonl(tmp_path / "a.jsonl.gz", [{"a": 1}])
    first = (tmp_path / "a.jsonl.gz").read_bytes()
    corpus_io.write_jsonl(tmp_path / "a.jsonl.gz", [{"a": 1}])
    assert (tmp_path / "a.jsonl.gz").read_bytes() == first


def test_corrupt_corpus_files_are_user_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(UserError, match=r"bad.jsonl: line 2: not valid JSON"):
        list(corpus_io.read_jsonl(tmp_path / "bad.jsonl"))
    with pytest.raises(UserError, match="no completed ingestion"):
        list(corpus_io.iter_articles(tmp_path, "en"))


def reference_split(article: Article, units_per_passage: int, char_units: bool) -> list[Passage]:
    """The word-by-word algorithm (one span per unit) that the block regex of `split_passages` replaces."""
    import bisect
    text = article.text
    pattern = passages._CHAR_UNIT if char_units else passages._WORD
    units = [match.span() for match in pattern.finditer(text)]
    unit_ends = [end for _, end in units]
    link_starts = [link.start for link in article.links]
    cut, first_unit, link_index = [], 0, 0
    while first_unit < len(units):
        last_unit = min(first_unit + units_per_passage, len(units)) - 1
        start, end = units[first_unit][0], units[last_unit][1]
        covering = bisect.bisect_left(link_starts, end) - 1
        if covering >= 0 and article.links[covering].end > end:
            end = article.links[covering].end
            last_unit = bisect.bisect_left(unit_ends, end)
            end = max(end, units[min(last_unit, len(units) - 1)][1])
        links, link_index = passages._links_inside(article.links, link_index, start, end)
        cut.append(Passage(passages.passage_id(article.lang, article.page_id, len(cut)), article.lang, article.title,
                           text[start:end].replace("\n", " "), links))
        first_unit = last_unit + 1
    return cut


def test_block_cuts_match_the_word_by_word_reference_on_random_text():
    rng = random.Random(0)
    alphabet = ["a", "bc", "日", "本", "語", " ", " ", "\n", "\t", "-", "x"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        links, position = [], 0
        while position < len(text) - 1 and rng.random() < 0.8:  # spans need not sit on word boundaries
            start = rng.randint(position, len(text) - 1)
            end = rng.randint(start + 1, min(len(text), start + 8))
            links.append(Link(start, end, text[start:end], "T"))
            position = end
        article = Article("xx", 1, "T", text, tuple(links))
        for units in (1, 2, 3, 7, 100):
            for char_units in (False, True):
                assert passages.split_passages(article, units, char_units) == reference_split(
                    article, units, char_units), (text, links, units, char_units)
