"""Tests for sentence splitting and MLQA-PT anchor-cloze extraction."""

import re

import pytest

from class_jax.mining import mlqa_pt
from class_jax.corpus import sentences
from class_jax.corpus.types import Article, Link, Passage


def make_article(lang: str, page_id: int, title: str, marked: str, **flags) -> Article:
    """Builds an Article from text with [[Target|anchor]] / [[anchor]] marks, computing the link spans."""
    text_parts, links, position = [], [], 0
    cursor = 0
    for match in re.finditer(r"\[\[([^|\]]+)(?:\|([^\]]+))?\]\]", marked):
        before = marked[cursor:match.start()]
        text_parts.append(before)
        position += len(before)
        target, anchor = match.group(1), match.group(2) or match.group(1)
        links.append(Link(position, position + len(anchor), anchor, target))
        text_parts.append(anchor)
        position += len(anchor)
        cursor = match.end()
    text_parts.append(marked[cursor:])
    return Article(lang=lang, page_id=page_id, title=title, text="".join(text_parts), links=tuple(links), **flags)


def split(text: str, lang: str) -> list[str]:
    return [text[start:end] for start, end in sentences.split_sentences(text, lang)]


@pytest.mark.parametrize("lang, text, expected", [
    ("en", "Mr. Smith met J. R. R. Tolkien in the U.S. in 1950. They talked! Did it rain? \"Yes.\" Pi is 3.14.",
     ["Mr. Smith met J. R. R. Tolkien in the U.S. in 1950.", "They talked!", "Did it rain?", "\"Yes.\"",
      "Pi is 3.14."]),
    ("de", "Er wurde am 3. Oktober 1990 geboren. Das war z. B. im Jahr 2000. Die Stadt liegt am Rhein.",
     ["Er wurde am 3. Oktober 1990 geboren.", "Das war z. B. im Jahr 2000.", "Die Stadt liegt am Rhein."]),
    ("ja", "東京は日本の首都である。人口は多い！「本当？」と彼は言った。次の文",
     ["東京は日本の首都である。", "人口は多い！", "「本当？」と彼は言った。", "次の文"]),
    ("zh", "北京是中国的首都。你知道吗？知道！", ["北京是中国的首都。", "你知道吗？", "知道！"]),
    ("ar", "القاهرة هي عاصمة مصر. هل تعرف ذلك؟ نعم أعرف.", ["القاهرة هي عاصمة مصر.", "هل تعرف ذلك؟", "نعم أعرف."]),
    ("bn", "রবীন্দ্রনাথ ঠাকুর কলকাতায় জন্মগ্রহণ করেন। তিনি নোবেল পুরস্কার পান।",
     ["রবীন্দ্রনাথ ঠাকুর কলকাতায় জন্মগ্রহণ করেন।", "তিনি নোবেল পুরস্কার পান।"]),
    ("hi", "दिल्ली भारत की राजधानी है। यह बड़ा शहर है॥", ["दिल्ली भारत की राजधानी है।", "यह बड़ा शहर है॥"]),
    ("ru", "Город основан в 1147 г. Юрием Долгоруким. Это столица.",
     ["Город основан в 1147 г. Юрием Долгоруким.", "Это столица."]),
    ("ko", "서울은 대한민국의 수도이다. 인구가 많다.", ["서울은 대한민국의 수도이다.", "인구가 많다."]),
    ("en", "History\nThe tower opened in 1889. It is tall.", ["History", "The tower opened in 1889.", "It is tall."]),
])
def test_split_sentences(lang, text, expected):
    assert split(text, lang) == expected


def test_split_sentence_spans_index_the_original_text():
    text = "  First one.   Second one!\n\n Third?  "
    spans = sentences.split_sentences(text, "en")
    assert [text[start:end] for start, end in spans] == ["First one.", "Second one!", "Third?"]
    assert all(text[start] != " " and text[end - 1] != " " for start, end in spans)


EIFFEL = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in [[Paris]], France. "
          "It was designed by the company of [[Gustave Eiffel]] and completed in [[1889]].")


def test_extract_english_clozes_and_fields():
    extractor = mlqa_pt.AnchorClozeExtractor()
    examples = extractor.extract(make_article("en", 7, "Eiffel Tower", EIFFEL))
    assert [(example.cloze, example.answer, example.answer_title) for example in examples] == [
        ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in _X_, France.", "Paris", "Paris"),
        ("It was designed by the company of _X_ and completed in 1889.", "Gustave Eiffel", "Gustave Eiffel"),
        ("It was designed by the company of Gustave Eiffel and completed in _X_.", "1889", "1889"),
    ]
    assert {example.source_title for example in examples} == {"Eiffel Tower"}
    assert {example.source_page_id for example in examples} == {7}
    assert all(example.source_passage_id is None for example in examples)
    assert all(re.fullmatch(r"mlqa-en-[0-9a-f]{16}", example.qid) for example in examples)
    assert len({example.qid for example in examples}) == 3
    assert set(examples[0].to_dict()) == {"qid", "lang", "cloze", "answer", "answer_title", "source_title",
                                         "source_page_id", "source_passage_id"}


