"""Answer normalisation, tokenisation and token-overlap scores shared by the official-compatible scorers.

Everything here reproduces what the official XOR-TyDi QA / CORA evaluation scripts do, character for character,
because a reported number is only comparable when it was computed the same way:

* `normalize_xor_answer`: XOR-Full and CORA's MKQA scoring (lowercase, delete ASCII punctuation, delete the counter
  characters 年 歳 人 년, collapse whitespace; no article removal).
* `normalize_squad_answer`: XOR-EnglishSpan (the SQuAD v1.1 rule: English articles are removed).
* `mecab_wakati`: the `MeCab.Tagger("-Owakati").parse` output used for Japanese, one tagger per process.
* `official_word_tokenize`: `nltk.word_tokenize`, which XOR-Retrieve uses to count its 2,000 / 5,000 tokens.
"""

import collections
import functools
import os
import re
import string
import threading
import warnings
from typing import Callable, Iterable, Sequence

from class_jax.runtime.errors import UserError

# `string.punctuation`: the official scripts delete only these 32 ASCII characters, so e.g. "、" or "。" survive.
ASCII_PUNCTUATION = frozenset(string.punctuation)

# Counter suffixes the XOR-Full scorer deletes (year, age, people; Korean year), whatever their position.
XOR_COUNTER_CHARACTERS = ("年", "歳", "人", "년")

_ENGLISH_ARTICLES = re.compile(r"\b(a|an|the)\b")

# The NLTK resource `nltk.word_tokenize` loads for sentence splitting (NLTK >= 3.8.2 reads `punkt_tab`).
PUNKT_RESOURCE = "tokenizers/punkt_tab/english/"

PUNKT_MISSING_WARNING = (
    "NLTK's punkt_tab tables are not installed (python -m nltk.downloader punkt_tab): tokenising passages "
    "line by line without sentence splitting, so R@2kt / R@5kt may differ slightly from official numbers."
)


def remove_ascii_punctuation(text: str) -> str:
    """Deletes the ASCII punctuation characters (`string.punctuation`), as every official scorer here does."""
    return "".join(ch for ch in text if ch not in ASCII_PUNCTUATION)


def normalize_xor_answer(text: str) -> str:
    """Normalises an answer the way the official XOR-Full scorer does before comparing tokens.

    Order matters and is the official one: lowercase, delete ASCII punctuation, delete 年 歳 人 년, collapse
    whitespace. English articles are kept (unlike SQuAD).

    Args:
        text: a predicted or gold answer (for Japanese, already split by `mecab_wakati`).

    Returns:
        The normalised answer; its whitespace-separated tokens are what F1 counts.
    """
    text = remove_ascii_punctuation(text.lower())
    for counter in XOR_COUNTER_CHARACTERS:
        text = text.replace(counter, "")
    return " ".join(text.split())


def normalize_squad_answer(text: str) -> str:
    """Normalises an English answer as SQuAD v1.1 (and the official XOR-EnglishSpan scorer) does.

    Args:
        text: a predicted or gold answer.

    Returns:
        The lowercased answer without ASCII punctuation, without the articles a / an / the, whitespace collapsed.
    """
    text = remove_ascii_punctuation(text.lower())
    text = _ENGLISH_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_precision_recall_f1(prediction_tokens: Sequence[str],
                              gold_tokens: Sequence[str]) -> tuple[float, float, float]:
    """SQuAD token overlap between two token lists (multiset intersection).

    Args:
        prediction_tokens: tokens of the normalised prediction.
        gold_tokens: tokens of the normalised gold answer.

    Returns:
        (precision, recall, f1); all three are 0 when no token is shared, including when either side is empty
        (the official rule: an empty prediction scores F1 0 even against an empty gold answer).
    """
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0, 0.0, 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return precision, recall, 2 * precision * recall / (precision + recall)


def max_over_gold(metric: Callable[[str, str], float], prediction: str, gold_answers: Iterable[str]) -> float:
    """The best score of `prediction` against any gold answer (the SQuAD `metric_max_over_ground_truths`).

    Args:
        metric: function (prediction, gold) -> score.
        prediction: the predicted answer.
        gold_answers: one or more gold answers.

    Returns:
        The maximum score.

    Raises:
        ValueError: if `gold_answers` is empty (loaders reject such records before scoring).
    """
    return max(metric(prediction, gold) for gold in gold_answers)


# ---------------------------------------------------------------------------------------------------------------
# Japanese: MeCab
# ---------------------------------------------------------------------------------------------------------------

_tagger_lock = threading.Lock()
_tagger_by_process: tuple[int, object] | None = None


