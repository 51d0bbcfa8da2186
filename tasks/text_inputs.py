"""The exact text inputs of CLASS retrieval: query and passage formats, tokenisation, padded batches.

A query is `question: {q}` cut to at most 50 tokens, without EOS. A passage is `title: {title} context: {text}` cut
to at most 199 tokens and then given an EOS (seqio's `append_eos_after_trim`), so at most 200 tokens, always
EOS-terminated. Batches are 0-padded (0 is the pad id of T5 / mT5 vocabularies, and the models read `tokens > 0`
as the validity mask).

Queries may first be normalised as the released code normalises them (`normalize_query`, its
`normalize_text.normalize`, adapted from chemdataextractor): switched by `normalize=True` here, by the gin macro
`NORMALIZE_QUERIES` for SeqIO tasks, and by `ModelConfig.normalize_queries` for retrieval query encoding.

This module is shared by the index (numpy, below) and by SeqIO tasks (the `*_tf` functions), so it depends on
nothing but numpy; TensorFlow is imported only by the `*_tf` functions. A vocabulary is anything with `encode`
(str -> list of ids), `encode_tf` (tf string -> tf int ids) and `eos_id`, e.g. `seqio.SentencePieceVocabulary`.
"""

from typing import Any, Protocol, Sequence

import numpy as np

QUERY_MAX_LENGTH = 50
PASSAGE_MAX_LENGTH = 200
PAD_ID = 0


class Vocabulary(Protocol):
    """What the retrieval inputs need from a vocabulary (seqio.SentencePieceVocabulary satisfies it)."""

    eos_id: int

    def encode(self, s: str) -> Sequence[int]:
        """Token ids of a string."""

    def encode_tf(self, s: Any) -> Any:
        """Token ids of a tf string tensor."""


# ------------------------------------------------------------------------------------- query normalisation
# The release's `normalize_text.normalize` (chemdataextractor's `text.normalize`, as Contriever ships it), as
# character tables. Each entry maps one code point to its replacement. The release applies them as a chain of
# `str.replace` calls; no replacement contains a character that a later one rewrites, so one pass over the
# characters gives the same text. Tildes stay as they are: the release has that replacement commented out.

