"""Span corruption (tasks/span_corruption.py) against hand-worked examples of T5's published definition.

The expected values are written out by hand from Raffel et al. 2020 (Sec. 3.1.4) and the T5 codebase
(t5/data/preprocessors.py and its tests), not computed by the module under test.
"""

import functools

import numpy as np
import pytest
import seqio
import tensorflow as tf
from seqio import test_utils

from class_jax.tasks import span_corruption as sc

TOKENS = list(range(10, 20))


def _mask(length: int, noise_positions: list[int]) -> list[bool]:
    return [i in noise_positions for i in range(length)]


def _corrupt(tokens, noise_positions, vocab_size=100):
    mask = _mask(len(tokens), noise_positions)
    return (sc.span_corruption_inputs(tf.constant(tokens), mask, vocab_size).numpy().tolist(),
            sc.span_corruption_targets(tf.constant(tokens), mask, vocab_size).numpy().tolist())


# (a) corruption of a fixed mask ----------------------------------------------------------------------------


@pytest.mark.parametrize("noise_positions, inputs, targets", [
    # The brief's example: noise spans [12 13] and [17].
    ([2, 3, 7], [10, 11, 99, 14, 15, 16, 98, 18, 19], [99, 12, 13, 98, 17]),
    # Starting with noise: the first sentinel opens the inputs.
    ([0, 1, 5], [99, 12, 13, 14, 98, 16, 17, 18, 19], [99, 10, 11, 98, 15]),
    # Ending with noise: the last sentinel closes the inputs.
    ([3, 8, 9], [10, 11, 12, 99, 14, 15, 16, 17, 98], [99, 13, 98, 18, 19]),
    # Three one-token spans, and no noise at all.
    ([0, 4, 9], [99, 11, 12, 13, 98, 15, 16, 17, 18, 97], [99, 10, 98, 14, 97, 19]),
    ([], TOKENS, []),
    # All noise: one span.
    (list(range(10)), [99], [99] + TOKENS),
])
def test_fixed_masks_give_the_hand_worked_inputs_and_targets(noise_positions, inputs, targets):
    assert _corrupt(TOKENS, noise_positions) == (inputs, targets)


def test_t5_codebase_example_and_dtype():
    # t5/data/preprocessors_test.py, test_noise_span_to_unique_sentinel: vocab_size 1000.
    tokens = tf.constant([10, 11, 12, 13, 14, 15], tf.int64)
    mask = tf.constant([True, True, False, False, True, False])
    inputs = sc.span_corruption_inputs(tokens, mask, 1000)
    assert inputs.dtype == tf.int64 and inputs.numpy().tolist() == [999, 12, 13, 998, 15]
    assert sc.span_corruption_targets(tokens, mask, 1000).numpy().tolist() == [999, 10, 11, 998, 14]
    with pytest.raises(ValueError, match="differ in length"):
        sc.span_corruption_inputs(tokens, mask[:5], 1000)


def _t5_nonnoise_span_targets(tokens, mask, vocab_size):
    """T5's targets rule, by hand: each run of non-noise tokens becomes the next sentinel, noise tokens stay."""
    out, sentinel = [], vocab_size
    for i, (token, noise) in enumerate(zip(tokens, mask)):
        if noise:
            out.append(token)
        elif i == 0 or mask[i - 1]:
            sentinel -= 1
            out.append(sentinel)
    return out


def test_targets_equal_t5s_nonnoise_span_rule_on_the_masks_drawn():
    tokens = list(range(3, 3 + 40))
    for seed in range(8):
        mask = sc.random_spans_noise_mask(40, 0.3, 2.0, seeds=[(seed, 1), (seed, 2)]).numpy().tolist()
        targets = sc.span_corruption_targets(tf.constant(tokens), mask, 100).numpy().tolist()
        assert targets == _t5_nonnoise_span_targets(tokens, mask, 100)


# (b) random_spans_noise_mask --------------------------------------------------------------------------------