def _wakati_tagger():
    """Returns this process's MeCab `-Owakati` tagger, creating it on first use.

    The tagger is keyed by process id so that a forked worker builds its own instead of sharing the parent's
    C++ object, and it is built lazily so importing this module (and scoring non-Japanese data) never needs MeCab.
    """
    global _tagger_by_process
    pid = os.getpid()
    state = _tagger_by_process
    if state is not None and state[0] == pid:
        return state[1]
    with _tagger_lock:
        if _tagger_by_process is None or _tagger_by_process[0] != pid:
            try:
                import MeCab  # pylint: disable=import-outside-toplevel
                tagger = MeCab.Tagger("-Owakati")
            except (ImportError, RuntimeError) as e:
                raise UserError(
                    "Japanese answers are scored with MeCab, which could not start "
                    f"(pip install mecab-python3 unidic-lite): {e}") from e
            _tagger_by_process = (pid, tagger)
        return _tagger_by_process[1]


# Texts up to this many characters go to MeCab whole, as the official scorers send them (every real answer does).
# Longer ones are cut into pieces of at most this size: MeCab gives up on long input ("too long sentence", None
# instead of a string) and is quadratic in the length of a run of same-class characters ("aaaa...").
MECAB_MAX_CHARACTERS = 2048

_WHITESPACE_RUN = re.compile(r"\s+")


def _mecab_pieces(text: str, size: int) -> list[str]:
    """Cuts a long text into pieces of at most `size` characters, after whitespace where possible (MeCab drops
    whitespace, so a cut there changes nothing but the context MeCab sees across it)."""
    pieces, start = [], 0
    while len(text) - start > size:
        cut = start + size
        space = None
        for match in _WHITESPACE_RUN.finditer(text, start + size // 2, cut):
            space = match.end()
        pieces.append(text[start:space or cut])
        start = space or cut
    pieces.append(text[start:])
    return pieces


def mecab_wakati(text: str) -> str:
    """Splits Japanese text into words exactly as the official scorer's `MeCab.Tagger("-Owakati").parse`.

    The raw MeCab output is returned unchanged (words joined by spaces, with a trailing " \\n"), because the
    official XOR-Full BLEU compares characters of this very string. A text longer than `MECAB_MAX_CHARACTERS`
    (where the official script fails or takes minutes) is split piece by piece and the outputs are joined as one.

    Args:
        text: the text to split.

    Returns:
        MeCab's wakati output.

    Raises:
        UserError: if MeCab still refuses a piece.
    """
    tagger = _wakati_tagger()
    if len(text) <= MECAB_MAX_CHARACTERS:
        pieces = [text]
    else:
        pieces = _mecab_pieces(text, MECAB_MAX_CHARACTERS)
    outputs = []
    for piece in pieces:
        output = tagger.parse(piece)
        if output is None:
            raise UserError(f"MeCab could not split a text of {len(text)} characters "
                            f"({piece[:30]!r}...): {tagger.what() if hasattr(tagger, 'what') else 'no output'}")
        outputs.append(output)
    # Each piece ends with MeCab's "\\n"; only the last one is kept, so the result reads as one parse.
    return "".join(output[:-1] if output.endswith("\n") else output for output in outputs[:-1]) + outputs[-1]


# ---------------------------------------------------------------------------------------------------------------
# English word tokenisation for XOR-Retrieve: NLTK
# ---------------------------------------------------------------------------------------------------------------

_punkt_warning_issued = False


@functools.lru_cache(maxsize=None)
def punkt_available() -> bool:
    """Whether NLTK can load the English `punkt_tab` tables (looked up once per process)."""
    import nltk  # pylint: disable=import-outside-toplevel
    try:
        nltk.data.find(PUNKT_RESOURCE)
    except LookupError:
        return False
    return True


def official_word_tokenize(text: str) -> list[str]:
    """`nltk.word_tokenize(text)`, the tokenisation behind the official R@2kt / R@5kt.

    When the Punkt tables are not installed, the text is tokenised with `preserve_line=True` (the Treebank
    tokenizer on the whole text, without sentence splitting) and a warning is issued once per process, because
    sentence-final periods then stay attached to their word and counts can differ slightly.

    Args:
        text: one passage.

    Returns:
        Its tokens.
    """
    from nltk.tokenize import word_tokenize  # pylint: disable=import-outside-toplevel
    if punkt_available():
        return word_tokenize(text)
    global _punkt_warning_issued
    if not _punkt_warning_issued:
        _punkt_warning_issued = True
        warnings.warn(PUNKT_MISSING_WARNING, RuntimeWarning, stacklevel=2)
    return word_tokenize(text, preserve_line=True)


def reset_tokenizer_state_for_tests() -> None:
    """Forgets the cached Punkt lookup and the one-time warning (tests switch NLTK_DATA at run time)."""
    global _punkt_warning_issued
    _punkt_warning_issued = False
    punkt_available.cache_clear()