# C0 control characters, dropped: U+0001-U+0008, U+000E, U+000F, U+0011-U+001B. Tab, newline, carriage return,
# U+0010 and U+001C-U+001F are not in the release's list, so they are kept.
QUERY_CONTROLS = {chr(c): "" for c in (*range(0x01, 0x09), 0x0E, 0x0F, *range(0x11, 0x1C))}
# Vertical tab U+000B, form feed U+000C and next line U+0085 become a space.
QUERY_SPACES = {"\u000b": " ", "\u000c": " ", "\u0085": " "}
# Hyphens and dashes (hyphen U+2010, non-breaking hyphen U+2011, figure dash U+2012, en dash U+2013, em dash
# U+2014, horizontal bar U+2015, hyphen bullet U+2043) and minuses (minus sign U+2212, superscript minus U+207B,
# full-width hyphen-minus U+FF0D) become the ASCII hyphen-minus.
QUERY_HYPHENS = {c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u207b\uff0d"}
# The soft hyphen U+00AD, an invisible line-break hint, is dropped.
QUERY_SOFT_HYPHEN = {"\u00ad": ""}
# Double quotes (left U+201C, right U+201D, low-9 U+201E, high-reversed-9 U+201F) become the ASCII '"'.
QUERY_DOUBLE_QUOTES = {c: '"' for c in "\u201c\u201d\u201e\u201f"}
# Single quotes (left U+2018, right U+2019, low-9 U+201A, high-reversed-9 U+201B), apostrophes (Armenian U+055A,
# Latin saltillo U+A78B / U+A78C, full-width U+FF07) and accents (grave U+0060, acute U+00B4) become the ASCII
# apostrophe.
QUERY_SINGLE_QUOTES = {c: "'" for c in "\u2018\u2019\u201a\u201b\u055a\ua78b\ua78c\uff07\u0060\u00b4"}
# Primes become one ASCII apostrophe per stroke: prime U+2032 and reversed prime U+2035 one, double U+2033 and
# reversed double U+2036 two, triple U+2034 and reversed triple U+2037 three, quadruple U+2057 four.
QUERY_PRIMES = {"\u2032": "'", "\u2035": "'", "\u2033": "''", "\u2036": "''", "\u2034": "'" * 3,
                "\u2037": "'" * 3, "\u2057": "'" * 4}
# The horizontal ellipsis U+2026 becomes three full stops.
QUERY_ELLIPSIS = {"\u2026": "..."}
# Fraction slash U+2044 and division slash U+2215 become the ASCII solidus.
QUERY_SLASHES = {"\u2044": "/", "\u2215": "/"}
# Every per-character mapping above, in one table.
QUERY_CHARACTER_MAP = {**QUERY_CONTROLS, **QUERY_SPACES, **QUERY_HYPHENS, **QUERY_SOFT_HYPHEN, **QUERY_DOUBLE_QUOTES,
                       **QUERY_SINGLE_QUOTES, **QUERY_PRIMES, **QUERY_ELLIPSIS, **QUERY_SLASHES}
# After the characters, a spaced-out ellipsis closes up (left to right, non-overlapping, as `str.replace`).
SPACED_ELLIPSIS = (" . . . ", " ... ")
_QUERY_TRANSLATION = str.maketrans(QUERY_CHARACTER_MAP)


def normalize_query(text: str) -> str:
    """The release's query normalisation (`normalize_text.normalize`); the tables above say what it changes."""
    return text.translate(_QUERY_TRANSLATION).replace(*SPACED_ELLIPSIS)


def normalize_query_tf(text: Any) -> Any:
    """`normalize_query` of a tf string tensor (UTF-8): one RE2 replacement per replacement string."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    by_replacement: dict[str, list[str]] = {}
    for char, replacement in QUERY_CHARACTER_MAP.items():
        by_replacement.setdefault(replacement, []).append(char)
    for replacement, chars in by_replacement.items():
        # RE2 reads \x{hhhh} as a code point; no replacement holds a backslash, so it is taken literally.
        pattern = "[" + "".join(f"\\x{{{ord(c):04x}}}" for c in chars) + "]"
        text = tf.strings.regex_replace(text, pattern, replacement)
    return tf.strings.regex_replace(text, r" \. \. \. ", SPACED_ELLIPSIS[1])


def query_text(question: str) -> str:
    """The query string the retriever reads: `question: {q}`."""
    return f"question: {question}"


def passage_text(title: str, text: str) -> str:
    """The passage string the retriever and reader read: `title: {title} context: {text}`."""
    return f"title: {title} context: {text}"


def query_ids(vocabulary: Vocabulary, question: str, max_length: int = QUERY_MAX_LENGTH,
              normalize: bool = False) -> list[int]:
    """Token ids of one query: `question: {q}` cut to `max_length`, no EOS; `normalize`: `normalize_query` first."""
    return list(vocabulary.encode(query_text(normalize_query(question) if normalize else question)))[:max_length]


def passage_ids(vocabulary: Vocabulary, title: str, text: str, max_length: int = PASSAGE_MAX_LENGTH) -> list[int]:
    """Token ids of one passage: cut to `max_length - 1`, then EOS (seqio's append_eos_after_trim).

    Raises:
      ValueError: max_length < 1 (no room for the EOS).
    """
    if max_length < 1:
        raise ValueError(f"passage max_length must be at least 1 (for the EOS), got {max_length}")
    return list(vocabulary.encode(passage_text(title, text)))[:max_length - 1] + [int(vocabulary.eos_id)]


def pad_batch(sequences: Sequence[Sequence[int]], length: int, rows: int | None = None) -> np.ndarray:
    """Stacks token id lists into a 0-padded int32 array [rows, length].

    Args:
      sequences: the token ids of each row (each at most `length` long).
      length: columns of the batch (fixed, so jitted functions compile once).
      rows: rows of the batch (default len(sequences)); rows beyond the sequences are all padding.

    Returns:
      The batch.

    Raises:
      ValueError: a sequence is longer than `length`, or there are more sequences than `rows`.
    """
    rows = len(sequences) if rows is None else rows
    if len(sequences) > rows:
        raise ValueError(f"{len(sequences)} sequences do not fit a batch of {rows} rows")
    batch = np.full((rows, length), PAD_ID, dtype=np.int32)
    for row, ids in enumerate(sequences):
        if len(ids) > length:
            raise ValueError(f"row {row}: {len(ids)} tokens do not fit {length} columns")
        batch[row, :len(ids)] = ids
    return batch


def query_batch(vocabulary: Vocabulary, questions: Sequence[str], max_length: int = QUERY_MAX_LENGTH,
                rows: int | None = None, normalize: bool = False) -> np.ndarray:
    """Tokenised, 0-padded queries [rows, max_length] int32 (`normalize`: `normalize_query` first)."""
    return pad_batch([query_ids(vocabulary, q, max_length, normalize) for q in questions], max_length, rows)


def passage_batch(vocabulary: Vocabulary, titles: Sequence[str], texts: Sequence[str],
                  max_length: int = PASSAGE_MAX_LENGTH, rows: int | None = None) -> np.ndarray:
    """Tokenised, EOS-terminated, 0-padded passages [rows, max_length] int32.

    Raises:
      ValueError: titles and texts differ in number.
    """
    if len(titles) != len(texts):
        raise ValueError(f"{len(titles)} titles but {len(texts)} texts")
    return pad_batch([passage_ids(vocabulary, t, x, max_length) for t, x in zip(titles, texts)], max_length, rows)


# ------------------------------------------------------------------------------------------------ TensorFlow
def query_ids_tf(vocabulary: Vocabulary, question: Any, max_length: int = QUERY_MAX_LENGTH,
                 normalize: bool = False) -> Any:
    """`query_ids` for a scalar tf string tensor (for SeqIO preprocessors); returns int32 ids, no EOS."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if normalize:
        question = normalize_query_tf(question)
    ids = vocabulary.encode_tf(tf.strings.join(["question: ", question]))
    return tf.cast(ids[:max_length], tf.int32)


def passage_ids_tf(vocabulary: Vocabulary, title: Any, text: Any, max_length: int = PASSAGE_MAX_LENGTH) -> Any:
    """`passage_ids` for scalar tf string tensors; returns int32 ids cut to max_length - 1 plus EOS."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if max_length < 1:
        raise ValueError(f"passage max_length must be at least 1 (for the EOS), got {max_length}")
    ids = vocabulary.encode_tf(tf.strings.join(["title: ", title, " context: ", text]))
    return tf.concat([tf.cast(ids[:max_length - 1], tf.int32), tf.constant([vocabulary.eos_id], tf.int32)], 0)