def _spans(mask: np.ndarray) -> list[tuple[bool, int]]:
    """(is_noise, length) of each run of the mask."""
    runs = []
    for value in mask.tolist():
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return [(value, length) for value, length in runs]


def _expected_counts(length, density, mean_span):
    # The published definition: round(length * density) clipped to [1, length - 1], then
    # round(noise / mean_span), at least 1 (and, the module's addition, at most noise and non-noise tokens).
    noise = min(max(round(length * density), 1), length - 1)
    return noise, min(max(round(noise / mean_span), 1), noise, length - noise)


@pytest.mark.parametrize("density, mean_span", [(0.15, 3.0), (0.25, 2.0), (0.5, 1.0), (0.3, 0.5)])
def test_mask_counts_and_alternation(density, mean_span):
    # Traced once with a tensor length (as in the preprocessor), which also keeps the test fast.
    draw = tf.function(functools.partial(sc.random_spans_noise_mask, noise_density=density,
                                         mean_noise_span_length=mean_span))
    for length in [*range(2, 41), 64, 100, 190, 568]:  # 190 * 0.15 = 28.5 rounds to 28 (float32 gives 29)
        noise, num_spans = _expected_counts(length, density, mean_span)
        for seed in (0, 1):
            mask = draw(tf.constant(length), seeds=tf.constant([(seed, length), (length, seed)])).numpy()
            assert mask.shape == (length,) and mask.dtype == bool
            runs = _spans(mask)
            assert int(mask.sum()) == noise, (length, seed)
            # Spans alternate non-noise, noise, ..., so there are as many of each and the last one is noise.
            assert [is_noise for is_noise, _ in runs] == [False, True] * num_spans, (length, seed, runs)
    assert sc.span_counts(568) == (85, 28) and sc.span_counts(1137) == (171, 57)


def test_t5s_published_mask_counts():
    # t5/data/preprocessors_test.py: length 32, density 0.25, mean span 2 -> "4 noise spans with a total length
    # of 8" (the positions depend on the random ops, so only the counts are compared).
    mask = sc.random_spans_noise_mask(32, 0.25, 2.0, seeds=[(1, 2), (3, 4)]).numpy()
    assert mask.sum() == 8 and sum(is_noise for is_noise, _ in _spans(mask)) == 4


def test_mask_is_deterministic_given_seeds_and_varies_with_them():
    def draw(seeds):
        return sc.random_spans_noise_mask(200, seeds=seeds).numpy().tolist()

    seeds = [(1, 2), (3, 4)]
    assert draw(seeds) == draw(seeds) == draw(tf.constant(seeds, tf.int64))
    assert len({tuple(draw([(1, 2), (3, s)])) for s in range(5)}) == 5  # the non-noise split moves the spans
    assert len({tuple(draw([(s, 2), (3, 4)])) for s in range(5)}) == 5  # and so does the noise split


def test_every_mask_is_drawn_about_equally_often():
    # Length 8, density 0.5, mean span 2: 4 noise tokens in 2 spans and 4 others in 2 spans, i.e. 3 x 3 = 9
    # masks, each with probability 1/9.
    draw = tf.function(lambda seeds: sc.random_spans_noise_mask(8, 0.5, 2.0, seeds=seeds))
    counts = {}
    for seed in range(360):
        mask = tuple(draw(tf.constant([(seed, 0), (0, seed)])).numpy().tolist())
        counts[mask] = counts.get(mask, 0) + 1
    assert len(counts) == 9
    assert all(15 <= count <= 70 for count in counts.values()), counts  # 40 expected, standard deviation 6


