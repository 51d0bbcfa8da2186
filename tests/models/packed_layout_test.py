"""The "packed" pair layout equals a straightforward per-pair packed computation; "slot" does not, for short queries.

The reference (`numpy_class_reference`) concatenates each query's real tokens with each passage's real tokens (no
slot, no pads), runs the layers below B block-diagonally and the layers from B on over the whole packed pair, and
reads the k encodings with the decoder, all in float64 numpy.
"""

import dataclasses

import flax
import jax
import numpy as np
import pytest

import numpy_class_reference as ref
from class_jax.models.config import ModelConfig
from class_jax.models.network import Transformer

QUERY_SLOT, PASSAGE_LEN, K = 8, 10, 3
CONFIG = ModelConfig(vocab_size=53, emb_dim=16, num_heads=3, head_dim=5, mlp_dim=24, num_encoder_layers=3,
                     num_decoder_layers=2, retriever_layer=1, relative_attention_num_buckets=8,
                     relative_attention_max_distance=20, dropout_rate=0.0)
PACKED = dataclasses.replace(CONFIG, pair_layout="packed")
# float32 network against the float64 reference: rounding only (the layouts differ by about 1e-1 here).
TOLERANCE = 1e-4


def _params(seed: int = 0):
    variables = Transformer(CONFIG).init(jax.random.PRNGKey(seed), np.ones((1, 4), np.int32),
                                         np.ones((1, 1, 4), np.int32), np.ones((1, 2), np.int32))
    params = flax.core.meta.unbox(variables["params"])
    rng = np.random.default_rng(seed)
    # Norm scales away from 1 and a larger position table, so a swapped norm or a wrong bucket cannot hide.
    return jax.tree_util.tree_map(lambda x: np.asarray(x + 0.3 * rng.standard_normal(x.shape), np.float32), params)


def _batch(query_lengths, seed: int = 1):
    """Queries of the given real lengths in their slot; K passage slots of varied lengths, the last one empty."""
    rng = np.random.default_rng(seed)
    queries = np.zeros((len(query_lengths), QUERY_SLOT), np.int32)
    passages = np.zeros((len(query_lengths), K, PASSAGE_LEN), np.int32)
    for row, length in enumerate(query_lengths):
        queries[row, :length] = rng.integers(2, CONFIG.vocab_size, length)
        for slot, passage_len in enumerate((PASSAGE_LEN, 4)):  # slot K - 1 stays empty
            passages[row, slot, :passage_len - 1] = rng.integers(2, CONFIG.vocab_size, passage_len - 1)
            passages[row, slot, passage_len - 1] = 1  # EOS
    decoder_input = np.concatenate([np.zeros((len(query_lengths), 1), np.int32),
                                    rng.integers(2, CONFIG.vocab_size, (len(query_lengths), 4))], axis=1)
    return queries, passages, decoder_input.astype(np.int32)


def _reference_logits(params, queries, passages, decoder_input):
    model = ref.NumpyCLASS(params, num_heads=CONFIG.num_heads, num_encoder_layers=CONFIG.num_encoder_layers,
                           num_decoder_layers=CONFIG.num_decoder_layers, retriever_layer=CONFIG.retriever_layer,
                           num_buckets=CONFIG.relative_attention_num_buckets,
                           max_distance=CONFIG.relative_attention_max_distance, eps=CONFIG.layer_norm_epsilon)
    out = []
    for query, slots, decoder in zip(queries, passages, decoder_input):
        real_passages = [p[p > 0] for p in slots if np.any(p > 0)]
        out.append(model.logits(query[query > 0], real_passages, decoder))
    return np.stack(out)


@pytest.mark.parametrize("query_lengths", [(1, 1), (3, 5), (QUERY_SLOT, QUERY_SLOT), (1, QUERY_SLOT)])
def test_packed_layout_matches_the_per_pair_packed_reference(query_lengths):
    params = _params()
    queries, passages, decoder_input = _batch(query_lengths)
    expected = _reference_logits(params, queries, passages, decoder_input)
    packed = Transformer(PACKED).apply({"params": params}, queries, passages, decoder_input)["logits"]
    np.testing.assert_allclose(np.asarray(packed), expected, atol=TOLERANCE, rtol=0)


def test_slot_layout_departs_from_the_packed_reference_only_for_short_queries():
    params = _params()
    queries, passages, decoder_input = _batch((3, QUERY_SLOT))
    expected = _reference_logits(params, queries, passages, decoder_input)
    slot = np.asarray(Transformer(CONFIG).apply({"params": params}, queries, passages, decoder_input)["logits"])
    assert np.abs(slot[0] - expected[0]).max() > 100 * TOLERANCE  # the query is shorter than its slot
    np.testing.assert_allclose(slot[1], expected[1], atol=TOLERANCE, rtol=0)  # it fills its slot


def test_full_queries_give_the_slot_layout_bit_for_bit():
    params = _params()
    queries, passages, decoder_input = _batch((QUERY_SLOT, QUERY_SLOT))
    slot = Transformer(CONFIG).apply({"params": params}, queries, passages, decoder_input)
    packed = Transformer(PACKED).apply({"params": params}, queries, passages, decoder_input)
    np.testing.assert_array_equal(np.asarray(packed["logits"]), np.asarray(slot["logits"]))


def test_retrieval_readouts_do_not_depend_on_the_layout():
    # They are read at the input of layer B, below any pair attention.
    params = _params()
    queries, passages, decoder_input = _batch((1, 5))
    slot = Transformer(CONFIG).apply({"params": params}, queries, passages, decoder_input)
    packed = Transformer(PACKED).apply({"params": params}, queries, passages, decoder_input)
    for side in ("query_readout", "passage_readout"):
        for name in slot[side]:
            np.testing.assert_array_equal(np.asarray(packed[side][name]), np.asarray(slot[side][name]))
    module = Transformer(PACKED)
    for tokens, is_query in ((queries, True), (passages.reshape(-1, PASSAGE_LEN), False)):
        alone = module.apply({"params": params}, tokens, method="retrieval_readout")
        vectors = module.apply({"params": params}, alone, is_query, method="retrieval_vectors")
        slot_vectors = Transformer(CONFIG).apply(
            {"params": params}, Transformer(CONFIG).apply({"params": params}, tokens, method="retrieval_readout"),
            is_query, method="retrieval_vectors")
        np.testing.assert_array_equal(np.asarray(vectors["vectors"]), np.asarray(slot_vectors["vectors"]))


def test_an_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="pair_layout"):
        dataclasses.replace(CONFIG, pair_layout="interleaved").validate()
