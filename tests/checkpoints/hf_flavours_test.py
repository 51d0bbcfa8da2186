"""Released-CLASS and ReAtt checkpoints import into pooled / token retrieval; plain ones get a reported retriever."""

import numpy as np
import pytest

import checkpoint_fixtures as fx
from class_jax.checkpoints.hf import reader
from class_jax.checkpoints import param_layout
from class_jax.runtime.errors import UserError


@pytest.fixture(name="hf_dir")
def fixture_hf_dir(tmp_path):
    directory = tmp_path / "hf"
    fx.save_hf(fx.build_hf_model(fx.MT5_GATED), directory)
    return directory


def test_class_checkpoint_imports_pooled_retriever(hf_dir):
    state = fx.read_tensors(hf_dir)
    extras = fx.make_class_checkpoint(hf_dir, block=1, n_passages=7)
    imported = reader.load_hf_checkpoint(hf_dir)
    assert imported.config.retrieval_mode == "pooled" and imported.config.retriever_layer == 1
    assert imported.report.initialised == []
    prefix = "encoder.block.1.layer.0"
    np.testing.assert_array_equal(imported.params["encoder/retriever/query_proj/kernel"],
                                  extras[f"{prefix}.SelfAttention.query_proj.weight"].T)
    np.testing.assert_array_equal(imported.params["encoder/retriever/passage_proj/kernel"],
                                  extras[f"{prefix}.SelfAttention.passage_proj.weight"].T)
    # The retriever's shared norm and block B's own pre-attention norm are different tensors.
    np.testing.assert_array_equal(imported.params["encoder/retriever/layer_norm/scale"],
                                  extras[f"{prefix}.SelfAttention.layer_norm.weight"])
    np.testing.assert_array_equal(imported.params["encoder/layers_1/pre_attention_layer_norm/scale"],
                                  state[f"{prefix}.layer_norm.weight"].numpy())
    assert imported.report.source_hf_config["n_passages"] == 7


def test_class_retriever_layer_found_from_tensors_when_config_lacks_it(hf_dir):
    fx.make_class_checkpoint(hf_dir, block=0, write_layer_key=False)
    imported = reader.load_hf_checkpoint(hf_dir)
    assert imported.config.retriever_layer == 0
    assert any("taken from the tensors' block (0)" in note for note in imported.report.notes)


def test_class_config_and_tensors_disagreeing_on_the_layer_is_refused(hf_dir):
    fx.make_class_checkpoint(hf_dir, block=1)
    fx.edit_config(hf_dir, retriever_layer=0)
    with pytest.raises(UserError, match="retriever_layer=0 but the retriever tensors are in encoder block 1"):
        reader.load_hf_checkpoint(hf_dir)


def test_reatt_checkpoint_imports_token_mode(hf_dir):
    fx.make_reatt_checkpoint(hf_dir, layer=1, head=2)
    imported = reader.load_hf_checkpoint(hf_dir)
    config = imported.config
    assert (config.retrieval_mode, config.retriever_layer, config.retrieval_head) == ("token", 1, 2)
    assert not set(param_layout.RETRIEVER_PARAMS) & set(imported.params)
    assert imported.report.initialised == []
    assert set(imported.params) == set(param_layout.expected_shapes(config))


def test_reatt_head_outside_the_model_is_refused(hf_dir):
    fx.make_reatt_checkpoint(hf_dir, layer=1, head=3)  # the model has 3 heads
    with pytest.raises(UserError, match="retrieval_head=3 outside"):
        reader.load_hf_checkpoint(hf_dir)


def test_plain_checkpoint_gets_a_reported_retriever(hf_dir):
    imported = reader.load_hf_checkpoint(hf_dir, seed=5)
    config = imported.config
    assert config.retrieval_mode == "pooled" and config.retriever_layer_index == config.num_encoder_layers // 2
    created = {entry["param"]: entry for entry in imported.report.initialised}
    assert set(created) == set(param_layout.RETRIEVER_PARAMS)
    assert created["encoder/retriever/layer_norm/scale"]["init"] == "ones"
    np.testing.assert_array_equal(imported.params["encoder/retriever/layer_norm/scale"], 1.0)
    kernel = imported.params["encoder/retriever/query_proj/kernel"]
    assert kernel.shape == (16, 15) and "std=emb_dim**-0.5" in created["encoder/retriever/query_proj/kernel"]["init"]
    assert abs(float(np.std(kernel)) - 16 ** -0.5) < 0.05
    # Reproducible from the recorded seed, different across seeds.
    again = reader.load_hf_checkpoint(hf_dir, seed=5).params["encoder/retriever/query_proj/kernel"]
    other = reader.load_hf_checkpoint(hf_dir, seed=6).params["encoder/retriever/query_proj/kernel"]
    np.testing.assert_array_equal(again, kernel)
    assert not np.array_equal(other, kernel)


def test_overrides_switch_a_plain_checkpoint_to_token_mode(hf_dir):
    imported = reader.load_hf_checkpoint(hf_dir, overrides={"retrieval_mode": "token", "retriever_layer": 1,
                                                           "dropout_rate": 0.0})
    assert imported.config.retrieval_mode == "token" and imported.config.dropout_rate == 0.0
    assert imported.report.initialised == []