def test_short_sequences_zero_density_and_bad_settings():
    assert sc.random_spans_noise_mask(0, seeds=[(0, 0), (0, 1)]).numpy().tolist() == []
    assert sc.random_spans_noise_mask(1, seeds=[(0, 0), (0, 1)]).numpy().tolist() == [False]
    assert sc.random_spans_noise_mask(2, seeds=[(0, 0), (0, 1)]).numpy().tolist() == [False, True]
    assert not sc.random_spans_noise_mask(50, 0.0, seeds=[(0, 0), (0, 1)]).numpy().any()
    with pytest.raises(ValueError, match="noise_density"):
        sc.random_spans_noise_mask(10, 1.0, seeds=[(0, 0), (0, 1)])
    with pytest.raises(ValueError, match="mean_noise_span_length"):
        sc.random_spans_noise_mask(10, 0.15, 0.0, seeds=[(0, 0), (0, 1)])


# (c) random_spans_helper ------------------------------------------------------------------------------------


def test_helper_reproduces_t5s_numbers():
    # inputs 512, density 0.15, mean span 3 (T5's span corruption; T5's en_mix.gin and T5X's c4 pretraining
    # configs use {"inputs": 512, "targets": 114}). By hand: 568 tokens have round(85.2) = 85 noise tokens in
    # round(28.3) = 28 spans, so inputs 568 - 85 + 28 + EOS = 512 and targets 85 + 28 + EOS = 114; 569 tokens
    # have 85 noise tokens too and give 513 inputs.
    assert sc.random_spans_helper(512, 0.15, 3.0, 1, 1) == (568, 114)
    # inputs 1024: 1137 tokens have round(170.55) = 171 noise tokens in 57 spans: 1137 - 171 + 57 + 1 = 1024
    # inputs and 171 + 57 + 1 = 229 targets; 1138 tokens (round(170.7) = 171) give 1025 inputs.
    assert sc.random_spans_helper(1024) == (1137, 229)
    # t5/data/preprocessors_test.py, test_random_spans_helper: inputs 64, density 0.2.
    assert sc.random_spans_helper(64, 0.2, 2.0, 1, 1) == (70, 22)
    assert sc.random_spans_helper(64, 0.2, 1.0, 1, 1) == (63, 27)
    # inputs 172: 190 tokens, with 28 noise tokens (190 * 0.15 = 28.5, rounded to even) in 9 spans.
    assert sc.random_spans_helper(172) == (190, 28 + 9 + 1)


@pytest.mark.parametrize("density, mean_span", [(0.15, 3.0), (0.2, 8.0), (0.5, 3.0)])
def test_helper_lengths_hold_every_chunk_and_are_the_longest(density, mean_span):
    for inputs_length in range(2, 130):
        tokens_length, targets_length = sc.random_spans_helper(inputs_length, density, mean_span)
        fits = []
        for length in range(1, tokens_length + 2):
            noise, spans = _expected_counts(length, density, mean_span) if length >= 2 else (0, 0)
            fits.append(length - noise + spans + 1 <= inputs_length)
            if length <= tokens_length:
                assert noise + spans + 1 <= targets_length, (inputs_length, length)
        if density != 0.5:  # T5's 0.5 rule may shorten the chunk by one on purpose
            assert fits == [True] * tokens_length + [False], inputs_length
        else:
            assert all(fits[:tokens_length]), inputs_length
    with pytest.raises(ValueError, match="at least 2"):
        sc.random_spans_helper(1)


# (d) the SeqIO preprocessor ---------------------------------------------------------------------------------

EXTRA_IDS = 10
TEXTS = ["this is a test", "", "a",
         "the quick brown fox jumps over the lazy dog, again and again and again and again and again",
         "short text " * 12]


@pytest.fixture(scope="module")
def vocabulary():
    """seqio's test vocabulary (26 pieces: pad 0, eos 1, unk 2) with 10 extra ids: <extra_id_0> = 35."""
    vocab = test_utils.sentencepiece_vocab(extra_ids=EXTRA_IDS)
    assert vocab.vocab_size == 36 and vocab.decode_tf(tf.constant([35])).numpy() == b"<extra_id_0>"
    return vocab


def _features(vocabulary):
    return {"inputs": seqio.Feature(vocabulary), "targets": seqio.Feature(vocabulary)}


