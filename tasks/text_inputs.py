"""The exact text inputs of CLASS retrieval: query and passage formats, tokenisation, padded batches.

A query is `question: {q}` cut to at most 50 tokens, without EOS. A passage is `title: {title} context: {text}` cut
to at most 199 tokens and then given an EOS (seqio's `append_eos_after_trim`), so at most 200 tokens, always
EOS-terminated. Batches are 0-padded (0 is the pad id of T5 / mT5 vocabularies, and the models read `tokens > 0`
as the validity mask).

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


def query_text(question: str) -> str:
    """The query string the retriever reads: `question: {q}`."""
    return f"question: {question}"


def passage_text(title: str, text: str) -> str:
    """The passage string the retriever and reader read: `title: {title} context: {text}`."""
    return f"title: {title} context: {text}"


def query_ids(vocabulary: Vocabulary, question: str, max_length: int = QUERY_MAX_LENGTH) -> list[int]:
    """Token ids of one query: `question: {q}` cut to `max_length`, no EOS."""
    return list(vocabulary.encode(query_text(question)))[:max_length]


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
                rows: int | None = None) -> np.ndarray:
    """Tokenised, 0-padded queries [rows, max_length] int32."""
    return pad_batch([query_ids(vocabulary, q, max_length) for q in questions], max_length, rows)


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
def query_ids_tf(vocabulary: Vocabulary, question: Any, max_length: int = QUERY_MAX_LENGTH) -> Any:
    """`query_ids` for a scalar tf string tensor (for SeqIO preprocessors); returns int32 ids, no EOS."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    ids = vocabulary.encode_tf(tf.strings.join(["question: ", question]))
    return tf.cast(ids[:max_length], tf.int32)


def passage_ids_tf(vocabulary: Vocabulary, title: Any, text: Any, max_length: int = PASSAGE_MAX_LENGTH) -> Any:
    """`passage_ids` for scalar tf string tensors; returns int32 ids cut to max_length - 1 plus EOS."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if max_length < 1:
        raise ValueError(f"passage max_length must be at least 1 (for the EOS), got {max_length}")
    ids = vocabulary.encode_tf(tf.strings.join(["title: ", title, " context: ", text]))
    return tf.concat([tf.cast(ids[:max_length - 1], tf.int32), tf.constant([vocabulary.eos_id], tf.int32)], 0)
