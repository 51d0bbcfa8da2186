"""T5's span corruption as SeqIO preprocessors: the self-supervised objective mT5 was pretrained with.

Span corruption (Raffel et al. 2020, Sec. 3.1.4) drops about 15% of a text's tokens in spans of mean length 3.
Each dropped (noise) span becomes one sentinel in the inputs; the targets are each sentinel followed by the tokens
it replaced. With tokens [10 .. 19], noise at positions 2, 3 and 7 and a vocabulary of 100 ids:

    inputs   10 11 <99> 14 15 16 <98> 18 19
    targets  <99> 12 13 <98> 17

Sentinels are the last ids of the vocabulary, in order: the first span's is vocab_size - 1, the next's
vocab_size - 2, ... (mT5's `<extra_id_0>`, `<extra_id_1>`, ...). The task appends EOS to both features afterwards.

The pieces, in the order `span_corruption` applies them:

    split_into_chunks        each text -> consecutive chunks of `tokens_length` tokens (see below)
    random_spans_noise_mask  T5's noise mask: a fixed number of noise tokens and spans, at random places
    span_corruption_inputs   noise spans -> one sentinel each (T5's `noise_span_to_unique_sentinel`)
    span_corruption_targets  each noise span's sentinel, then its tokens (T5's `nonnoise_span_to_unique_sentinel`
                             on every mask `random_spans_noise_mask` draws)
    random_spans_helper      the text length whose corrupted inputs fill `sequence_length["inputs"]`, and the
                             targets length that then holds every corrupted target

Where this differs from the T5 codebase (t5/data/preprocessors.py), and why:

  * Chunking. T5 keeps one random chunk of at most 65536 tokens per document (`select_random_chunk`),
    concatenates 128 documents (`reduce_concat_tokens`) and splits the stream into pieces of `tokens_length`
    (`split_tokens`). Here each document is split into consecutive chunks of `tokens_length` and empty ones are
    dropped: no text is lost and no chunk spans two documents, at the cost of a shorter last chunk per document
    (more padding). Only the corrupted features are kept, since a chunk's other features would no longer
    describe it.
  * Counting. The mask computes its counts in float64 (T5: float32), as `random_spans_helper` does in Python,
    so the helper's lengths are exactly those of the masks drawn. At ties float32 rounds the other way: 190
    tokens * 0.15 is 28.5 in float64 (rounded to even: 28 noise tokens in 9 spans) but 28.500002 in float32
    (29 in 10), so for inputs 172 T5's helper gives tokens_length 190 and targets_length 38 while its mask
    makes targets of 40 tokens.
  * Degenerate settings. The number of noise spans is also capped at the number of noise tokens and of
    non-noise tokens (so that every span is non-empty; T5's mask cannot split the tokens into that many
    non-empty spans, e.g. with a mean span length below 1, and fails on mismatched span counts).
    `random_spans_helper` counts spans as the mask does (T5's helper counts 0 spans where round() gives 0 but
    its mask draws 1, e.g. mean span 8 on short inputs, so its chunks could overflow) and reports the longest
    targets of any chunk up to `tokens_length` (with density 0.5, T5 reports one token more than the longest).
    None of this changes anything at the usual settings: inputs 512, density 0.15, mean span 3 give T5's
    tokens_length 568 and targets_length 114.
  * Targets of arbitrary masks. `span_corruption_targets` emits each noise span's sentinel and tokens for any
    mask; T5 replaces each non-noise span by a sentinel instead, which is the same only for masks that start
    with non-noise and end with noise (all that `random_spans_noise_mask` draws) and misaligns the sentinels
    of inputs and targets otherwise.
"""

from typing import Any, Mapping, Optional, Sequence, Union

import seqio
import tensorflow as tf

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0

Seeds = Union[tf.Tensor, Sequence[Any]]


def _check_noise(noise_density: float, mean_noise_span_length: float) -> None:
    if not 0.0 <= noise_density < 1.0:
        raise ValueError(f"noise_density must be in [0, 1), got {noise_density!r}")
    if not mean_noise_span_length > 0:
        raise ValueError(f"mean_noise_span_length must be positive, got {mean_noise_span_length!r}")