def _merge(inputs, targets, vocab_size):
    """The original tokens: each sentinel of the inputs replaced by what follows it in the targets."""
    def is_sentinel(token):
        return token >= vocab_size - EXTRA_IDS

    assert not targets or is_sentinel(targets[0])
    spans = {}
    for token in targets:
        if is_sentinel(token):
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    return [piece for token in inputs for piece in (spans[token] if is_sentinel(token) else [token])]


def _task(vocabulary, **kwargs):
    def dataset_fn(split, shuffle_files, seed=None):
        del split, shuffle_files, seed
        return tf.data.Dataset.from_tensor_slices({"targets": TEXTS})

    return seqio.Task(
        "span_corruption_test", seqio.FunctionDataSource(dataset_fn, splits=["train"]),
        preprocessors=[functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=False),
                       functools.partial(sc.span_corruption, **kwargs),
                       seqio.preprocessors.append_eos_after_trim],
        output_features=_features(vocabulary))


def _read(task, sequence_length, seed):
    dataset = task.get_dataset(sequence_length, split="train", shuffle=False, seed=seed)
    return [(x["inputs"].tolist(), x["targets"].tolist()) for x in dataset.as_numpy_iterator()]


def test_task_corrupts_within_lengths_and_reconstructs(vocabulary):
    inputs_length = 48
    tokens_length, targets_length = sc.random_spans_helper(inputs_length)
    assert (tokens_length, targets_length) == (52, 12)
    sequence_length = {"inputs": inputs_length, "targets": targets_length}
    originals = [vocabulary.encode(text) for text in TEXTS]
    task = _task(vocabulary)
    examples = _read(task, sequence_length, seed=3)
    # Each text in consecutive chunks of 52 tokens, empty text dropped.
    assert len(examples) == sum(-(-len(tokens) // tokens_length) for tokens in originals)
    vocab_size, eos = vocabulary.vocab_size, vocabulary.eos_id
    merged = []
    for inputs, targets in examples:
        assert len(inputs) <= inputs_length and len(targets) <= targets_length
        assert inputs[-1] == eos and targets[-1] == eos
        inputs, targets = inputs[:-1], targets[:-1]
        sentinels = [token for token in inputs if token >= vocab_size - EXTRA_IDS]
        assert sentinels == list(range(vocab_size - 1, vocab_size - 1 - len(sentinels), -1))
        assert [token for token in targets if token >= vocab_size - EXTRA_IDS] == sentinels
        assert sentinels or len(inputs) == 1  # only a 1-token chunk is left whole
        merged.extend(_merge(inputs, targets, vocab_size))
    assert merged == [token for tokens in originals for token in tokens]
    # The same seed corrupts the same way; another seed differently.
    assert _read(task, sequence_length, seed=3) == examples
    assert _read(task, sequence_length, seed=4) != examples


def test_preprocessor_rejects_lengths_and_vocabularies_it_cannot_serve(vocabulary):
    dataset = tf.data.Dataset.from_tensor_slices({"targets": tf.ragged.constant([[3, 4, 5]])})
    features = _features(vocabulary)
    with pytest.raises(ValueError, match="targets of up to 12 tokens"):
        sc.span_corruption(dataset, {"inputs": 48, "targets": 11}, features)
    with pytest.raises(ValueError, match="needs sequence lengths"):
        sc.span_corruption(dataset, None, features)
    other = {"inputs": seqio.Feature(test_utils.sentencepiece_vocab()), "targets": features["targets"]}
    with pytest.raises(ValueError, match="same vocabulary"):
        sc.span_corruption(dataset, {"inputs": 48, "targets": 12}, other)
    few = {name: seqio.Feature(test_utils.sentencepiece_vocab(extra_ids=2)) for name in ("inputs", "targets")}
    with pytest.raises(ValueError, match="up to 3 sentinels; the vocabulary has 2 extra ids"):
        sc.span_corruption(dataset, {"inputs": 48, "targets": 12}, few)
