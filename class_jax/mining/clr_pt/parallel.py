"""CLR-PT parallel cloze mining from one English article and its target-language counterpart.

Stage 1 in the method: docs/method.md#stage-1-clr-pt.

Both articles are split into sentences; in each sentence we find the entities it mentions: its links (resolved to
cross-language entity ids) and, optionally, unlinked occurrences of the title or anchors of entities linked in
either article (Wikipedia links only an entity's first mention). A candidate pair is an English and a target
sentence that share an entity linked in at least one of them. `clr_pt_rule` decides which candidates are
parallel; a kept pair becomes a cloze pair by masking a shared entity's mention in both sentences. Every
candidate ends in exactly one outcome, "kept" or a rejection reason, and the counts say so.
"""

import collections
import dataclasses
import hashlib
import re
from typing import Iterable, Mapping, Sequence

from class_jax.mining import mlqa_pt
from class_jax.mining.clr_pt import rule as clr_pt_rule
from class_jax.corpus import language_scripts
from class_jax.corpus import sentences
from class_jax.mining.clr_pt.rule import ParallelRuleConfig
from class_jax.corpus.types import Article, Passage

_DISAMBIGUATOR = re.compile(r"\s*\([^)]*\)\s*$")
# Languages that attach case endings or particles to names ("게레피의", "Helsingissä") or clitics before them
# ("والقاهرة"): there a name is matched without a word boundary on that side.
_SUFFIXING_LANGS = frozenset({"ko", "tr", "fi", "hu", "et", "ta", "te", "ml", "kn", "bn", "mr", "ka", "eu"})
_PREFIXING_LANGS = frozenset({"ar", "fa", "ur", "he", "ps"})


@dataclasses.dataclass(frozen=True)
class LinkedArticle:
    """An article with its links resolved to cross-language entity ids.

    Attributes:
      article: the article.
      entity_id: the entity the article is about (None when it has none).
      link_entities: link target title -> entity id, for the targets that have one.
      passages: the article's passages, to name the passage holding each answer (None: not known).
    """

    article: Article
    entity_id: str | None
    link_entities: Mapping[str, str]
    passages: Sequence[Passage] | None = None


@dataclasses.dataclass(frozen=True)
class ClrPtRecord:
    """One CLR-PT example: an English and a target-language cloze with the same answer entity masked.

    Attributes:
      qid: stable id "clr-{lang}-{16 hex}" (hash of the two sentence spans and the answer entity).
      lang: the target language.
      english_cloze: the English sentence with the answer masked.
      target_cloze: the target-language sentence with the answer masked.
      answer: the English answer text (the anchor, or the title where the mention is unlinked).
      target_answer: the target-language answer text.
      answer_entity: the answer's cross-language entity id.
      article_entity: the entity both articles are about.
      english_title: the English article title.
      target_title: the target-language article title.
      english_passage_id: the English passage holding the answer ("" when passages were not given or not found).
      target_passage_id: the target-language passage holding the answer (same convention).
      parallel_score: the rule's score of the pair (higher: more shared evidence).
    """

    qid: str
    lang: str
    english_cloze: str
    target_cloze: str
    answer: str
    target_answer: str
    answer_entity: str
    article_entity: str
    english_title: str
    target_title: str
    english_passage_id: str
    target_passage_id: str
    parallel_score: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Mention:
    """An entity mentioned in a sentence (article offsets)."""

    entity_id: str
    start: int
    end: int
    text: str
    linked: bool


@dataclasses.dataclass
class _Sentence:
    index: int
    start: int
    end: int
    text: str
    mentions: list[Mention]
    quantities: clr_pt_rule.Quantities
    units: int  # Length with every name counted as one unit, for the length ratio.
    reason: str | None

    def entities(self) -> dict[str, list[Mention]]:
        by_entity: dict[str, list[Mention]] = collections.defaultdict(list)
        for mention in self.mentions:
            by_entity[mention.entity_id].append(mention)
        return by_entity


@dataclasses.dataclass
class PairMiningResult:
    """Records of one article pair and the counts of what happened to its candidates.

    Counts: article_pairs, en_sentences, target_sentences, candidate_pairs, kept_pairs, clozes,
    rejected/<reason>, unmaskable/<why> (why the best shared entity could not be masked, for pairs rejected as
    no_maskable_entity), masked_title_mention (clozes whose answer is unlinked on one side), passage_not_found.
    """

    records: list[ClrPtRecord]
    counts: collections.Counter


