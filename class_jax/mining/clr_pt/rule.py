"""The rule that decides whether an English and a target-language sentence are parallel (CLR-PT).

Stage 1 in the method: docs/method.md#stage-1-clr-pt.

The paper mines "parallel" cloze pairs from sentences of interlanguage-linked articles that mention the same
linked entity, but does not say how parallel is decided. Our rule, applied to one candidate pair (two sentences
of the same entity's English and target-language articles that mention a common entity), checks in this order
and stops at the first failure, whose name is the rejection reason:

  1. both sentences are prose: they end in a terminator (headings and list items do not) -> `*_unterminated`;
  2. each has a usable length: words (scaled per language), or characters for unspaced scripts ->
     `*_too_short` / `*_too_long`;
  3. each is written in its language's script -> `*_wrong_script`; a target sentence that equals the English
     one (after case and punctuation folding) is an untranslated copy -> `untranslated`;
  4. their lengths agree: target length divided by the language's usual units per English word, over the English
     word count, lies within [1 / max_length_ratio, max_length_ratio] -> `length_ratio`. Names count as one unit
     on both sides (a transliterated name is three words in English and twelve katakana in Japanese), and a
     small constant is added to both lengths so that short sentences are not judged on one word;
  5. years agree (4-digit years 1000-2099): both state the same years (or, configurable, one sentence's years
     are all in the other's) -> `years_differ`;
  6. other numbers agree within a relative tolerance (units and conversions add numbers to one side, so one side's
     numbers must all be found in the other) -> `numbers_differ`;
  7. enough entities are shared (compared by cross-language entity id, the masked one included) ->
     `too_few_shared_entities`;
  8. few entities are one-sided: mentioned in one sentence while the other article mentions them only outside
     the other sentence, a sign that the other article says this elsewhere -> `one_sided_entities`;
  9. some shared entity can be masked on both sides (see clr_pt.py for the answer checks) -> `no_maskable_entity`;
 10. one-to-one: among the pairs that pass, each English and each target sentence keeps only its best-scoring
     partner -> `not_best_match`.

This module holds the configuration and the language-aware measurements (numbers, years, lengths, scripts).
"""

import dataclasses
import math
import re
import unicodedata
from typing import Mapping

from class_jax.mining import mlqa_pt
from class_jax.corpus import language_scripts
from class_jax.corpus import sentences

UNITS_PER_ENGLISH_WORD = language_scripts.UNITS_PER_ENGLISH_WORD

# Every reason a candidate pair can be rejected for, in the order they are checked.
REJECTION_REASONS = (
    "en_unterminated", "target_unterminated", "en_too_short", "en_too_long", "target_too_short",
    "target_too_long", "en_wrong_script", "target_wrong_script", "untranslated", "length_ratio", "years_differ",
    "numbers_differ", "too_few_shared_entities", "one_sided_entities", "no_maskable_entity", "not_best_match")


