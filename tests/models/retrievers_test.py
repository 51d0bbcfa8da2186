"""The retriever-kind registry: dispatch, errors, each kind's scores, and a new kind reaching every dispatch site."""

import dataclasses
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from class_jax.checkpoints import param_layout
from class_jax.checkpoints.hf import config as hf_config
from class_jax.checkpoints.hf import mapping as hf_mapping
from class_jax.models import retrievers
from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig
from class_jax.retrieval import index_format

BASE = ModelConfig(vocab_size=29, emb_dim=8, num_heads=3, head_dim=5, mlp_dim=12, num_encoder_layers=3,
                   num_decoder_layers=2, relative_attention_num_buckets=6, relative_attention_max_distance=10)
SHAPES = {"query_tokens": (1, 3), "passage_tokens": (1, 2, 4), "decoder_input_tokens": (1, 2)}


def test_dispatch_by_retrieval_mode():
    assert retrievers.known_kinds()[:2] == ("pooled", "token")
    assert retrievers.get_retriever(BASE) is retrievers.POOLED
    assert isinstance(retrievers.POOLED, retrievers.PooledRetriever)
    token = dataclasses.replace(BASE, retrieval_mode="token")
    assert retrievers.get_retriever(token) is retrievers.TOKEN
    assert retrievers.retriever_for("token") is retrievers.TOKEN
    assert retrievers.POOLED.vector_shape(BASE, 7) == (15,)
    assert retrievers.TOKEN.vector_shape(token, 7) == (7, 5)
    assert retrievers.POOLED.index_dim(BASE) == 15 and retrievers.TOKEN.index_dim(token) == 5


def test_unknown_kind_is_one_clear_error():
    with pytest.raises(ValueError, match=r"retrieval_mode='colbert': expected one of 'pooled', 'token'"):
        retrievers.retriever_for("colbert")
    with pytest.raises(ValueError, match=r"retrieval_mode='colbert': expected one of 'pooled', 'token'"):
        dataclasses.replace(BASE, retrieval_mode="colbert").validate()


def test_token_kind_validates_its_head():
    with pytest.raises(ValueError, match=r"retrieval_head=3 outside \[0, 3\)"):
        dataclasses.replace(BASE, retrieval_mode="token", retrieval_head=3).validate()
    dataclasses.replace(BASE, retrieval_head=3).validate()  # pooled mode has no retrieval head


def test_pooled_scores_by_hand():
    queries = {"vectors": jnp.array([[1.0, 2.0], [0.0, 1.0]])}
    passages = {"vectors": jnp.array([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [-1.0, 5.0]]])}  # [2 queries, k=2]
    all_pairs = retrievers.POOLED.score(BASE, queries, passages)
    np.testing.assert_allclose(all_pairs, [[11.0, 1.0, 4.0, 9.0], [4.0, 0.0, 2.0, 5.0]])
    own = retrievers.POOLED.own_scores(BASE, queries, passages)
    np.testing.assert_allclose(own, [[11.0, 1.0], [2.0, 5.0]])


def _token_example() -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    queries = {"tokens": jnp.array([[[1.0, 0.0], [0.0, 1.0]]]), "valid": jnp.array([[True, True]])}
    passages = {"tokens": jnp.array([[[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]], [[5.0, 5.0], [0.0, 0.0], [0.0, 0.0]]]),
                "valid": jnp.array([[True, True, False], [False, False, False]])}
    return queries, passages


def test_token_maxsim_scores_by_hand():
    config = dataclasses.replace(BASE, retrieval_mode="token")
    queries, passages = _token_example()
    # q1 = (1, 0): max(1, 2) = 2 (the third key is a pad); q2 = (0, 1): max(1, 0) = 1. An empty passage: -1e9.
    np.testing.assert_allclose(retrievers.TOKEN.score(config, queries, passages), [[3.0, -1e9]])
    normed = dataclasses.replace(config, token_score_length_norm=True)
    np.testing.assert_allclose(retrievers.TOKEN.score(normed, queries, passages), [[1.5, -1e9]])


def test_token_scores_add_the_retrieval_heads_position_bias():
    config = dataclasses.replace(BASE, retrieval_mode="token", retrieval_head=1, token_score_position_bias=True)
    queries, passages = _token_example()

    def relative_bias(query_positions: np.ndarray, key_positions: np.ndarray) -> jax.Array:
        # Head 1 adds 1 to every key at position 3, i.e. the second passage token after a 2-token query slot.
        head = np.broadcast_to((key_positions == 3).astype(np.float32), (len(query_positions), len(key_positions)))
        return jnp.stack([jnp.full(head.shape, 100.0), jnp.asarray(head), jnp.full(head.shape, -100.0)])

    # q1: max(1, 2 + 1) = 3; q2: max(1, 0 + 1) = 1.
    np.testing.assert_allclose(retrievers.TOKEN.score(config, queries, passages, relative_bias), [[4.0, -1e9]])
    # A 3-token query slot moves the passage to positions 3.. : the bias falls on its first token.
    np.testing.assert_allclose(retrievers.TOKEN.score(config, queries, passages, relative_bias, query_length=3),
                               [[4.0, -1e9]])  # q1: max(1 + 1, 2) = 2; q2: max(1 + 1, 0) = 2
    # A 4-token slot puts the passage at positions 4.. : no bias.
    np.testing.assert_allclose(retrievers.TOKEN.score(config, queries, passages, relative_bias, query_length=4),
                               [[3.0, -1e9]])