def make_qid(lang: str, english_page_id: int, english_span: tuple[int, int], target_page_id: int,
             target_span: tuple[int, int], entity_id: str) -> str:
    """A stable id of one cloze pair: the same sentences and answer always give the same id."""
    key = "\x1f".join(map(str, (lang, english_page_id, *english_span, target_page_id, *target_span, entity_id)))
    return f"clr-{lang}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}"


def strip_disambiguator(title: str) -> str:
    """"Mercury (planet)" -> "Mercury": how a title is written in running text."""
    return _DISAMBIGUATOR.sub("", title)


def _mention_pattern(surfaces: Iterable[str], lang: str) -> re.Pattern | None:
    """One regex finding any of `surfaces` (longest first), at the word boundaries the language has."""
    ordered = sorted(set(surfaces), key=lambda s: (-len(s), s))
    if not ordered:
        return None
    body = "|".join(re.escape(surface) for surface in ordered)
    unspaced = lang in language_scripts.UNSPACED_LANGS
    left = "" if unspaced or lang in _PREFIXING_LANGS else r"(?<!\w)"
    right = "" if unspaced or lang in _SUFFIXING_LANGS else r"(?!\w)"
    return re.compile(f"{left}(?:{body}){right}")


def _occurs(text: str, phrase: str, lang: str) -> bool:
    """Whether `phrase` occurs in `text` (case, width and punctuation folded), with the language's boundaries."""
    needle = mlqa_pt.normalize_for_match(phrase)
    return bool(needle) and bool(_mention_pattern([needle], lang).search(mlqa_pt.normalize_for_match(text)))


def _content_units(text: str, start: int, spans: Iterable[tuple[int, int]], lang: str) -> int:
    """Length of a sentence with every name span (article offsets) counted as one unit."""
    pieces, cursor = [], start
    for span_start, span_end in sorted(spans):
        if span_start < cursor:
            continue  # Overlapping spans (a name inside the subject's name) are already collapsed.
        pieces.append(text[cursor - start:span_start - start])
        pieces.append(" N " if lang not in language_scripts.UNSPACED_LANGS else "N")
        cursor = span_end
    pieces.append(text[cursor - start:])
    return language_scripts.length_units("".join(pieces), lang)


class _PassageFinder:
    """Finds the passage holding an article offset, from passages that are slices of the article text."""

    def __init__(self, article: Article, passages: Sequence[Passage] | None):
        self._spans: list[tuple[int, int, str]] = []
        if not passages:
            return
        flat = article.text.replace("\n", " ")
        cursor = 0

        def index_of(passage: Passage) -> int:
            suffix = passage.passage_id.rsplit(":", 1)[-1]
            return int(suffix) if suffix.isdigit() else 0

        for passage in sorted(passages, key=index_of):
            start = flat.find(passage.text, cursor)
            if start < 0:
                continue  # Not a slice of this text (another ingestion run): the offset lookup cannot use it.
            self._spans.append((start, start + len(passage.text), passage.passage_id))
            cursor = start + len(passage.text)

    def find(self, offset: int) -> str:
        for start, end, passage_id in self._spans:
            if start <= offset < end:
                return passage_id
        return ""


