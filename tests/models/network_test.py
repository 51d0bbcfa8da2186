"""Properties of the CLASS network: retriever split, retrieval target, caches, remat, dtypes."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from class_jax.models import layers
from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig
from class_jax.models.network import Transformer

TINY = ModelConfig(vocab_size=67, emb_dim=16, num_heads=3, head_dim=5, mlp_dim=24, num_encoder_layers=4,
                   num_decoder_layers=2, relative_attention_num_buckets=8, relative_attention_max_distance=16,
                   dropout_rate=0.0)
SHAPES = {"query_tokens": (2, 6), "passage_tokens": (2, 3, 9), "decoder_input_tokens": (2, 5)}


def _init(config: ModelConfig):
    model = CLASSModel(config, max_decode_length=5)
    params = nn.unbox(model.get_initial_variables(jax.random.PRNGKey(0), SHAPES)["params"])
    return model, params


def _batch(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    query = rng.randint(2, 67, (2, 6))
    query[0, 4:] = 0  # a short query
    passages = rng.randint(2, 67, (2, 3, 9))
    passages[1, 0, 5:] = 0  # a short passage
    passages[1, 2] = 0  # an empty slot
    targets = rng.randint(2, 67, (2, 5))
    weights = np.ones((2, 5), np.float32)
    weights[1, 3:] = 0
    return {"query_tokens": query, "passage_tokens": passages, "decoder_target_tokens": targets,
            "decoder_input_tokens": np.concatenate([np.zeros((2, 1), int), targets[:, :-1]], 1),
            "decoder_loss_weights": weights}


@pytest.mark.parametrize("retriever_layer", [1, 2, 3])
def test_passage_vector_alone_equals_inside_pair(retriever_layer):
    config = TINY.__class__(**{**TINY.__dict__, "retriever_layer": retriever_layer})
    model, params = _init(config)
    batch = _batch()
    pair = jax.jit(lambda q, p: model.module.apply({"params": params}, q, p, method="encode_pairs"))(
        batch["query_tokens"], batch["passage_tokens"])
    in_pair_passages = model._vectors(params, pair["passage_readout"], False)["vectors"]
    in_pair_queries = model._vectors(params, pair["query_readout"], True)["vectors"]
    alone_passages = model.encode_for_retrieval(params, batch["passage_tokens"].reshape(6, 9), False)["vectors"]
    alone_queries = model.encode_for_retrieval(params, batch["query_tokens"], True)["vectors"]
    np.testing.assert_allclose(alone_passages.reshape(2, 3, -1), in_pair_passages, atol=1e-5)
    np.testing.assert_allclose(alone_queries, in_pair_queries, atol=1e-5)
    # The query and passage projections are different parameters: the same text gives different vectors.
    assert not np.allclose(model.encode_for_retrieval(params, batch["query_tokens"], False)["vectors"],
                           alone_queries)


def test_token_mode_vectors_alone_equal_inside_pair():
    config = TINY.__class__(**{**TINY.__dict__, "retrieval_mode": "token", "retrieval_head": 2})
    model, params = _init(config)
    assert "retriever" not in params["encoder"]
    batch = _batch()
    pair = model.module.apply({"params": params}, batch["query_tokens"], batch["passage_tokens"],
                              method="encode_pairs")
    alone = model.encode_for_retrieval(params, batch["passage_tokens"].reshape(6, 9), False)
    np.testing.assert_allclose(alone["tokens"].reshape(2, 3, 9, -1), pair["passage_readout"]["token_key"],
                               atol=1e-5)


def test_joint_only_pairs_equal_plain_encoder_on_concatenation():
    """With B = 0 every layer sees the whole pair, so a pair must encode like the plain concatenated sequence."""
    config = TINY.__class__(**{**TINY.__dict__, "retriever_layer": 0})
    model, params = _init(config)
    batch = _batch()
    pair = model.module.apply({"params": params}, batch["query_tokens"], batch["passage_tokens"],
                              method="encode_pairs")
    joined = np.concatenate([np.repeat(batch["query_tokens"][:, None], 3, 1), batch["passage_tokens"]], -1)
    plain = model.module.apply({"params": params}, joined.reshape(6, 15), method="encode")
    encoded = np.asarray(pair["encoded"]).reshape(6, 15, -1)
    valid = (joined > 0) & (batch["passage_tokens"] > 0).any(-1, keepdims=True)  # the empty slot is masked whole
    valid = valid.reshape(6, 15)
    np.testing.assert_allclose(encoded[valid], np.asarray(plain)[valid], atol=1e-5)


def test_block_diagonal_layers_isolate_query_from_passage():
    """Below B, changing the passage must not change the query's retrieval vector and vice versa."""
    model, params = _init(TINY)
    batch = _batch()
    other = dict(batch, passage_tokens=_batch(seed=5)["passage_tokens"])
    a = model.module.apply({"params": params}, batch["query_tokens"], batch["passage_tokens"], method="encode_pairs")
    b = model.module.apply({"params": params}, other["query_tokens"], other["passage_tokens"], method="encode_pairs")
    np.testing.assert_allclose(a["query_readout"]["normed"], b["query_readout"]["normed"], atol=1e-6)
    assert not np.allclose(a["encoded"], b["encoded"])  # the joint layers do mix them


