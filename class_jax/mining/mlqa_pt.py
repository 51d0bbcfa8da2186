"""MLQA-PT examples: cloze queries made from hyperlink anchors in target-language articles.

Stage 2 in the method: docs/method.md#stage-2-mlqa-pt.

Every hyperlink anchor is an answer candidate. The sentence holding it, with the anchor replaced by a mask token,
becomes a cloze query; the link target names the answer entity. The cloze is later rewritten into a natural
question (rewrite.py). Every link ends in exactly one outcome, "kept" or one counted drop reason, so a run can
say where its candidates went.

The answer is the anchor text by default. With English answers (`answer_lang="en"`, the release's
`mss.ICL.query.en.anchor` for XOR-Retrieve) it is the linked entity's English title without disambiguator, and
anchors whose entity has no English article are dropped (docs/data_formats.md, "MLQA-PT answers").
"""

import collections
import dataclasses
import hashlib
import math
import re
import unicodedata
from typing import Iterable, Iterator, Mapping, Sequence

from class_jax.corpus import language_scripts
from class_jax.corpus import sentences
from class_jax.corpus.types import Article, Link, Passage

RELEASED_MASK_TOKEN = "_X_"

# What `AnchorCloze.answer` is: the anchor text in the article's language (the default), or the English name of
# the linked entity (the release's `mss.ICL.query.en.anchor`, stage 2 of the XOR-Retrieve pipeline, whose
# passages and gold answers are English).
TARGET_ANSWERS = "target"
ENGLISH_ANSWERS = "en"
ANSWER_LANGS = (TARGET_ANSWERS, ENGLISH_ANSWERS)

# Month names (lower-case, with the genitive/partitive forms dates use) for the date-answer filter.
_MONTH_WORDS = frozenset("""
january february march april may june july august september october november december
januar jänner februar märz mai juni juli oktober dezember
janvier février mars avril juin juillet août septembre octobre novembre décembre
enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre
gennaio febbraio aprile maggio giugno luglio settembre ottobre dicembre
tammikuuta helmikuuta maaliskuuta huhtikuuta toukokuuta kesäkuuta heinäkuuta elokuuta syyskuuta lokakuuta
marraskuuta joulukuuta tammikuu helmikuu maaliskuu huhtikuu toukokuu kesäkuu heinäkuu elokuu syyskuu lokakuu
marraskuu joulukuu
января февраля марта апреля мая июня июля августа сентября октября ноября декабря
январь февраль март апрель май июнь июль август сентябрь октябрь ноябрь декабрь
""".split())
_NUMBER_PATTERN = re.compile(r"^[+\-−]?\d[\d\s,.'’]*%?$")
# A year: three or four digits alone (year-page links), or any number with a year word or suffix attached
# ("1990年", "1990년", "1990 г.", "44 BC").
_YEAR_PATTERN = re.compile(r"^(?:\d{3,4}|\d{1,4}\s*(?:年|년|г\.?|год|ad|bc|ce|bce|v\.?\s*chr\.?))$", re.IGNORECASE)
_DISAMBIGUATOR = re.compile(r"\s*\([^)]*\)\s*$")
_CJK_DATE_PATTERN = re.compile(r"^\d{1,4}\s*[年년]\s*(?:\d{1,2}\s*[月월])?\s*(?:\d{1,2}\s*[日일])?$|"
                               r"^\d{1,2}\s*[月월]\s*(?:\d{1,2}\s*[日일])?$")
_NUMERIC_DATE_PATTERN = re.compile(r"^\d{1,4}[-./]\d{1,2}[-./]\d{1,4}$")
# Letters and digits of the Latin script: the word characters an English name must not touch to count as a mention.
_LATIN_WORD_CHAR = "0-9a-z\u00aa\u00b5\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"