class ClrPtMiner:
    """Mines cloze pairs from article pairs with one `ParallelRuleConfig`."""

    def __init__(self, config: ParallelRuleConfig | None = None):
        self.config = config or ParallelRuleConfig()

    # -- sentences and mentions ------------------------------------------------------------------------------------

    def _lexicon(self, linked: LinkedArticle, entity_ids: set[str],
                 entity_titles: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
        """Surface text -> entity id for unlinked mentions in `linked`'s language (ambiguous surfaces dropped)."""
        lang = linked.article.lang
        surfaces: dict[str, set[str]] = collections.defaultdict(set)
        for entity_id in entity_ids:
            title = entity_titles.get(entity_id, {}).get(lang)
            if title:
                surfaces[strip_disambiguator(title)].add(entity_id)
        for link in linked.article.links:
            entity_id = linked.link_entities.get(link.target)
            if entity_id in entity_ids:
                surfaces[link.anchor.strip()].add(entity_id)
        own_names = self._own_names(linked, entity_titles)
        return {surface: next(iter(ids)) for surface, ids in surfaces.items()
                if len(ids) == 1 and len(surface) >= self.config.min_title_mention_chars and surface not in own_names}

    @staticmethod
    def _own_names(linked: LinkedArticle, entity_titles: Mapping[str, Mapping[str, str]]) -> set[str]:
        """How the article names its own subject (title without disambiguator, and the entity's title)."""
        names = {strip_disambiguator(linked.article.title)}
        title = entity_titles.get(linked.entity_id or "", {}).get(linked.article.lang)
        if title:
            names.add(strip_disambiguator(title))
        return {name for name in names if name}

    def _sentences(self, linked: LinkedArticle, lexicon: dict[str, str],
                   entity_titles: Mapping[str, Mapping[str, str]]) -> list[_Sentence]:
        article, config = linked.article, self.config
        pattern = _mention_pattern(lexicon, article.lang) if config.match_title_mentions else None
        # The subject's own name is never a mention of another entity, even where it contains one ("University
        # of Tage" contains the city "Tage"; a company may be named after its city).
        own_pattern = _mention_pattern(self._own_names(linked, entity_titles), article.lang)
        links = sorted(article.links, key=lambda link: (link.start, link.end))
        result = []
        link_index = 0
        for index, (start, end) in enumerate(sentences.split_sentences(article.text, article.lang)):
            while link_index < len(links) and links[link_index].start < start:
                link_index += 1
            mentions: list[Mention] = []
            position = link_index
            while position < len(links) and links[position].start < end:
                link = links[position]
                entity_id = linked.link_entities.get(link.target)
                if link.end <= end and entity_id and entity_id != linked.entity_id:
                    mentions.append(Mention(entity_id, link.start, link.end, link.anchor, True))
                position += 1
            text = article.text[start:end]
            own_spans = [(start + match.start(), start + match.end())
                         for match in (own_pattern.finditer(text) if own_pattern is not None else ())]
            if pattern is not None:
                taken = [(link.start, link.end) for link in links[link_index:position]] + own_spans
                for match in pattern.finditer(text):
                    span = (start + match.start(), start + match.end())
                    if any(span[0] < taken_end and taken_start < span[1] for taken_start, taken_end in taken):
                        continue
                    entity_id = lexicon[match.group()]
                    if entity_id != linked.entity_id:
                        mentions.append(Mention(entity_id, span[0], span[1], match.group(), False))
            mentions.sort(key=lambda mention: (mention.start, mention.end))
            side = "en" if article.lang == "en" else "target"
            result.append(_Sentence(
                index=index, start=start, end=end, text=text, mentions=mentions,
                quantities=clr_pt_rule.extract_quantities(text, article.lang, config.min_number_value),
                units=_content_units(text, start, [(m.start, m.end) for m in mentions] + own_spans, article.lang),
                reason=clr_pt_rule.sentence_reason(text, article.lang, side, config)))
        return result

    # -- the rule --------------------------------------------------------------------------------------------------

    def _answer_problem(self, sentence: _Sentence, mention: Mention, lang: str, title: str | None) -> str | None:
        """Why a mention cannot be the masked answer in its sentence, or None."""
        config = self.config
        answer = mention.text.strip()
        if language_scripts.length_units(answer, lang) > config.max_answer_units(lang):
            return "answer_too_long"
        if lang == "en":
            kind = mlqa_pt.answer_kind(answer)
            if (kind == "date" and config.drop_date_answers) or (kind == "number" and config.drop_numeric_answers):
                return f"answer_is_{kind}"
        rest = sentence.text[:mention.start - sentence.start] + " " + sentence.text[mention.end - sentence.start:]
        for leak in filter(None, (answer, strip_disambiguator(title) if title else None)):
            if _occurs(rest, leak, lang):
                return "answer_in_cloze"
        return None

    def _maskable(self, english: _Sentence, target: _Sentence, shared: list[str], lang: str,
                  entity_titles: Mapping[str, Mapping[str, str]]) -> tuple[list[tuple[str, Mention, Mention]], str]:
        """The shared entities that can be masked on both sides (best first), and the first problem otherwise."""
        english_by, target_by = english.entities(), target.entities()
        options, first_problem = [], ""
        for entity_id in shared:
            english_mentions, target_mentions = english_by[entity_id], target_by[entity_id]
            if len(english_mentions) > 1 or len(target_mentions) > 1:
                problem = "entity_mentioned_twice"
            elif not (english_mentions[0].linked or target_mentions[0].linked):
                problem = "not_linked"
            else:
                titles = entity_titles.get(entity_id, {})
                problem = (self._answer_problem(english, english_mentions[0], "en", titles.get("en"))
                           or self._answer_problem(target, target_mentions[0], lang, titles.get(lang)))
            if problem:
                first_problem = first_problem or problem
                continue
            options.append((entity_id, english_mentions[0], target_mentions[0]))
        # Entities linked on both sides have exact spans on both sides: prefer them, then English text order.
        options.sort(key=lambda option: (not (option[1].linked and option[2].linked), option[1].start))
        return options, first_problem

    def _evaluate(self, english: _Sentence, target: _Sentence, lang: str, english_everywhere: set[str],
                  target_everywhere: set[str], entity_titles: Mapping[str, Mapping[str, str]]
                  ) -> tuple[str | None, float, list[tuple[str, Mention, Mention]], str]:
        """(reason or None, score, maskable entities, unmaskable detail) of one candidate pair."""
        config = self.config
        reason = english.reason or target.reason
        if reason:
            return reason, 0.0, [], ""
        if mlqa_pt.normalize_for_match(english.text) == mlqa_pt.normalize_for_match(target.text):
            return "untranslated", 0.0, [], ""
        ratio = clr_pt_rule.length_ratio(english.units, target.units, lang, config)
        if not clr_pt_rule.length_ratio_ok(ratio, config):
            return "length_ratio", 0.0, [], ""
        reason = clr_pt_rule.quantities_agree(english.quantities, target.quantities, config)
        if reason:
            return reason, 0.0, [], ""
        english_entities, target_entities = set(english.entities()), set(target.entities())
        shared = sorted(english_entities & target_entities)
        if len(shared) < config.min_shared_entities:
            return "too_few_shared_entities", 0.0, [], ""
        # An entity this sentence names that the other article names only elsewhere: that article says it there.
        one_sided = (len((english_entities - target_entities) & target_everywhere)
                     + len((target_entities - english_entities) & english_everywhere))
        if one_sided > config.max_one_sided_entities:
            return "one_sided_entities", 0.0, [], ""
        options, problem = self._maskable(english, target, shared, lang, entity_titles)
        if not options:
            return "no_maskable_entity", 0.0, [], problem
        matched = clr_pt_rule.shared_quantities(english.quantities, target.quantities, config.number_tolerance)
        return None, clr_pt_rule.pair_score(len(shared), one_sided, matched, ratio), options, ""

    # -- one article pair ------------------------------------------------------------------------------------------

    def mine(self, english: LinkedArticle, target: LinkedArticle,
             entity_titles: Mapping[str, Mapping[str, str]]) -> PairMiningResult:
        """Mines the cloze pairs of one English article and its target-language counterpart.

        Args:
          english: the English article, links resolved.
          target: the same entity's article in the target language.
          entity_titles: entity id -> {lang: title} for the entities linked in either article (used to find
            unlinked mentions and answer leaks).

        Returns:
          The records (sorted by qid) and the counts.
        """
        config, lang = self.config, target.article.lang
        counts: collections.Counter = collections.Counter(article_pairs=1)
        for linked in (english, target):
            article = linked.article
            if (article.is_disambiguation and config.skip_disambiguation_pages) or (
                    article.is_list and config.skip_list_pages):
                counts["skipped_article_pairs"] += 1
                return PairMiningResult([], counts)
        self_entity = english.entity_id or target.entity_id
        linked_ids = (set(english.link_entities.values()) | set(target.link_entities.values())) - {self_entity}
        english_sentences = self._sentences(english, self._lexicon(english, linked_ids, entity_titles), entity_titles)
        target_sentences = self._sentences(target, self._lexicon(target, linked_ids, entity_titles), entity_titles)
        counts.update(en_sentences=len(english_sentences), target_sentences=len(target_sentences))
        english_everywhere = {m.entity_id for sentence in english_sentences for m in sentence.mentions}
        target_everywhere = {m.entity_id for sentence in target_sentences for m in sentence.mentions}

        candidates = self._candidates(english_sentences, target_sentences)
        counts["candidate_pairs"] += len(candidates)
        passing = []
        for i, j in candidates:
            reason, score, options, problem = self._evaluate(
                english_sentences[i], target_sentences[j], lang, english_everywhere, target_everywhere,
                entity_titles)
            if reason:
                counts[f"rejected/{reason}"] += 1
                if problem:
                    counts[f"unmaskable/{problem}"] += 1
            else:
                passing.append((score, i, j, options))
        # One-to-one: best score first; ties go to the earlier English, then target, sentence.
        passing.sort(key=lambda item: (-item[0], item[1], item[2]))
        used_english, used_target, records = set(), set(), []
        for score, i, j, options in passing:
            if i in used_english or j in used_target:
                counts["rejected/not_best_match"] += 1
                continue
            used_english.add(i)
            used_target.add(j)
            counts["kept_pairs"] += 1
            for entity_id, english_mention, target_mention in options[:config.max_masks_per_pair]:
                records.append(self._record(english, target, english_sentences[i], target_sentences[j], entity_id,
                                            english_mention, target_mention, self_entity or "", score, counts))
        counts["clozes"] += len(records)
        return PairMiningResult(sorted(records, key=lambda record: record.qid), counts)

    @staticmethod
    def _candidates(english_sentences: list[_Sentence], target_sentences: list[_Sentence]) -> list[tuple[int, int]]:
        """Sentence pairs sharing an entity that at least one of them links."""
        by_entity: dict[str, list[tuple[int, bool]]] = collections.defaultdict(list)
        for sentence in target_sentences:
            for entity_id, mentions in sentence.entities().items():
                by_entity[entity_id].append((sentence.index, any(m.linked for m in mentions)))
        pairs = set()
        for sentence in english_sentences:
            for entity_id, mentions in sentence.entities().items():
                english_linked = any(m.linked for m in mentions)
                for j, target_linked in by_entity.get(entity_id, ()):
                    if english_linked or target_linked:
                        pairs.add((sentence.index, j))
        return sorted(pairs)

    def _record(self, english: LinkedArticle, target: LinkedArticle, english_sentence: _Sentence,
                target_sentence: _Sentence, entity_id: str, english_mention: Mention, target_mention: Mention,
                article_entity: str, score: float, counts: collections.Counter) -> ClrPtRecord:
        mask = self.config.mask_token

        def cloze(sentence: _Sentence, mention: Mention) -> str:
            return (sentence.text[:mention.start - sentence.start] + mask
                    + sentence.text[mention.end - sentence.start:])

        passage_ids = []
        for linked, mention in ((english, english_mention), (target, target_mention)):
            passage_id = _PassageFinder(linked.article, linked.passages).find(mention.start)
            if linked.passages is not None and not passage_id:
                counts["passage_not_found"] += 1
            passage_ids.append(passage_id)
        if not (english_mention.linked and target_mention.linked):
            counts["masked_title_mention"] += 1
        lang = target.article.lang
        return ClrPtRecord(
            qid=make_qid(lang, english.article.page_id, (english_sentence.start, english_sentence.end),
                         target.article.page_id, (target_sentence.start, target_sentence.end), entity_id),
            lang=lang, english_cloze=cloze(english_sentence, english_mention),
            target_cloze=cloze(target_sentence, target_mention), answer=english_mention.text,
            target_answer=target_mention.text, answer_entity=entity_id, article_entity=article_entity,
            english_title=english.article.title, target_title=target.article.title,
            english_passage_id=passage_ids[0], target_passage_id=passage_ids[1],
            parallel_score=round(score, 4))


def link_with_titles(article: Article, titles: Mapping[tuple[str, str], str],
                     passages: Sequence[Passage] | None = None) -> LinkedArticle:
    """Resolves an article's links through a (lang, title) -> entity id map (for in-memory use and tests).

    Args:
      article: the article.
      titles: (lang, title) -> entity id, e.g. built from an `EntityTable`.
      passages: the article's passages, if known.

    Returns:
      The linked article.
    """
    link_entities = {link.target: titles[(article.lang, link.target)] for link in article.links
                     if (article.lang, link.target) in titles}
    return LinkedArticle(article, titles.get((article.lang, article.title)), link_entities, passages)