class _FakeHead(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, normed: jax.Array, valid: jax.Array, is_query: bool) -> jax.Array:
        del valid
        scale = self.param("scale", nn.initializers.ones, (self.config.emb_dim,))
        return (normed * scale).sum(-2) * (1.0 if is_query else -1.0)


class FakeRetriever(retrievers.RetrieverKind):
    """A third kind: one parameter, scores = -(sum of the query vector) * (number of passages) (easy to spot)."""

    name = "fake"
    index_arrays = {"fake_vectors": 2}
    param_paths = ("encoder/retriever/scale",)
    hf_config_keys = ("fake_layer",)

    def make_head(self, config: ModelConfig) -> Optional[nn.Module]:
        return _FakeHead(config)

    def vectors(self, config: ModelConfig, head: Optional[nn.Module], readout: Mapping[str, jax.Array],
                is_query: bool) -> dict[str, jax.Array]:
        return {"fake": head(readout["normed"], readout["valid"], is_query)}

    def vector_shape(self, config: ModelConfig, length: int) -> tuple[int, ...]:
        return (config.emb_dim,)

    def score(self, config: ModelConfig, queries: Any, passages: Any, relative_bias: Any = None,
              query_length: Optional[int] = None, chunk_size: Optional[int] = None) -> jax.Array:
        num_passages = passages["fake"].reshape(-1, passages["fake"].shape[-1]).shape[0]
        return jnp.broadcast_to(-queries["fake"].sum(-1, keepdims=True), (queries["fake"].shape[0], num_passages))

    def param_shapes(self, config: ModelConfig) -> dict[str, tuple[int, ...]]:
        return {"encoder/retriever/scale": (config.emb_dim,)}

    def hf_tensor_rules(self, config: ModelConfig) -> tuple[retrievers.HfTensorRule, ...]:
        return ((f"encoder.block.{config.retriever_layer_index}.fake_scale.weight", "encoder/retriever/scale", False),)

    def write_hf_config(self, config: ModelConfig, hf: dict[str, Any]) -> None:
        hf["fake_layer"] = config.retriever_layer_index


@pytest.fixture(name="fake")
def fixture_fake():
    kind = retrievers.register(FakeRetriever())
    yield kind
    retrievers.unregister("fake")
    assert "fake" not in retrievers.known_kinds()


def test_a_registered_kind_reaches_every_dispatch_site(fake):
    config = dataclasses.replace(BASE, retrieval_mode="fake")
    config.validate()
    assert retrievers.get_retriever(config) is fake

    # Parameter layout, and the network's head built from it.
    expected = param_layout.expected_shapes(config)
    assert expected["encoder/retriever/scale"] == (8,)
    assert not set(retrievers.POOLED.param_paths) & set(expected)
    model = CLASSModel(config)
    variables = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), SHAPES))
    initialised = {path: tuple(leaf.shape)
                   for path, leaf in param_layout.flatten(nn.unbox(variables["params"])).items()}
    assert initialised == expected

    # The model's representations and scores.
    params = model.get_initial_variables(jax.random.PRNGKey(0), SHAPES)["params"]
    tokens = jnp.array([[3, 4, 0], [5, 0, 0]])
    queries = model.encode_for_retrieval(params, tokens, is_query=True)
    passages = model.encode_for_retrieval(params, tokens, is_query=False)
    assert set(queries) == {"fake"} and queries["fake"].shape == (2, 8)
    scores = model.score(params, queries, passages)
    np.testing.assert_allclose(scores, np.broadcast_to(-np.asarray(queries["fake"]).sum(-1, keepdims=True), (2, 2)),
                               rtol=1e-6)
    own = model._own_scores(params, queries, {"fake": passages["fake"][:, None]})  # pylint: disable=protected-access
    assert own.shape == (2, 1)
    assert model.flops_per_step(SHAPES) > 0

    # Hugging Face tensors and config keys.
    table = {m.param: m.hf_name for m in hf_mapping.tensor_table(config)}
    assert table["encoder/retriever/scale"] == "encoder.block.1.fake_scale.weight"
    written = hf_config.hf_config_from_spec(config, {"model_type": "t5", "retriever_layer": 1, "retrieval_head": 0})
    assert written["fake_layer"] == 1 and "retriever_layer" not in written and "retrieval_head" not in written

    # The index's arrays.
    spec = index_format.IndexSpec(model={"retrieval_mode": "fake"}, vocabulary_sha256="", passage_max_length=4,
                                  dtype="float32", dim=8, shard_size=2, corpus_root="", corpus_files=[], num_rows=2)
    assert spec.arrays == ("fake_vectors",)


def test_registry_kinds_own_the_pooled_parameter_names():
    assert param_layout.RETRIEVER_PARAMS == retrievers.POOLED.param_paths
    table = {m.param: m.hf_name for m in hf_mapping.tensor_table(BASE)}
    assert table["encoder/retriever/layer_norm/scale"] == "encoder.block.1.layer.0.SelfAttention.layer_norm.weight"
    token_table = hf_mapping.tensor_table(dataclasses.replace(BASE, retrieval_mode="token"))
    assert not any(m.param.startswith("encoder/retriever/") for m in token_table)