def test_retrieval_target_is_a_distribution_over_present_passages():
    from class_jax.models import losses
    model, params = _init(TINY)
    batch = _batch()
    out = model.module.apply({"params": params}, batch["query_tokens"], batch["passage_tokens"],
                             batch["decoder_input_tokens"])
    target = np.asarray(losses.retrieval_target(out["cross_probs"], out["encoded_valid"], 3))
    assert target.shape == (2, 3)
    np.testing.assert_allclose(target.sum(-1), 1.0, atol=1e-5)
    assert target[1, 2] < 1e-6  # the empty slot gets no attention
    assert np.all(target >= 0)


def test_cached_decoding_matches_teacher_forcing():
    model, params = _init(TINY)
    batch = _batch()
    tokens = np.asarray(model.predict_batch(params, batch))
    enc = model.module.apply({"params": params}, batch["query_tokens"], batch["passage_tokens"],
                             method="encode_pairs")
    # Re-run the decoder without cache on the predicted prefix: argmax at each step must reproduce it.
    prefix = np.concatenate([np.zeros((2, 1), int), tokens[:, :-1]], 1)
    logits, _ = model.module.apply({"params": params}, enc["encoded"], enc["encoded_valid"], prefix,
                                   method="decode")
    expected = np.asarray(jnp.argmax(logits, -1))
    for row in range(2):
        length = next((i + 1 for i, t in enumerate(tokens[row]) if t == 1), 5)
        np.testing.assert_array_equal(tokens[row, :length], expected[row, :length])


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model, params = _init(TINY)
    beam_model = CLASSModel(TINY, max_decode_length=5, num_beams=4)
    batch = _batch()
    greedy = np.asarray(model.predict_batch(params, batch))
    beam = np.asarray(beam_model.predict_batch(params, batch))

    def log_likelihood(tokens):
        weights = np.cumsum(tokens == 1, axis=1)
        weights = (weights == 0) | ((weights == 1) & (tokens == 1))
        feats = dict(batch, decoder_target_tokens=tokens, decoder_loss_weights=weights.astype(np.float32),
                     decoder_input_tokens=np.concatenate([np.zeros((2, 1), int), tokens[:, :-1]], 1))
        return np.asarray(model.score_batch(params, feats))

    assert np.all(log_likelihood(beam) >= log_likelihood(greedy) - 1e-4)


@pytest.mark.parametrize("policy", ["full", "minimal"])
def test_remat_gives_identical_loss_and_gradients(policy):
    model, params = _init(TINY)
    remat_model = CLASSModel(TINY.__class__(**{**TINY.__dict__, "remat_policy": policy}))
    batch = _batch()
    loss_a, grads_a = jax.jit(jax.value_and_grad(lambda p: model.loss_fn(p, batch, None)[0]))(params)
    loss_b, grads_b = jax.jit(jax.value_and_grad(lambda p: remat_model.loss_fn(p, batch, None)[0]))(params)
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), grads_a, grads_b)


def test_bfloat16_compute_is_close_to_float32():
    model, params = _init(TINY)
    bf16 = CLASSModel(TINY.__class__(**{**TINY.__dict__, "dtype": "bfloat16"}))
    batch = _batch()
    loss_32, _ = jax.jit(model.loss_fn)(params, batch, None)
    loss_16, _ = jax.jit(bf16.loss_fn)(params, batch, None)
    assert np.isfinite(loss_16)
    np.testing.assert_allclose(loss_16, loss_32, rtol=5e-2)


def test_fused_attention_gives_the_einsum_path_results():
    """attention_kernel="xla" runs `jax.nn.dot_product_attention` with the arguments the "cudnn" kernel gets."""
    model, params = _init(TINY)
    fused = CLASSModel(dataclasses.replace(TINY, attention_kernel="xla"), max_decode_length=5)
    batch = _batch()
    loss_a, grads_a = jax.jit(jax.value_and_grad(lambda p: model.loss_fn(p, batch, None)[0]))(params)
    loss_b, grads_b = jax.jit(jax.value_and_grad(lambda p: fused.loss_fn(p, batch, None)[0]))(params)
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), grads_a, grads_b)
    # Predictions (the encoder fused, cached decoding steps not) and the retrieval vectors are the einsum path's.
    np.testing.assert_array_equal(model.predict_batch(params, batch), fused.predict_batch(params, batch))
    tokens = jnp.asarray(batch["passage_tokens"][:, 0])
    np.testing.assert_allclose(model.encode_for_retrieval(params, tokens, is_query=False)["vectors"],
                               fused.encode_for_retrieval(params, tokens, is_query=False)["vectors"], rtol=1e-5)