def test_qids_are_stable_across_runs_and_mask_tokens():
    article = make_article("en", 7, "Eiffel Tower", EIFFEL)
    first = [example.qid for example in mlqa_pt.AnchorClozeExtractor().extract(article)]
    config = mlqa_pt.AnchorClozeConfig(mask_token="[MASK]")
    second = mlqa_pt.AnchorClozeExtractor(config).extract(article)
    assert first == [example.qid for example in second]
    assert second[0].cloze.endswith("in [MASK], France.")


def test_date_and_number_answers_are_dropped_only_when_configured():
    article = make_article("en", 3, "Town", "The town was founded in [[1850]] by settlers from the east. "
                                            "It had [[1,234]] inhabitants at the last census count.")
    kept_all = mlqa_pt.AnchorClozeExtractor().extract(article)
    assert [example.answer for example in kept_all] == ["1850", "1,234"]
    extractor = mlqa_pt.AnchorClozeExtractor(
        mlqa_pt.AnchorClozeConfig(drop_date_answers=True, drop_numeric_answers=True))
    assert extractor.extract(article) == []
    assert extractor.report()["dropped"] == {"answer_is_date": 1, "answer_is_number": 1}


def test_every_link_gets_exactly_one_counted_outcome():
    marked = "\n".join([
        "[[Geography]]",  # A heading: no terminator.
        "The river flows [[North Sea|north]].",  # Three words of context: too short.
        "The [[Paris]] metro and the Paris airport are both busy places in the city.",  # Anchor twice.
        "The team was coached by [[Real Madrid Club de Fútbol Academy Youth Team Coach]] for years.",  # Long answer.
        "The town of Springfield hosts a museum of [[Springfield]] history and a large park.",  # Self link.
        "The old bridge crosses the [[Danube (river)|river]] near the Danube delta in the east.",  # Title in cloze.
        "The [[Rhine]] flows past Cologne, and the Rhine carries barges to the sea every day.",  # Anchor twice.
        "Many merchants traded wool with [[Flanders]] during the later Middle Ages in Europe.",  # Kept.
        "Many merchants traded wool with [[Flanders]] during the later Middle Ages in Europe.",  # Duplicate.
        ("It is said that " + "very " * 70 + "many people visit [[Rome]] each year."),  # Too long.
    ])
    article = make_article("en", 11, "Springfield", marked)
    broken = Link(0, 5, "Wrong", "Wrong")  # Anchor text does not match the text at its span.
    article = Article(article.lang, article.page_id, article.title, article.text, article.links + (broken,))
    extractor = mlqa_pt.AnchorClozeExtractor()
    examples = extractor.extract(article)
    assert [example.answer for example in examples] == ["Flanders"]
    report = extractor.report()
    assert report["dropped"] == {
        "sentence_unterminated": 1, "sentence_too_short": 1, "anchor_appears_twice": 2, "answer_too_long": 1,
        "self_link": 1, "answer_title_in_cloze": 1, "duplicate_cloze": 1, "sentence_too_long": 1,
        "bad_link_span": 1}
    assert report["links"] == len(article.links) == report["kept"] + sum(report["dropped"].values())


def test_link_across_sentence_boundary_is_dropped():
    text = "The first sentence ends here. The second sentence starts here and goes on."
    start = text.index("here.")
    end = text.index(" starts")
    article = Article("en", 1, "X", text, (Link(start, end, text[start:end], "Target"),))
    extractor = mlqa_pt.AnchorClozeExtractor()
    assert extractor.extract(article) == []
    assert extractor.report()["dropped"] == {"link_crosses_sentence": 1}


def test_disambiguation_and_list_pages_are_skipped_and_counted():
    extractor = mlqa_pt.AnchorClozeExtractor()
    extractor.extract(make_article("en", 1, "Mercury", EIFFEL, is_disambiguation=True))
    extractor.extract(make_article("en", 2, "List of towers", EIFFEL, is_list=True))
    assert extractor.report()["skipped_article"] == {"disambiguation": 1, "list": 1}
    assert extractor.report()["links"] == 0


@pytest.mark.parametrize("lang, title, marked, cloze, answer", [
    ("ja", "東京タワー", "東京タワーは[[東京都]]港区芝公園にある総合電波塔である。",
     "東京タワーは_X_港区芝公園にある総合電波塔である。", "東京都"),
    ("zh", "长江", "长江是[[亚洲]]第一长河，全长约6300公里。", "长江是_X_第一长河，全长约6300公里。", "亚洲"),
    ("ko", "한강", "한강은 [[서울특별시]]를 가로질러 흐르는 큰 강이다.", "한강은 _X_를 가로질러 흐르는 큰 강이다.", "서울특별시"),
    ("ru", "Волга", "Волга впадает в [[Каспийское море]] и является самой длинной рекой Европы.",
     "Волга впадает в _X_ и является самой длинной рекой Европы.", "Каспийское море"),
    ("ar", "النيل", "يصب نهر النيل في [[البحر الأبيض المتوسط]] بعد أن يعبر مصر.",
     "يصب نهر النيل في _X_ بعد أن يعبر مصر.", "البحر الأبيض المتوسط"),
    ("de", "Rhein", "Der Rhein mündet bei Rotterdam in die [[Nordsee]] und ist ein wichtiger Wasserweg.",
     "Der Rhein mündet bei Rotterdam in die _X_ und ist ein wichtiger Wasserweg.", "Nordsee"),
])
def test_extract_in_several_scripts(lang, title, marked, cloze, answer):
    extractor = mlqa_pt.AnchorClozeExtractor()
    examples = extractor.extract(make_article(lang, 5, title, marked))
    assert [(example.cloze, example.answer, example.lang) for example in examples] == [(cloze, answer, lang)]


