"""The layout the importers check against is exactly the tree the Flax model initialises."""

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest

from class_jax.checkpoints import param_layout
from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig

BASE = ModelConfig(vocab_size=29, emb_dim=8, num_heads=3, head_dim=5, mlp_dim=12, num_encoder_layers=3,
                   num_decoder_layers=2, relative_attention_num_buckets=6, relative_attention_max_distance=10)
SHAPES = {"query_tokens": (1, 3), "passage_tokens": (1, 2, 4), "decoder_input_tokens": (1, 2)}


@pytest.mark.parametrize("changes", [
    {},
    {"retrieval_mode": "token", "retrieval_head": 2},
    {"mlp_activations": ("relu",), "logits_via_embedding": True},
    {"mlp_activations": ("silu", "linear", "gelu"), "retriever_layer": 0},
], ids=["pooled-gated", "token", "relu-tied", "three-branch-mlp"])
def test_expected_shapes_match_model_init(changes):
    config = dataclasses.replace(BASE, **changes)
    model = CLASSModel(config)
    variables = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), SHAPES))
    initialised = {path: tuple(leaf.shape)
                   for path, leaf in param_layout.flatten(nn.unbox(variables["params"])).items()}
    expected = param_layout.expected_shapes(config)
    assert set(initialised) == set(expected)
    assert initialised == expected
    assert param_layout.describe_mismatches(initialised, config, source="init") == []


def test_flatten_unflatten_round_trip():
    tree = {"a": {"b": {"kernel": np.ones((2, 3))}, "scale": np.zeros(2)}, "c": np.arange(3)}
    flat = param_layout.flatten(tree)
    assert set(flat) == {"a/b/kernel", "a/scale", "c"}
    rebuilt = param_layout.unflatten(flat)
    assert jax.tree_util.tree_structure(rebuilt) == jax.tree_util.tree_structure(tree)


def test_describe_mismatches_names_every_problem():
    shapes = dict(param_layout.expected_shapes(BASE))
    del shapes["encoder/layers_1/mlp/wo/kernel"]
    shapes["encoder/layers_9/mlp/wo/kernel"] = (12, 8)
    shapes["decoder/decoder_norm/scale"] = (7,)
    problems = " ".join(param_layout.describe_mismatches(shapes, BASE, source="x"))
    assert "missing 1 parameter(s): encoder/layers_1/mlp/wo/kernel" in problems
    assert "unexpected 1 parameter(s): encoder/layers_9/mlp/wo/kernel" in problems
    assert "decoder/decoder_norm/scale (7,) (expected (8,))" in problems