@dataclasses.dataclass(frozen=True)
class AnchorClozeConfig:
    """What counts as a usable anchor cloze.

    Length is measured in words, or in characters for languages written without spaces (ja, zh, th, ...);
    the `*_unspaced` bounds apply there. Sentence length is measured on the cloze without its mask.

    Attributes:
      mask_token: replaces the anchor in the cloze; the released CLASS data uses "_X_".
      min_sentence_words: shortest context, in English words (other spaced languages scale it by
        `language_scripts.UNITS_PER_ENGLISH_WORD`).
      max_sentence_words: longest context, in English words (scaled likewise); mT5 queries are cut at 50
        tokens, about 35-40 words.
      min_sentence_chars_unspaced: shortest context in characters for unspaced languages.
      max_sentence_chars_unspaced: longest context in characters for unspaced languages.
      max_answer_words: longest answer, in words.
      max_answer_chars_unspaced: longest answer in characters for unspaced languages.
      drop_date_answers: drop anchors that are dates or years.
      drop_numeric_answers: drop anchors that are plain numbers.
      require_terminated_sentence: drop "sentences" that do not end in a terminator (headings, list items,
        captions, sentences cut at a passage edge).
      max_clozes_per_sentence: keep at most this many anchors of one sentence (None: all).
      skip_disambiguation_pages: ignore disambiguation pages entirely.
      skip_list_pages: ignore list pages entirely.
    """

    mask_token: str = RELEASED_MASK_TOKEN
    min_sentence_words: int = 5
    max_sentence_words: int = 40
    min_sentence_chars_unspaced: int = 10
    max_sentence_chars_unspaced: int = 100
    max_answer_words: int = 6
    max_answer_chars_unspaced: int = 20
    drop_date_answers: bool = False
    drop_numeric_answers: bool = False
    require_terminated_sentence: bool = True
    max_clozes_per_sentence: int | None = None
    skip_disambiguation_pages: bool = True
    skip_list_pages: bool = True


@dataclasses.dataclass(frozen=True)
class AnchorCloze:
    """One MLQA-PT cloze example.

    Attributes:
      qid: stable id, "mlqa-{lang}-{16 hex}", a hash of language, page id, anchor span and answer.
      lang: language code of the article.
      cloze: the sentence with the anchor replaced by the mask token.
      answer: the anchor text.
      answer_title: the link target (the answer entity's page title).
      source_title: title of the article the sentence comes from.
      source_page_id: page id of that article.
      source_passage_id: id of the passage holding the anchor when passages were given, else None.
      target_answer: English answers only: the anchor text (what the cloze masks); None otherwise.
      english_title: English answers only: the linked entity's English page title, disambiguator included.
      answer_lang: "en" for English answers; None for anchor-text answers (the default records).
    """

    qid: str
    lang: str
    cloze: str
    answer: str
    answer_title: str
    source_title: str
    source_page_id: int
    source_passage_id: str | None = None
    target_answer: str | None = None
    english_title: str | None = None
    answer_lang: str | None = None

    def to_dict(self) -> dict:
        record = dataclasses.asdict(self)
        if self.answer_lang is None:
            # Default records keep exactly their historical keys, so their JSONL bytes do not change.
            for name in ("target_answer", "english_title", "answer_lang"):
                del record[name]
        return record


