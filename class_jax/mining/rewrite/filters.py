"""Checks on rewritten questions: each returns one named reason, so rejected rewrites are counted by cause."""

import dataclasses
import re

from class_jax.mining import mlqa_pt
from class_jax.corpus import language_scripts

# Question marks by script; Japanese and Korean questions may also end in a particle and a full stop.
_QUESTION_MARKS = ("?", "？", "؟", ";", "፧", "՞")
_QUESTION_ENDINGS = {"ja": ("か。", "か"), "ko": ("까.", "까", "가.", "가")}
_CLOSERS = "\"'”’»)]」』）"

# Words that only one of the Latin-script languages uses, to catch a rewrite that drifted into another language
# (typically English) while keeping the script. Words shared between these languages are left out.
_FUNCTION_WORDS = {
    "en": {"the", "what", "which", "who", "whom", "when", "where", "did", "does", "were", "how", "of", "and",
           "is", "by", "from", "with"},
    "de": {"der", "die", "das", "und", "ist", "wer", "was", "welche", "welcher", "welches", "wann", "wo", "von",
           "im", "den", "dem", "wurde", "mit", "wie"},
    "es": {"el", "los", "las", "qué", "cuál", "quién", "dónde", "cuándo", "fue", "del", "y", "es", "por", "cómo"},
    "fr": {"le", "les", "des", "du", "qui", "quel", "quelle", "est", "où", "quand", "et", "dans", "par", "au"},
    "it": {"il", "lo", "gli", "che", "chi", "quale", "dove", "quando", "è", "fu", "della", "nel", "di", "come"},
    "fi": {"mikä", "kuka", "missä", "milloin", "minä", "on", "oli", "ja", "mitä", "kuinka", "mistä", "mihin"},
}


@dataclasses.dataclass(frozen=True)
class RewriteFilterConfig:
    """Bounds and switches for accepting a rewritten question.

    Attributes:
      mask_token: the cloze mask, which must not survive into the question.
      min_question_words: shortest question in words (spaced languages).
      max_question_words: longest question in words.
      min_question_chars_unspaced: shortest question in characters (ja, zh, ...).
      max_question_chars_unspaced: longest question in characters.
      min_script_share: smallest fraction of letters in the language's script(s).
      require_question_mark: the question must end like a question in its language.
      check_answer_title: also reject questions naming the link target (the answer entity's title).
    """

    mask_token: str = mlqa_pt.RELEASED_MASK_TOKEN
    min_question_words: int = 3
    max_question_words: int = 40
    min_question_chars_unspaced: int = 5
    max_question_chars_unspaced: int = 100
    min_script_share: float = 0.6
    require_question_mark: bool = True
    check_answer_title: bool = True


def is_question(text: str, lang: str) -> bool:
    """Whether `text` ends like a question in `lang` (question mark of any script, or ja/ko question endings)."""
    trimmed = text.rstrip().rstrip(_CLOSERS).rstrip()
    return trimmed.endswith(_QUESTION_MARKS) or trimmed.endswith(_QUESTION_ENDINGS.get(lang, ()))


def drifted_language(text: str, lang: str) -> str | None:
    """For Latin-script languages: the other language `text` seems written in, or None.

    Only flags text with no function word of `lang` and at least two of another language, so short names and
    shared vocabulary never trigger it.
    """
    if lang not in _FUNCTION_WORDS:
        return None
    words = re.findall(r"[^\W\d_]+", text.casefold())
    hits = {other: sum(word in vocabulary for word in words) for other, vocabulary in _FUNCTION_WORDS.items()}
    if hits[lang]:
        return None
    best = max(hits, key=lambda other: hits[other])
    return best if hits[best] >= 2 else None


def rejection_reason(question: str, lang: str, answer: str, answer_title: str | None = None,
                     config: RewriteFilterConfig = RewriteFilterConfig(),
                     english_answer: str | None = None) -> str | None:
    """Why a rewritten question is unusable, or None when it passes every check.

    Args:
      question: the rewrite.
      lang: the language it must be in.
      answer: the cloze answer (the anchor the cloze masks), which must not appear in the question.
      answer_title: the answer entity's page title (checked when `config.check_answer_title`).
      config: bounds and switches.
      english_answer: English-answer records: the English answer the model is trained to produce, which must not
        appear either (a question giving "東京 (Tokyo)" away is no question); it is matched as a Latin-script
        phrase (`mlqa_pt.contains_english_phrase`) whatever the question's language.

    Returns:
      One of "empty", "mask_remaining", "not_a_question", "wrong_script", "wrong_language", "too_short",
      "too_long", "answer_leaked", "answer_title_leaked", "english_answer_leaked"; or None.
    """
    text = question.strip()
    if not text:
        return "empty"
    if config.mask_token in text:
        return "mask_remaining"
    if config.require_question_mark and not is_question(text, lang):
        return "not_a_question"
    if not language_scripts.looks_like_language_script(text, lang, config.min_script_share):
        return "wrong_script"
    if drifted_language(text, lang):
        return "wrong_language"
    length = language_scripts.length_units(text, lang)
    unspaced = lang in language_scripts.UNSPACED_LANGS
    minimum = config.min_question_chars_unspaced if unspaced else config.min_question_words
    maximum = config.max_question_chars_unspaced if unspaced else config.max_question_words
    if length < minimum:
        return "too_short"
    if length > maximum:
        return "too_long"
    if mlqa_pt.contains_phrase(text, answer, lang):
        return "answer_leaked"
    if config.check_answer_title and answer_title:
        title = re.sub(r"\s*\([^)]*\)\s*$", "", answer_title)
        if mlqa_pt.contains_phrase(text, title, lang):
            return "answer_title_leaked"
    if english_answer and mlqa_pt.contains_english_phrase(text, english_answer):
        return "english_answer_leaked"
    return None