@dataclasses.dataclass(frozen=True)
class ParallelRuleConfig:
    """Settings of the parallel-sentence rule and of the clozes made from kept pairs.

    Lengths are in words, or in characters for languages written without spaces (the `*_unspaced` bounds).

    Attributes:
      mask_token: replaces the answer in both sentences; the released CLASS data uses "_X_".
      require_terminated: both sentences must end in a sentence terminator.
      min_words: shortest English sentence, in words (other spaced languages: scaled, see `length_bounds`).
      max_words: longest English sentence, in words (mT5 queries are cut at 50 tokens, about 35-40 words).
      min_chars_unspaced: shortest sentence in characters, for unspaced languages.
      max_chars_unspaced: longest sentence in characters, for unspaced languages.
      min_script_share: smallest share of letters written in the sentence's language's script(s).
      max_length_ratio: largest accepted ratio between the normalised lengths (and its inverse the smallest).
      length_smoothing: English words added to both lengths before taking the ratio.
      units_per_english_word: per-language length units per English word (defaults: UNITS_PER_ENGLISH_WORD; 1.0
        for languages not listed).
      year_rule: "equal" (same sets; a translation rarely drops a year), "subset" (one side's years all occur
        in the other) or "ignore".
      number_rule: "subset", "equal" or "ignore", for numbers other than years.
      number_tolerance: relative difference under which two numbers are equal (rounding: 2.1 million vs
        2,104,000).
      min_number_value: smaller numbers are ignored (day numbers, counts written as words on one side).
      min_shared_entities: entities both sentences mention, the masked one included.
      max_one_sided_entities: entities mentioned in one sentence that the other article mentions only outside
        the other sentence.
      match_title_mentions: an entity also counts as mentioned where its title (without disambiguator) or one
        of its anchors in that article occurs unlinked: Wikipedia links only the first mention.
      min_title_mention_chars: shortest title or anchor looked for as an unlinked mention.
      max_answer_words: longest answer (either side), in words.
      max_answer_chars_unspaced: longest answer in characters, for unspaced languages.
      drop_date_answers: never mask dates and years.
      drop_numeric_answers: never mask plain numbers.
      max_masks_per_pair: clozes made from one kept pair (each masks a different shared entity).
      skip_disambiguation_pages: do not mine disambiguation pages.
      skip_list_pages: do not mine list pages.
    """

    mask_token: str = mlqa_pt.RELEASED_MASK_TOKEN
    require_terminated: bool = True
    min_words: int = 5
    max_words: int = 40
    min_chars_unspaced: int = 10
    max_chars_unspaced: int = 100
    min_script_share: float = 0.5
    max_length_ratio: float = 2.0
    length_smoothing: float = 2.0
    units_per_english_word: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: dict(UNITS_PER_ENGLISH_WORD))
    year_rule: str = "equal"
    number_rule: str = "subset"
    number_tolerance: float = 0.01
    min_number_value: float = 10.0
    min_shared_entities: int = 1
    max_one_sided_entities: int = 1
    match_title_mentions: bool = True
    min_title_mention_chars: int = 2
    max_answer_words: int = 6
    max_answer_chars_unspaced: int = 20
    drop_date_answers: bool = False
    drop_numeric_answers: bool = False
    max_masks_per_pair: int = 1
    skip_disambiguation_pages: bool = True
    skip_list_pages: bool = True

    def __post_init__(self):
        if not self.mask_token.strip():
            raise ValueError("mask_token must not be blank")
        for name in ("year_rule", "number_rule"):
            if getattr(self, name) not in ("subset", "equal", "ignore"):
                raise ValueError(f"{name} must be 'subset', 'equal' or 'ignore', got {getattr(self, name)!r}")
        if self.max_length_ratio < 1.0:
            raise ValueError(f"max_length_ratio must be at least 1, got {self.max_length_ratio}")
        if self.length_smoothing < 0:
            raise ValueError(f"length_smoothing must not be negative, got {self.length_smoothing}")
        if self.min_shared_entities < 1 or self.max_masks_per_pair < 1:
            raise ValueError("min_shared_entities and max_masks_per_pair must be at least 1")

    def to_json(self) -> dict:
        """The settings as plain JSON (for manifests and stage fingerprints)."""
        values = dataclasses.asdict(self)
        values["units_per_english_word"] = dict(sorted(self.units_per_english_word.items()))
        return values

    def length_bounds(self, lang: str) -> tuple[int, int]:
        """(shortest, longest) sentence length in `lang`'s units.

        Word bounds are English words; other spaced languages scale them by their units per English word (a
        five-word English sentence is about four Korean words), rounded towards accepting.
        """
        if lang in language_scripts.UNSPACED_LANGS:
            return self.min_chars_unspaced, self.max_chars_unspaced
        per_word = 1.0 if lang == "en" else self.units_per_english_word.get(lang, 1.0)
        return math.floor(self.min_words * per_word), math.ceil(self.max_words * per_word)

    def max_answer_units(self, lang: str) -> int:
        """Longest answer in `lang`'s units."""
        return self.max_answer_chars_unspaced if lang in language_scripts.UNSPACED_LANGS else self.max_answer_words


@dataclasses.dataclass(frozen=True)
class Quantities:
    """The years and other numbers a sentence states.

    Attributes:
      years: 4-digit years (1000-2099) written without separators or multipliers.
      numbers: every other number of at least the configured minimum value, as floats.
    """

    years: frozenset[int]
    numbers: tuple[float, ...]