def normalize_for_match(text: str) -> str:
    """NFKC, case-folded, punctuation turned into spaces, whitespace collapsed: the form used for leak checks."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    cleaned = "".join(" " if unicodedata.category(char)[0] in ("P", "S", "Z") else char for char in folded)
    return " ".join(cleaned.split())


def contains_phrase(text: str, phrase: str, lang: str) -> int:
    """How often `phrase` occurs in `text` after normalisation, at word boundaries in spaced languages.

    Args:
      text: text to search.
      phrase: phrase to look for.
      lang: language code; unspaced languages match anywhere, others only whole words.

    Returns:
      The number of non-overlapping occurrences (0 for an empty phrase).
    """
    needle = normalize_for_match(phrase)
    if not needle:
        return 0
    haystack = normalize_for_match(text)
    if lang in language_scripts.UNSPACED_LANGS:
        return haystack.count(needle)
    return len(re.findall(r"(?<!\w)" + re.escape(needle) + r"(?!\w)", haystack))


def contains_english_phrase(text: str, phrase: str) -> int:
    """How often an English (Latin-script) `phrase` occurs in `text` of any language, after normalisation.

    A match must not touch other Latin letters or digits, but may touch letters of other scripts: "NHKの" mentions
    "NHK" and "東京 (Tokyo)" mentions "Tokyo", where `contains_phrase` with a CJK language would match inside
    Latin words and with a spaced language would miss the first.

    Args:
      text: text to search.
      phrase: the English phrase.

    Returns:
      The number of non-overlapping occurrences (0 for an empty phrase).
    """
    needle = normalize_for_match(phrase)
    if not needle:
        return 0
    pattern = rf"(?<![{_LATIN_WORD_CHAR}]){re.escape(needle)}(?![{_LATIN_WORD_CHAR}])"
    return len(re.findall(pattern, normalize_for_match(text)))


def english_answer(english_title: str) -> str:
    """The answer string for an entity's English page title: the title without a trailing disambiguator.

    "Mercury (planet)" -> "Mercury", as the release's English anchor answers and XOR-Retrieve's answer spans read.
    A title that is only a parenthesis is kept whole.
    """
    return _DISAMBIGUATOR.sub("", english_title).strip() or english_title.strip()


def answer_kind(answer: str) -> str:
    """Classifies an answer as "date" (years included), "number" or "entity"."""
    text = unicodedata.normalize("NFKC", answer).strip()
    lowered = text.casefold()
    if _YEAR_PATTERN.match(lowered) or _CJK_DATE_PATTERN.match(text) or _NUMERIC_DATE_PATTERN.match(text):
        return "date"
    if any(char.isdigit() for char in text) and any(word.strip(".,") in _MONTH_WORDS for word in lowered.split()):
        return "date"
    if _NUMBER_PATTERN.match(text):
        return "number"
    return "entity"


def make_qid(lang: str, page_id: int, start: int, end: int, answer: str) -> str:
    """A stable id for the anchor at [start, end) of one page: the same input always gives the same id."""
    key = "\x1f".join((lang, str(page_id), str(start), str(end), answer))
    return f"mlqa-{lang}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}"


def _collapsed(text: str) -> str:
    return " ".join(text.split())


def _passage_index(passage: Passage) -> int:
    index = passage.passage_id.rsplit(":", 1)[-1]
    return int(index) if index.isdigit() else 0


def _agreement(article_side: str, passage_side: str, from_end: bool) -> int | None:
    """Characters on which two contexts agree (at their ends if `from_end`, else at their starts).

    Returns None when they disagree before either runs out: the same place in the article and in a passage can
    differ only in how far the text goes (a passage edge), never in the text itself.
    """
    if from_end:
        article_side, passage_side = article_side[::-1], passage_side[::-1]
    length = 0
    while length < min(len(article_side), len(passage_side)) and article_side[length] == passage_side[length]:
        length += 1
    return length if length == min(len(article_side), len(passage_side)) else None


class _PassageLocator:
    """Assigns each link of an article to the passage that holds it.

    Passages come from another stage, so article offsets are not assumed to carry over. Links are matched by
    (anchor, target): when the passages hold as many links with that key as the article, the n-th occurrence in
    the article is the n-th in passage order. Otherwise (passages missing or filtered) each link goes to the
    passage link whose surrounding text (whitespace collapsed, before and after) agrees with the article's for
    longest, where both sides must agree as far as the shorter one goes.
    """

    _CONTEXT_CHARS = 80

    def __init__(self, article: Article, passages: Sequence[Passage]):
        in_passages: dict[tuple[str, str], list[tuple[str, str, str]]] = collections.defaultdict(list)
        for passage in sorted(passages, key=_passage_index):
            for link in passage.links:
                before, after = self._context(passage.text, link)
                in_passages[(link.anchor, link.target)].append((passage.passage_id, before, after))
        in_article: dict[tuple[str, str], list[Link]] = collections.defaultdict(list)
        for link in sorted(article.links, key=lambda item: (item.start, item.end)):
            in_article[(link.anchor, link.target)].append(link)
        self._assigned: dict[tuple[int, int], str] = {}
        for key, links in in_article.items():
            candidates = in_passages.get(key, [])
            if len(candidates) == len(links):
                for link, (passage_id, _, _) in zip(links, candidates):
                    self._assigned[(link.start, link.end)] = passage_id
                continue
            for link in links:
                before, after = self._context(article.text, link)
                best, best_score = None, -1
                for passage_id, passage_before, passage_after in candidates:
                    left = _agreement(before, passage_before, from_end=True)
                    right = _agreement(after, passage_after, from_end=False)
                    if left is not None and right is not None and left + right > best_score:
                        best, best_score = passage_id, left + right
                if best is not None:
                    self._assigned[(link.start, link.end)] = best

    def _context(self, text: str, link: Link) -> tuple[str, str]:
        before = _collapsed(text[max(0, link.start - self._CONTEXT_CHARS):link.start])
        after = _collapsed(text[link.end:link.end + self._CONTEXT_CHARS])
        return before, after

    def locate(self, link: Link) -> str | None:
        return self._assigned.get((link.start, link.end))


class AnchorClozeExtractor:
    """Turns articles into anchor clozes and counts what happens to every link.

    With English answers (`answer_lang="en"`), an anchor is kept only when its link target has an English article
    (the `english_titles` given to `extract`); its answer is then that article's title without disambiguator,
    and the anchor text moves to `target_answer`. The English checks come after every other one, so
    "dropped/no_english_article" and "dropped/english_answer_in_cloze" count exactly the anchors the default mode
    keeps and this one does not.

    Attributes:
      config: the extraction settings.
      answer_lang: "target" (answers are anchor texts) or "en" (answers are English titles).
      counts: Counter with "articles", "links", "kept", "passage_not_found", "skipped_article/<why>" and
        "dropped/<reason>" keys, accumulated over every `extract` call.
    """

    def __init__(self, config: AnchorClozeConfig | None = None, answer_lang: str = TARGET_ANSWERS):
        self.config = config or AnchorClozeConfig()
        if not self.config.mask_token.strip():
            raise ValueError("mask_token must not be blank")
        if answer_lang not in ANSWER_LANGS:
            raise ValueError(f"answer_lang {answer_lang!r}: choose one of {', '.join(ANSWER_LANGS)}")
        self.answer_lang = answer_lang
        self.counts: collections.Counter[str] = collections.Counter()

    def _length_bounds(self, lang: str) -> tuple[int, int, int]:
        config = self.config
        if lang in language_scripts.UNSPACED_LANGS:
            return (config.min_sentence_chars_unspaced, config.max_sentence_chars_unspaced,
                    config.max_answer_chars_unspaced)
        # Word bounds are English words; other spaced languages scale them by their words per English word
        # (a five-word English sentence is about four Korean words), rounded towards accepting.
        per_word = 1.0 if lang == "en" else language_scripts.UNITS_PER_ENGLISH_WORD.get(lang, 1.0)
        return (math.floor(config.min_sentence_words * per_word), math.ceil(config.max_sentence_words * per_word),
                config.max_answer_words)

    def _drop_reason(self, article: Article, link: Link, sentence: str, cloze: str,
                     english: str | None) -> str | None:
        """The reason to drop one anchor of one sentence, or None to keep it (`english`: its English answer)."""
        config = self.config
        answer = link.anchor.strip()
        min_context, max_context, max_answer = self._length_bounds(article.lang)
        if not answer:
            return "empty_anchor"
        if link.target.strip().casefold() == article.title.strip().casefold():
            return "self_link"
        if config.require_terminated_sentence and not sentences.ends_with_terminator(sentence):
            return "sentence_unterminated"
        if config.mask_token in sentence:
            return "mask_token_in_text"
        kind = answer_kind(answer)
        if config.drop_date_answers and kind == "date":
            return "answer_is_date"
        if config.drop_numeric_answers and kind == "number":
            return "answer_is_number"
        if language_scripts.length_units(answer, article.lang) > max_answer:
            return "answer_too_long"
        context_length = language_scripts.length_units(cloze.replace(config.mask_token, " "), article.lang)
        if context_length < min_context:
            return "sentence_too_short"
        if context_length > max_context:
            return "sentence_too_long"
        if contains_phrase(sentence, answer, article.lang) > 1:
            return "anchor_appears_twice"
        # "Mercury (planet)" is named "Mercury" in prose: compare without the disambiguator.
        title = _DISAMBIGUATOR.sub("", link.target)
        if contains_phrase(cloze.replace(config.mask_token, " "), title, article.lang):
            return "answer_title_in_cloze"
        if self.answer_lang == ENGLISH_ANSWERS:
            if english is None:
                return "no_english_article"
            # "東京 (Tokyo)": a sentence giving the English name beside the anchor answers its own question.
            if contains_english_phrase(cloze.replace(config.mask_token, " "), english):
                return "english_answer_in_cloze"
        return None

    def extract(self, article: Article, passages: Sequence[Passage] | None = None,
                english_titles: Mapping[str, str] | None = None) -> list[AnchorCloze]:
        """Makes the anchor clozes of one article.

        Args:
          article: a target-language article with its links.
          passages: the article's passages; when given, each example names the passage holding its anchor.
          english_titles: English answers only: link target -> the English title of its entity, for the targets
            that have one (a target missing here has no English article).

        Returns:
          The kept clozes, in text order.
        """
        self.counts["articles"] += 1
        if article.is_disambiguation and self.config.skip_disambiguation_pages:
            self.counts["skipped_article/disambiguation"] += 1
            return []
        if article.is_list and self.config.skip_list_pages:
            self.counts["skipped_article/list"] += 1
            return []
        locator = _PassageLocator(article, passages) if passages is not None else None
        spans = sentences.split_sentences(article.text, article.lang)
        examples: list[AnchorCloze] = []
        seen: set[tuple[str, str]] = set()
        per_sentence: collections.Counter[int] = collections.Counter()
        span_index = 0
        for link in sorted(article.links, key=lambda item: (item.start, item.end)):
            self.counts["links"] += 1
            while span_index < len(spans) and spans[span_index][1] <= link.start:
                span_index += 1
            reason, example = self._extract_link(article, link, spans, span_index, per_sentence, seen, locator,
                                                 english_titles or {})
            if example is None:
                self.counts[f"dropped/{reason}"] += 1
                continue
            self.counts["kept"] += 1
            examples.append(example)
        return examples

    def _extract_link(self, article: Article, link: Link, spans: list[tuple[int, int]], span_index: int,
                      per_sentence: collections.Counter, seen: set, locator: _PassageLocator | None,
                      english_titles: Mapping[str, str]) -> tuple[str | None, AnchorCloze | None]:
        if not (0 <= link.start < link.end <= len(article.text)) or article.text[link.start:link.end] != link.anchor:
            return "bad_link_span", None
        if span_index >= len(spans) or not (spans[span_index][0] <= link.start and link.end <= spans[span_index][1]):
            return "link_crosses_sentence", None
        sentence_start, sentence_end = spans[span_index]
        sentence = article.text[sentence_start:sentence_end]
        # Mask only the anchor without its surrounding whitespace, so the cloze keeps the sentence's spacing.
        answer = link.anchor.strip()
        local_start = link.start - sentence_start + (len(link.anchor) - len(link.anchor.lstrip()))
        cloze = sentence[:local_start] + self.config.mask_token + sentence[local_start + len(answer):]
        english_title = english_titles.get(link.target) if self.answer_lang == ENGLISH_ANSWERS else None
        english = english_answer(english_title) if english_title else None
        reason = self._drop_reason(article, link, sentence, cloze, english)
        if reason:
            return reason, None
        if (cloze, answer) in seen:
            return "duplicate_cloze", None
        cap = self.config.max_clozes_per_sentence
        if cap is not None and per_sentence[span_index] >= cap:
            return "sentence_cap", None
        seen.add((cloze, answer))
        per_sentence[span_index] += 1
        passage_id = None
        if locator is not None:
            passage_id = locator.locate(link)
            if passage_id is None:
                self.counts["passage_not_found"] += 1
        # The qid hashes the anchor in both modes, so a record of either mode names the same cloze.
        qid = make_qid(article.lang, article.page_id, link.start, link.end, answer)
        common = dict(qid=qid, lang=article.lang, cloze=cloze, answer_title=link.target, source_title=article.title,
                      source_page_id=article.page_id, source_passage_id=passage_id)
        if english is None:
            return None, AnchorCloze(answer=answer, **common)
        return None, AnchorCloze(answer=english, target_answer=answer, english_title=english_title,
                                 answer_lang=ENGLISH_ANSWERS, **common)

    def report(self) -> dict:
        """Counts so far as a plain dict: totals plus {"dropped": {reason: n}, "skipped_article": {why: n}}."""
        summary: dict = {"articles": self.counts["articles"], "links": self.counts["links"],
                         "kept": self.counts["kept"], "passage_not_found": self.counts["passage_not_found"],
                         "dropped": {}, "skipped_article": {}}
        for key, value in sorted(self.counts.items()):
            group, _, reason = key.partition("/")
            if reason:
                summary[group][reason] = value
        return summary


def passage_page_key(passage: Passage) -> tuple[str, int]:
    """(lang, page_id) of a passage, from its id f"{lang}:{page_id}:{index}"."""
    lang, page_id, _ = passage.passage_id.rsplit(":", 2)
    return lang, int(page_id)


def iter_anchor_clozes(articles: Iterable[Article], extractor: AnchorClozeExtractor,
                       passages: Iterable[Passage] | None = None) -> Iterator[AnchorCloze]:
    """Extracts clozes from many articles, streaming over the articles.

    Args:
      articles: target-language articles.
      extractor: does the work and keeps the counts (read `extractor.report()` afterwards).
      passages: passages of those articles (any order); they are grouped by page in memory, so for all of
        Wikipedia join passages to articles upstream and call `extractor.extract` per article instead.

    Yields:
      AnchorCloze records, article by article.
    """
    by_page: dict[tuple[str, int], list[Passage]] = collections.defaultdict(list)
    for passage in passages or ():
        by_page[passage_page_key(passage)].append(passage)
    for article in articles:
        page_passages = by_page.get((article.lang, article.page_id), []) if passages is not None else None
        yield from extractor.extract(article, page_passages)
