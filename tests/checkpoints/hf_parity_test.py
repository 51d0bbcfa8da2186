"""Imported HF models compute what transformers computes: encoder output, logits, loss, greedy answers."""

import numpy as np
import pytest
import torch

import checkpoint_fixtures as fx
from class_jax.checkpoints.hf import reader, verify
from class_jax.checkpoints import param_layout

# Each architecture once (a JAX compile each); every file format is also checked against the others below.
PARITY_CASES = [
    pytest.param(fx.MT5_GATED, "safetensors", id="mt5-gated-gelu-3heads-safetensors"),
    pytest.param(fx.T5_V10_RELU_TIED, "bin", id="t5v1.0-relu-tied-5heads-bin"),
    pytest.param(fx.T5_GATED_SILU_ONE_HEAD, "sharded", id="t5-gated-silu-1head-sharded-safetensors"),
    pytest.param(fx.MT5_GATED, "sharded_bin", id="mt5-gated-gelu-sharded-bin", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("spec, weights", PARITY_CASES)
def test_imported_model_matches_transformers(tmp_path, spec, weights):
    model = fx.build_hf_model(spec)
    fx.save_hf(model, tmp_path / "hf", weights)
    imported = reader.load_hf_checkpoint(tmp_path / "hf")
    assert imported.config.num_heads == spec["num_heads"]
    assert imported.config.logits_via_embedding == (spec["kind"] == "t5" and spec["tie_word_embeddings"])
    params = param_layout.unflatten(imported.params)

    # Long enough inputs to reach the log-spaced relative-position buckets (max_distance <= 24).
    batch = verify.random_batch(spec["vocab_size"], batch_size=3, input_length=40, target_length=30, seed=3)
    ours = verify.jax_outputs(params, imported.config, batch)
    theirs = verify.hf_outputs(tmp_path / "hf", batch)
    valid = batch["input_ids"] > 0
    encoder_diff = np.max(np.abs(ours["encoder"] - theirs["encoder"])[valid])
    logits_diff = np.max(np.abs(ours["logits"] - theirs["logits"]))
    loss_diff = abs(float(ours["loss"]) - float(theirs["loss"]))
    print(f"{spec['kind']} {weights}: encoder {encoder_diff:.2e} logits {logits_diff:.2e} loss {loss_diff:.2e}")
    assert encoder_diff < 1e-4 and logits_diff < 1e-4 and loss_diff < 1e-4
    # The comparison is not vacuous: outputs vary and are of order one.
    assert np.std(ours["logits"]) > 0.1

    max_length = 8
    input_ids = batch["input_ids"]
    with torch.no_grad():
        expected = model.generate(torch.from_numpy(input_ids), attention_mask=torch.from_numpy(input_ids > 0).long(),
                                  do_sample=False, num_beams=1, max_new_tokens=max_length, min_new_tokens=0,
                                  decoder_start_token_id=0, eos_token_id=1, pad_token_id=0,
                                  # transformers' cache assumes num_decoder_layers <= num_layers.
                                  use_cache=False).numpy()[:, 1:]
    got = verify.greedy_decode(params, imported.config, input_ids, max_length)
    padded = np.zeros_like(got)
    padded[:, :expected.shape[1]] = expected
    np.testing.assert_array_equal(got, padded)


def test_every_weights_format_imports_the_same_parameters(tmp_path):
    model = fx.build_hf_model(fx.MT5_GATED)
    imported = {}
    for weights in ("safetensors", "sharded", "bin", "sharded_bin"):
        fx.save_hf(model, tmp_path / weights, weights)
        imported[weights] = reader.load_hf_checkpoint(tmp_path / weights)
    reference = imported["safetensors"]
    state = {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}
    # Spot-check values against the torch model itself (kernels are transposed).
    np.testing.assert_array_equal(reference.params["encoder/layers_1/attention/query/kernel"],
                                  state["encoder.block.1.layer.0.SelfAttention.q.weight"].T)
    np.testing.assert_array_equal(reference.params["decoder/relpos_bias/rel_embedding"],
                                  state["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].T)
    for weights, other in imported.items():
        assert other.config == reference.config, weights
        assert set(other.params) == set(reference.params), weights
        for path, array in reference.params.items():
            np.testing.assert_array_equal(other.params[path], array, err_msg=f"{weights}: {path}")