def span_counts(length: int, noise_density: float = NOISE_DENSITY,
                mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tuple[int, int]:
    """(num_noise_tokens, num_noise_spans) of every mask `random_spans_noise_mask` draws for `length` tokens.

    Args:
      length: tokens in the sequence.
      noise_density: the fraction of tokens to corrupt.
      mean_noise_span_length: the mean length of a noise span.

    Returns:
      The counts (0, 0) for a density of 0 or fewer than 2 tokens (nothing is corrupted), else
      num_noise_tokens = round(length * noise_density) clipped to [1, length - 1] and
      num_noise_spans = round(num_noise_tokens / mean_noise_span_length) clipped to
      [1, min(num_noise_tokens, length - num_noise_tokens)]. Rounding is half to even, as tf.round's.

    Raises:
      ValueError: a density outside [0, 1) or a mean span length that is not positive.
    """
    _check_noise(noise_density, mean_noise_span_length)
    if noise_density == 0.0 or length < 2:
        return 0, 0
    num_noise_tokens = min(max(round(length * noise_density), 1), length - 1)
    num_noise_spans = round(num_noise_tokens / mean_noise_span_length)
    return num_noise_tokens, min(max(num_noise_spans, 1), num_noise_tokens, length - num_noise_tokens)


def _span_counts_tf(length: tf.Tensor, noise_density: float,
                    mean_noise_span_length: float) -> tuple[tf.Tensor, tf.Tensor]:
    """`span_counts` in TF ops, for length >= 2 and a positive density (float64, so both agree exactly)."""
    num_noise_tokens = tf.cast(tf.round(tf.cast(length, tf.float64) * noise_density), tf.int32)
    num_noise_tokens = tf.clip_by_value(num_noise_tokens, 1, length - 1)
    num_noise_spans = tf.cast(tf.round(tf.cast(num_noise_tokens, tf.float64) / mean_noise_span_length), tf.int32)
    num_noise_spans = tf.clip_by_value(num_noise_spans, 1, tf.minimum(num_noise_tokens, length - num_noise_tokens))
    return num_noise_tokens, num_noise_spans


def _random_segmentation(num_items: tf.Tensor, num_segments: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Lengths of a uniformly random split of `num_items` items into `num_segments` non-empty segments.

    A split is a choice of num_segments - 1 of the num_items - 1 gaps between consecutive items; taking the gaps
    with the smallest random keys makes every choice, hence every split, equally likely.

    Returns:
      int32 [num_segments], positive, summing to num_items.
    """
    keys = tf.random.stateless_uniform([num_items - 1], seed=seed)
    cuts = tf.sort(tf.argsort(keys)[:num_segments - 1] + 1)
    bounds = tf.concat([[0], tf.cast(cuts, tf.int32), [num_items]], axis=0)
    return bounds[1:] - bounds[:-1]


def random_spans_noise_mask(length: Union[int, tf.Tensor], noise_density: float = NOISE_DENSITY,
                            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH, *,
                            seeds: Seeds) -> tf.Tensor:
    """T5's noise mask: a fixed number of noise tokens in a fixed number of spans, placed at random.

    The counts are `span_counts(length, ...)`. The noise tokens and the non-noise tokens are each split into
    num_noise_spans non-empty spans by an independent uniformly random split, and the spans alternate, non-noise
    first, so a mask always starts with non-noise and ends with noise. Deterministic given `seeds`.

    Args:
      length: tokens in the sequence (int or int32 scalar tensor).
      noise_density: the fraction of tokens to corrupt; 0 gives an all-False mask (as in T5).
      mean_noise_span_length: the mean length of a noise span.
      seeds: two stateless seeds, [2, 2] (the `seeds` that `seqio.map_over_dataset(num_seeds=2)` passes):
        the first splits the noise tokens, the second the non-noise tokens.

    Returns:
      bool [length], True at noise tokens. Sequences shorter than 2 tokens get no noise (T5 draws the mask of
      2 tokens and cuts it, which gives the same).

    Raises:
      ValueError: a density outside [0, 1) or a mean span length that is not positive.
    """
    _check_noise(noise_density, mean_noise_span_length)
    static_length = length if isinstance(length, int) else None
    length = tf.convert_to_tensor(length, tf.int32)
    if noise_density == 0.0:
        return tf.zeros([length], tf.bool)
    seeds = tf.convert_to_tensor(seeds)
    drawn_length = tf.maximum(length, 2)
    num_noise_tokens, num_noise_spans = _span_counts_tf(drawn_length, noise_density, mean_noise_span_length)
    noise_lengths = _random_segmentation(num_noise_tokens, num_noise_spans, seeds[0])
    nonnoise_lengths = _random_segmentation(drawn_length - num_noise_tokens, num_noise_spans, seeds[1])
    span_lengths = tf.reshape(tf.stack([nonnoise_lengths, noise_lengths], axis=1), [-1])
    span_is_noise = tf.tile([False, True], [num_noise_spans])
    mask = tf.repeat(span_is_noise, span_lengths)[:length]
    if static_length is not None:
        mask.set_shape([static_length])
    return mask


def _check_mask(tokens: tf.Tensor, noise_mask: tf.Tensor) -> None:
    if tokens.shape.rank != 1 or noise_mask.shape.rank != 1:
        raise ValueError(f"tokens and noise_mask must be 1-D, got shapes {tokens.shape} and {noise_mask.shape}")
    if not tokens.shape.is_compatible_with(noise_mask.shape):
        raise ValueError(f"tokens {tokens.shape} and noise_mask {noise_mask.shape} differ in length")


def _span_starts_and_sentinels(tokens: tf.Tensor, noise_mask: tf.Tensor,
                               vocab_size: Union[int, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """(first token of each noise span, the sentinel of the span each position is in) at every position."""
    previous_is_noise = tf.pad(noise_mask[:-1], [[1, 0]])
    span_start = tf.logical_and(noise_mask, tf.logical_not(previous_is_noise))
    # The n-th noise span (n = 1, 2, ...) gets vocab_size - n, the end of the vocabulary counted down.
    sentinels = tf.cast(vocab_size, tokens.dtype) - tf.cumsum(tf.cast(span_start, tokens.dtype))
    return span_start, sentinels


def span_corruption_inputs(tokens: tf.Tensor, noise_mask: tf.Tensor,
                           vocab_size: Union[int, tf.Tensor]) -> tf.Tensor:
    """The corrupted inputs: each noise span replaced by its sentinel (T5's `noise_span_to_unique_sentinel`).

    Args:
      tokens: [n] token ids.
      noise_mask: bool [n], True at noise tokens (any mask, e.g. one starting or ending with noise).
      vocab_size: the vocabulary size; the first span's sentinel is vocab_size - 1, the next vocab_size - 2, ...

    Returns:
      The non-noise tokens with one sentinel where each noise span was, in tokens' dtype.

    Raises:
      ValueError: tokens and mask that are not 1-D or differ in length (when their shapes are known).
    """
    tokens, noise_mask = tf.convert_to_tensor(tokens), tf.convert_to_tensor(noise_mask, tf.bool)
    _check_mask(tokens, noise_mask)
    span_start, sentinels = _span_starts_and_sentinels(tokens, noise_mask, vocab_size)
    keep = tf.logical_or(span_start, tf.logical_not(noise_mask))
    return tf.boolean_mask(tf.where(span_start, sentinels, tokens), keep)


def span_corruption_targets(tokens: tf.Tensor, noise_mask: tf.Tensor,
                            vocab_size: Union[int, tf.Tensor]) -> tf.Tensor:
    """The targets: each noise span's sentinel followed by the span's tokens, spans in order.

    For the masks `random_spans_noise_mask` draws (non-noise first, noise last) this is T5's
    `nonnoise_span_to_unique_sentinel`; for other masks the sentinels still match `span_corruption_inputs`.

    Args:
      tokens: [n] token ids.
      noise_mask: bool [n], True at noise tokens.
      vocab_size: the vocabulary size (sentinels as in `span_corruption_inputs`).

    Returns:
      The targets, in tokens' dtype (empty without noise).

    Raises:
      ValueError: tokens and mask that are not 1-D or differ in length (when their shapes are known).
    """
    tokens, noise_mask = tf.convert_to_tensor(tokens), tf.convert_to_tensor(noise_mask, tf.bool)
    _check_mask(tokens, noise_mask)
    span_start, sentinels = _span_starts_and_sentinels(tokens, noise_mask, vocab_size)
    # Two slots per position, (sentinel, token): the sentinel is kept before a span's first token, the token
    # when it is noise. Flattening the slots row by row puts each sentinel right before its span.
    slots = tf.reshape(tf.stack([sentinels, tokens], axis=1), [-1])
    keep = tf.reshape(tf.stack([span_start, noise_mask], axis=1), [-1])
    return tf.boolean_mask(slots, keep)


def random_spans_helper(inputs_length: int, noise_density: float = NOISE_DENSITY,
                        mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
                        extra_tokens_per_span_inputs: int = 1,
                        extra_tokens_per_span_targets: int = 1) -> tuple[int, int]:
    """The chunk length whose corrupted inputs fill `inputs_length`, and the targets length they then need.

    As T5's `random_spans_helper`: inputs hold the non-noise tokens, `extra_tokens_per_span_inputs` per noise
    span and EOS; targets the noise tokens, `extra_tokens_per_span_targets` per span and EOS. tokens_length is
    the longest chunk length up to which every chunk's inputs fit, and targets_length the longest targets of any
    chunk up to tokens_length. As in T5, with a density of exactly 0.5 and targets longer than inputs, the chunk
    is shortened by one token so that both lengths come out equal or nearly so.

    Args:
      inputs_length: the length of the corrupted inputs, EOS included (`sequence_length["inputs"]`).
      noise_density: the fraction of tokens to corrupt.
      mean_noise_span_length: the mean length of a noise span.
      extra_tokens_per_span_inputs: tokens that stand for one noise span in the inputs (1: its sentinel).
      extra_tokens_per_span_targets: tokens that mark one noise span in the targets (1: its sentinel).

    Returns:
      (tokens_length, targets_length): e.g. (568, 114) for inputs_length 512 at T5's defaults.

    Raises:
      ValueError: an inputs length below 2 (a token and EOS), or bad noise settings.
    """
    if inputs_length < 2:
        raise ValueError(f"inputs_length must be at least 2 (a token and EOS), got {inputs_length}")

    def lengths(tokens_length: int) -> tuple[int, int]:
        num_noise_tokens, num_noise_spans = span_counts(tokens_length, noise_density, mean_noise_span_length)
        return (tokens_length - num_noise_tokens + num_noise_spans * extra_tokens_per_span_inputs + 1,
                num_noise_tokens + num_noise_spans * extra_tokens_per_span_targets + 1)

    # Counting up from 1 checks every shorter chunk too. T5 starts at inputs_length - 1, which always fits with
    # one extra token per span (a span has at least one noise token), so the result is the same there.
    tokens_length = 0
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    if noise_density == 0.5 and lengths(tokens_length)[1] > lengths(tokens_length)[0]:
        tokens_length -= 1
    targets_length = max(lengths(length)[1] for length in range(1, tokens_length + 1))
    return tokens_length, targets_length


def split_into_chunks(dataset: tf.data.Dataset, chunk_length: int, feature_key: str = "targets") -> tf.data.Dataset:
    """Each example's `feature_key` tokens -> consecutive chunks of `chunk_length` (the last may be shorter).

    Empty sequences give no chunk. Only `feature_key` is kept (the other features would not describe a chunk).

    Args:
      dataset: examples with a 1-D token feature `feature_key`.
      chunk_length: tokens per chunk, positive.
      feature_key: the feature to split.

    Returns:
      The dataset of chunks, one example {feature_key: chunk} each, in order.

    Raises:
      ValueError: a chunk length that is not positive.
    """
    if chunk_length < 1:
        raise ValueError(f"chunk_length must be positive, got {chunk_length}")

    def chunks(example: Mapping[str, tf.Tensor]) -> tf.data.Dataset:
        tokens = example[feature_key]
        num_chunks = (tf.size(tokens, out_type=tf.int64) + chunk_length - 1) // chunk_length
        return tf.data.Dataset.range(num_chunks).map(
            lambda i: {feature_key: tokens[i * chunk_length:(i + 1) * chunk_length]})

    return dataset.flat_map(chunks)


def span_corruption(dataset: tf.data.Dataset, sequence_length: Optional[Mapping[str, int]],
                    output_features: Mapping[str, seqio.Feature], noise_density: float = NOISE_DENSITY,
                    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
                    input_feature_key: str = "inputs") -> tf.data.Dataset:
    """SeqIO preprocessor: tokenized texts in "targets" -> span-corrupted "inputs" and "targets" (T5's objective).

    Each text is split into chunks of `random_spans_helper`'s tokens_length (see the module docstring), and each
    chunk is corrupted with a fresh `random_spans_noise_mask`. Put it after `seqio.preprocessors.tokenize` and
    before `seqio.preprocessors.append_eos_after_trim`: the lengths leave room for the EOS of both features.
    The per-chunk seeds come from `seqio.map_over_dataset(num_seeds=2)`, so a task read with a fixed seed
    corrupts the same way every time.

    Args:
      dataset: examples with the tokenized text as "targets" (int32 [n]).
      sequence_length: the task's lengths; `sequence_length[input_feature_key]` sets the chunk length and
        `sequence_length["targets"]` must hold the longest targets.
      output_features: the task's features; "targets" gives the vocabulary (sentinels are its last ids), which
        the inputs feature must share.
      noise_density: the fraction of tokens to corrupt.
      mean_noise_span_length: the mean length of a noise span.
      input_feature_key: the name of the corrupted inputs feature.

    Returns:
      The dataset of {input_feature_key: corrupted chunk, "targets": its spans}, neither with EOS yet.

    Raises:
      ValueError: missing sequence lengths, targets too short for the corrupted spans, an inputs feature with
        another vocabulary, fewer extra ids than sentinels needed, or bad noise settings.
    """
    if not sequence_length or sequence_length.get(input_feature_key) is None or \
            sequence_length.get("targets") is None:
        raise ValueError(f"span_corruption needs sequence lengths of {input_feature_key!r} and 'targets', got "
                         f"{sequence_length!r}")
    tokens_length, targets_length = random_spans_helper(
        int(sequence_length[input_feature_key]), noise_density, mean_noise_span_length)
    if sequence_length["targets"] < targets_length:
        raise ValueError(f"span corruption of {input_feature_key!r} length {sequence_length[input_feature_key]} "
                         f"makes targets of up to {targets_length} tokens (EOS included), more than the "
                         f"sequence length of 'targets', {sequence_length['targets']}")
    vocabulary = output_features["targets"].vocabulary
    if input_feature_key in output_features and output_features[input_feature_key].vocabulary != vocabulary:
        raise ValueError(f"span corruption makes {input_feature_key!r} from the 'targets' tokens, so both features "
                         f"need the same vocabulary")
    # A vocabulary that declares its extra ids can be checked; one with the sentinel pieces inside the
    # SentencePiece model (extra_ids 0, as mT5's is loaded here) is trusted.
    extra_ids = getattr(vocabulary, "extra_ids", 0) or 0
    max_sentinels = max(span_counts(length, noise_density, mean_noise_span_length)[1]
                        for length in range(1, tokens_length + 1))
    if 0 < extra_ids < max_sentinels:
        raise ValueError(f"span corruption needs up to {max_sentinels} sentinels; the vocabulary has "
                         f"{extra_ids} extra ids")
    vocab_size = vocabulary.vocab_size

    @seqio.map_over_dataset(num_seeds=2)
    def corrupt(example: Mapping[str, tf.Tensor], seeds: Seeds) -> dict[str, tf.Tensor]:
        tokens = example["targets"]
        noise_mask = random_spans_noise_mask(tf.size(tokens), noise_density, mean_noise_span_length, seeds=seeds)
        return {input_feature_key: span_corruption_inputs(tokens, noise_mask, vocab_size),
                "targets": span_corruption_targets(tokens, noise_mask, vocab_size)}

    return corrupt(split_into_chunks(dataset, tokens_length, "targets"))