# A number: digits with optional 3-digit groups and a decimal part, then an optional multiplier. Not preceded by a
# digit or a letter of a cased alphabet ("A380", "F-16" are names, not quantities); CJK text runs straight into
# digits ("は1851年に"), so ideographs and kana may precede.
_NUMBER = re.compile(
    r"(?<![\d.,A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff])"
    r"(\d+(?:[,.\u00a0\u202f\u066c' ]\d{3}(?!\d))*(?:[.,\u066b]\d+)?)"
    r"(?:\s?(?P<cjk>百万|万|億|억|만)|\s?(?P<word>thousand|tsd\.?|тыс\.?|ألف|millions?|millionen|mio\.?|млн\.?|"
    r"миллион\w*|مليون|millones|millón|milioni|miljoonaa|billions?|milliarden|mrd\.?|млрд\.?|миллиард\w*|مليار|"
    r"mil millones|milliards?|miliardi|miljardia)(?!\w))?",
    re.IGNORECASE)
_MULTIPLIERS = {
    "万": 1e4, "億": 1e8, "百万": 1e6, "만": 1e4, "억": 1e8, "thousand": 1e3, "tsd": 1e3, "тыс": 1e3, "ألف": 1e3,
    "million": 1e6, "millions": 1e6, "millionen": 1e6, "mio": 1e6, "млн": 1e6, "مليون": 1e6, "millones": 1e6,
    "millón": 1e6, "milioni": 1e6, "miljoonaa": 1e6, "billion": 1e9, "billions": 1e9, "milliarden": 1e9,
    "mrd": 1e9, "млрд": 1e9, "مليار": 1e9, "mil millones": 1e9, "milliard": 1e9, "milliards": 1e9,
    "miliardi": 1e9, "miljardia": 1e9,
}
# Languages whose decimal separator is the comma (and whose grouping separator is the dot or a space).
_DECIMAL_COMMA_LANGS = frozenset({"de", "es", "fr", "it", "pt", "ru", "uk", "bg", "fi", "sv", "da", "nb", "nl",
                                  "pl", "cs", "sk", "tr", "id", "ro", "hu", "el", "hr", "sr", "sl", "et", "lv",
                                  "lt", "vi"})


def _ascii_digits(text: str) -> str:
    """Replaces digits of any script (Arabic-Indic, Devanagari, full-width, ...) with ASCII digits."""
    return "".join(str(unicodedata.decimal(char)) if char.isdecimal() and not char.isascii() else char
                   for char in unicodedata.normalize("NFKC", text))


def _multiplier(word: str) -> float:
    word = word.lower().rstrip(".")
    if word.startswith("миллион"):
        return 1e6
    if word.startswith("миллиард"):
        return 1e9
    return _MULTIPLIERS.get(word, 1.0)


def _parse_number(token: str, lang: str) -> tuple[float, bool]:
    """(value, plain) of a digit token; `plain` is True for a bare integer without separators.

    A separator is the decimal point when it is the language's decimal separator, occurs once, and comes last
    ("1,5" in German, "1.5" in English); every other separator groups thousands ("2,038,667", "2.038.667").
    """
    token = token.replace("\u066c", ",").replace("\u066b", ".")  # Arabic thousands and decimal separators.
    if token.isdigit():
        return float(token), True
    decimal = "," if lang in _DECIMAL_COMMA_LANGS else "."
    separators = re.findall(r"[^\d]", token)
    if separators.count(decimal) == 1 and separators[-1] == decimal:
        integer, _, fraction = token.rpartition(decimal)
        return float(re.sub(r"\D", "", integer) + "." + fraction), False
    return float(re.sub(r"\D", "", token)), False


