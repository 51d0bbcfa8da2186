"""The exact input formats: `question: {q}` (<= 50, no EOS) and `title: {t} context: {c}` (<= 200, EOS last)."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from class_jax.tasks import text_inputs

LONG_TEXT = " ".join(["mountain river"] * 80)


def test_query_format_truncation_and_no_eos(vocabulary):
    short = text_inputs.query_ids(vocabulary, "what is paris")
    assert short == list(vocabulary.encode("question: what is paris"))
    assert vocabulary.eos_id not in short
    long = text_inputs.query_ids(vocabulary, LONG_TEXT)
    assert long == list(vocabulary.encode(f"question: {LONG_TEXT}"))[:50]
    assert len(long) == 50 and long[-1] != vocabulary.eos_id


def test_passage_is_trimmed_then_given_eos_like_seqio(vocabulary):
    for title, text in (("Paris", "city river"), ("Mountain", LONG_TEXT)):
        ids = text_inputs.passage_ids(vocabulary, title, text)
        full = list(vocabulary.encode(f"title: {title} context: {text}"))
        assert ids[-1] == vocabulary.eos_id and len(ids) == min(len(full) + 1, 200)
        # seqio's own preprocessor on the same string gives the same ids.
        features = {"targets": seqio.Feature(vocabulary, add_eos=True)}
        dataset = tf.data.Dataset.from_tensors({"targets": tf.constant(full, tf.int32)})
        expected = next(iter(seqio.preprocessors.append_eos_after_trim(dataset, features, {"targets": 200})))
        assert ids == expected["targets"].numpy().tolist()


def test_tf_versions_match_numpy_versions(vocabulary):
    for title, text in (("Paris", "city river"), ("Mountain", LONG_TEXT)):
        np.testing.assert_array_equal(
            text_inputs.passage_ids_tf(vocabulary, tf.constant(title), tf.constant(text)).numpy(),
            text_inputs.passage_ids(vocabulary, title, text))
        np.testing.assert_array_equal(text_inputs.query_ids_tf(vocabulary, tf.constant(text)).numpy(),
                                      text_inputs.query_ids(vocabulary, text))


def test_batches_are_zero_padded_to_a_fixed_shape(vocabulary):
    batch = text_inputs.passage_batch(vocabulary, ["A", "B"], ["river", LONG_TEXT], rows=4)
    assert batch.shape == (4, 200) and batch.dtype == np.int32
    first = text_inputs.passage_ids(vocabulary, "A", "river")
    np.testing.assert_array_equal(batch[0, :len(first)], first)
    assert not batch[0, len(first):].any() and not batch[2:].any()
    assert batch[1, -1] == vocabulary.eos_id
    queries = text_inputs.query_batch(vocabulary, ["a b", LONG_TEXT])
    assert queries.shape == (2, 50) and (queries[1] > 0).all()


def test_bad_lengths_are_refused(vocabulary):
    with pytest.raises(ValueError, match="at least 1"):
        text_inputs.passage_ids(vocabulary, "t", "x", max_length=0)
    with pytest.raises(ValueError, match="do not fit"):
        text_inputs.pad_batch([[1, 2, 3]], 2)
    with pytest.raises(ValueError, match="do not fit"):
        text_inputs.pad_batch([[1], [2]], 4, rows=1)