def test_cudnn_attention_runs_as_xla_off_gpus():
    """A checkpoint trained with the cuDNN kernel (its config says so) still serves on this CPU."""
    rng = np.random.default_rng(0)
    query, key = (jnp.asarray(rng.standard_normal((2, length, 3, 8)), jnp.bfloat16) for length in (6, 10))
    bias = layers.key_padding_bias(jnp.arange(10)[None] < jnp.array([[7], [10]]))
    np.testing.assert_array_equal(layers.fused_attention(query, key, key, bias, "cudnn"),
                                  layers.fused_attention(query, key, key, bias, "xla"))


@pytest.mark.slow  # ~30 s of compilation; test_fused_attention_gives_the_einsum_path_results stays in the default run
def test_fused_attention_leaves_dropped_out_probabilities_to_the_einsum_path(monkeypatch):
    config = dataclasses.replace(TINY, dropout_rate=0.3)
    model, params = _init(config)
    batch, rng = _batch(), jax.random.PRNGKey(3)
    fused_calls = []
    fused_attention = layers.fused_attention
    monkeypatch.setattr(layers, "fused_attention", lambda *args: fused_calls.append(1) or fused_attention(*args))

    def loss(**changes):
        fused_calls.clear()
        value = jax.jit(CLASSModel(dataclasses.replace(config, **changes)).loss_fn)(params, batch, rng)[0]
        return value, len(fused_calls)

    with_attention_dropout, _ = loss()
    assert loss(attention_kernel="xla") == (with_attention_dropout, 0)
    # Without dropout on the probabilities (dropout elsewhere stays), training takes the fused path: in the two
    # block-diagonal layers (over queries, over passages), the two joint layers, and the decoder's two layers but
    # for the last cross-attention, whose probabilities give the retrieval target.
    without, calls = loss(attention_dropout_rate=0.0, attention_kernel="xla")
    assert calls == 2 + 2 + 2 + 3 and without != with_attention_dropout


def test_dropout_changes_loss_only_with_an_rng():
    config = TINY.__class__(**{**TINY.__dict__, "dropout_rate": 0.3})
    model, params = _init(config)
    batch = _batch()
    loss_fn = jax.jit(model.loss_fn)
    a, _ = loss_fn(params, batch, None)
    b, _ = loss_fn(params, batch, None)
    c, _ = loss_fn(params, batch, jax.random.PRNGKey(3))
    assert a == b and a != c


def test_every_parameter_has_logical_axes():
    model = CLASSModel(TINY)
    boxed = model.get_initial_variables(jax.random.PRNGKey(0), SHAPES)["params"]
    leaves = jax.tree_util.tree_leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in leaves)
    for leaf in leaves:
        assert len(leaf.names) == leaf.value.ndim


def test_tree_uses_t5x_names():
    _, params = _init(TINY)
    assert params["encoder"]["layers_0"]["attention"]["query"]["kernel"].shape == (16, 15)
    assert params["decoder"]["layers_1"]["encoder_decoder_attention"]["out"]["kernel"].shape == (15, 16)
    assert params["decoder"]["logits_dense"]["kernel"].shape == (16, 67)
    assert params["encoder"]["relpos_bias"]["rel_embedding"].shape == (3, 8)
    assert params["encoder"]["retriever"]["layer_norm"]["scale"].shape == (15,)
    assert sorted(k for k in params["encoder"] if k.startswith("layers_")) == [f"layers_{i}" for i in range(4)]


def test_identical_projection_init_starts_both_towers_equal():
    _, independent = _init(TINY)
    _, identical = _init(dataclasses.replace(TINY, identical_projection_init=True))
    retriever = identical["encoder"]["retriever"]
    np.testing.assert_array_equal(retriever["query_proj"]["kernel"], retriever["passage_proj"]["kernel"])
    # Only passage_proj changes: the query tower is the independent init's.
    np.testing.assert_array_equal(retriever["query_proj"]["kernel"],
                                  independent["encoder"]["retriever"]["query_proj"]["kernel"])
    assert not np.array_equal(independent["encoder"]["retriever"]["query_proj"]["kernel"],
                              independent["encoder"]["retriever"]["passage_proj"]["kernel"])
    # So a fresh retriever maps a text to the same vector as a query and as a passage.
    model = CLASSModel(dataclasses.replace(TINY, identical_projection_init=True))
    tokens = jnp.asarray(_batch()["query_tokens"])
    query = model.encode_for_retrieval(identical, tokens, is_query=True)
    passage = model.encode_for_retrieval(identical, tokens, is_query=False)
    np.testing.assert_allclose(query["vectors"], passage["vectors"], rtol=1e-6)


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="needs dtype='bfloat16'"):
        dataclasses.replace(TINY, attention_kernel="cudnn").validate()
    with pytest.raises(ValueError, match="attention_dropout_rate=1.0"):
        dataclasses.replace(TINY, attention_dropout_rate=1.0).validate()
    with pytest.raises(ValueError, match="attention_kernel='flash'"):
        dataclasses.replace(TINY, attention_kernel="flash").validate()
    with pytest.raises(ValueError, match="retriever_layer"):
        Transformer(TINY.__class__(**{**TINY.__dict__, "retriever_layer": 9})).init(
            jax.random.PRNGKey(0), jnp.ones((1, 2), int), method="encode")