def extract_quantities(text: str, lang: str, min_number_value: float = 10.0) -> Quantities:
    """Finds the years and numbers of a sentence.

    Args:
      text: the sentence.
      lang: its language (selects the decimal separator).
      min_number_value: smaller non-year numbers are ignored.

    Returns:
      The sentence's quantities.
    """
    years: set[int] = set()
    numbers: list[float] = []
    for match in _NUMBER.finditer(_ascii_digits(text)):
        value, plain = _parse_number(match.group(1), lang)
        multiplier = match.group("cjk") or match.group("word")
        if multiplier:
            value *= _multiplier(multiplier)
        elif plain and len(match.group(1)) == 4 and 1000 <= value <= 2099:
            years.add(int(value))
            continue
        if value >= min_number_value:
            numbers.append(value)
    return Quantities(frozenset(years), tuple(sorted(numbers)))


def _covered(first: tuple[float, ...], second: tuple[float, ...], tolerance: float) -> bool:
    """Whether every number of `first` equals (within tolerance) some number of `second`."""
    return all(any(abs(a - b) <= tolerance * max(abs(a), abs(b)) for b in second) for a in first)


def _reconcile(first: Quantities, second: Quantities) -> tuple[Quantities, Quantities]:
    """Treats a "year" of one side that the other side writes as a grouped number ("1200" vs "1,200") as a number."""

    def moved(side: Quantities, other: Quantities) -> Quantities:
        as_numbers = {year for year in side.years if float(year) in other.numbers}
        if not as_numbers:
            return side
        return Quantities(side.years - as_numbers, tuple(sorted(side.numbers + tuple(map(float, as_numbers)))))

    return moved(first, second), moved(second, first)


def quantities_agree(english: Quantities, target: Quantities, config: ParallelRuleConfig) -> str | None:
    """Checks years, then other numbers; returns "years_differ", "numbers_differ" or None when they agree."""
    english, target = _reconcile(english, target)
    if config.year_rule == "equal" and english.years != target.years:
        return "years_differ"
    if config.year_rule == "subset" and not (english.years <= target.years or target.years <= english.years):
        return "years_differ"
    tolerance = config.number_tolerance
    forward = _covered(english.numbers, target.numbers, tolerance)
    backward = _covered(target.numbers, english.numbers, tolerance)
    if config.number_rule == "equal" and not (forward and backward):
        return "numbers_differ"
    if config.number_rule == "subset" and not (forward or backward):
        return "numbers_differ"
    return None


def shared_quantities(english: Quantities, target: Quantities, tolerance: float) -> int:
    """How many of the English years and numbers the target sentence states too (for the pair score)."""
    english, target = _reconcile(english, target)
    years = len(english.years & target.years)
    numbers = sum(1 for a in english.numbers
                  if any(abs(a - b) <= tolerance * max(abs(a), abs(b)) for b in target.numbers))
    return years + numbers


def length_ratio(english_units: int, target_units: int, lang: str, config: ParallelRuleConfig) -> float:
    """Normalised, smoothed target length over English length (1.0 = as long as a typical translation)."""
    per_word = config.units_per_english_word.get(lang, 1.0)
    smoothing = config.length_smoothing
    return (target_units / per_word + smoothing) / max(english_units + smoothing, 1e-9)


def length_ratio_ok(ratio: float, config: ParallelRuleConfig) -> bool:
    return 1.0 / config.max_length_ratio <= ratio <= config.max_length_ratio


def sentence_reason(text: str, lang: str, side: str, config: ParallelRuleConfig) -> str | None:
    """The first sentence-level rejection reason (terminator, length, script), or None.

    Args:
      text: the sentence.
      lang: its language.
      side: "en" or "target", the prefix of the reason.
      config: the rule settings.

    Returns:
      A reason such as "target_too_long", or None when the sentence is usable.
    """
    if config.require_terminated and not sentences.ends_with_terminator(text):
        return f"{side}_unterminated"
    shortest, longest = config.length_bounds(lang)
    units = language_scripts.length_units(text, lang)
    if units < shortest:
        return f"{side}_too_short"
    if units > longest:
        return f"{side}_too_long"
    if language_scripts.script_share(text, lang) < config.min_script_share:
        return f"{side}_wrong_script"
    return None


def pair_score(shared_entities: int, one_sided: int, matched_quantities: int, ratio: float) -> float:
    """Ranks passing pairs for the one-to-one choice: shared evidence up, one-sided entities and length skew down."""
    return 2.0 * shared_entities + matched_quantities - one_sided - abs(math.log(max(ratio, 1e-9)))