def test_unspaced_languages_measure_length_in_characters():
    # Ten words would be required of a spaced language; here eleven characters of context suffice.
    article = make_article("ja", 1, "富士山", "富士山は[[静岡県]]と山梨県にまたがる山。")
    assert len(mlqa_pt.AnchorClozeExtractor().extract(article)) == 1
    too_short = make_article("ja", 2, "山", "山は[[静岡県]]。")
    extractor = mlqa_pt.AnchorClozeExtractor()
    assert extractor.extract(too_short) == []
    assert extractor.report()["dropped"] == {"sentence_too_short": 1}


def test_source_passage_ids_follow_the_anchor():
    marked = ("The Danube flows through [[Vienna]] and many other capitals of central Europe. "
              "Downstream the river reaches [[Budapest]] after passing the Danube Bend. "
              "Ships from [[Vienna]] still sail all the way down to the Black Sea ports.")
    article = make_article("en", 42, "Danube", marked)
    text = article.text
    cut = text.index("Downstream")
    first, second = text[:cut], text[cut:]

    def passage(index: int, chunk: str, offset: int) -> Passage:
        links = tuple(Link(link.start - offset, link.end - offset, link.anchor, link.target)
                      for link in article.links if offset <= link.start and link.end <= offset + len(chunk))
        # Passages are whitespace-normalised by the passage builder; the locator must not rely on offsets.
        return Passage(f"en:42:{index}", "en", "Danube", "  ".join(chunk.split()), links)

    passages = [passage(0, first, 0), passage(1, second, cut)]
    extractor = mlqa_pt.AnchorClozeExtractor()
    examples = extractor.extract(article, passages)
    assert [(example.answer, example.source_passage_id) for example in examples] == [
        ("Vienna", "en:42:0"), ("Budapest", "en:42:1"), ("Vienna", "en:42:1")]
    assert extractor.report()["passage_not_found"] == 0


def test_repeated_anchors_are_told_apart_by_context_when_a_passage_is_missing():
    sentence = "Trade with [[Venice]] grew quickly during the {} century across the whole Mediterranean."
    ordinals = ["tenth", "eleventh", "twelfth", "thirteenth"]
    article = make_article("en", 9, "Trade", " ".join(sentence.format(ordinal) for ordinal in ordinals))
    starts = [match.start() for match in re.finditer("Trade with", article.text)]
    bounds = list(zip(starts, starts[1:] + [len(article.text)]))
    passages = []
    for index, (start, end) in enumerate(bounds):
        links = tuple(Link(link.start - start, link.end - start, link.anchor, link.target)
                      for link in article.links if start <= link.start < end)
        passages.append(Passage(f"en:9:{index}", "en", "Trade", article.text[start:end].strip(), links))
    extractor = mlqa_pt.AnchorClozeExtractor()
    # Passage 1 is missing: four Venice links, three passages linking Venice; order alone cannot decide.
    examples = extractor.extract(article, [passages[3], passages[0], passages[2]])
    assert [example.source_passage_id for example in examples] == ["en:9:0", None, "en:9:2", "en:9:3"]
    assert extractor.report()["passage_not_found"] == 1


def test_iter_anchor_clozes_groups_passages_by_page_and_counts_missing_ones():
    danube = make_article("en", 42, "Danube", "The Danube flows through [[Vienna]] and other capitals of Europe.")
    tower = make_article("en", 7, "Eiffel Tower", EIFFEL)
    passages = [Passage("en:42:0", "en", "Danube", danube.text, danube.links)]
    extractor = mlqa_pt.AnchorClozeExtractor()
    examples = list(mlqa_pt.iter_anchor_clozes([danube, tower], extractor, passages))
    assert [example.source_passage_id for example in examples] == ["en:42:0", None, None, None]
    assert extractor.report()["passage_not_found"] == 3


@pytest.mark.parametrize("answer, kind", [
    ("1889", "date"), ("3 October 1990", "date"), ("1990年5月3日", "date"), ("1988년", "date"),
    ("12 мая 1945", "date"), ("2001-09-11", "date"), ("42", "number"), ("1,234", "number"), ("3.5%", "number"),
    ("Paris", "entity"), ("Boeing 747", "entity"), ("東京", "entity")])
def test_answer_kind(answer, kind):
    assert mlqa_pt.answer_kind(answer) == kind


def test_blank_mask_token_is_rejected():
    with pytest.raises(ValueError):
        mlqa_pt.AnchorClozeExtractor(mlqa_pt.AnchorClozeConfig(mask_token=" "))
