"""Broken or unsupported checkpoints fail with a UserError naming what is wrong, and never run pickled code."""

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

import checkpoint_fixtures as fx
from class_jax.checkpoints.hf import reader, tensor_files
from class_jax.runtime.errors import UserError


@pytest.fixture(name="hf_dir")
def fixture_hf_dir(tmp_path):
    directory = tmp_path / "hf"
    fx.save_hf(fx.build_hf_model(fx.T5_GATED_SILU_ONE_HEAD), directory)
    return directory


def test_missing_tensor_is_named(hf_dir):
    tensors = fx.read_tensors(hf_dir)
    del tensors["decoder.block.0.layer.1.EncDecAttention.v.weight"]
    del tensors["encoder.final_layer_norm.weight"]
    fx.write_tensors(hf_dir, tensors)
    with pytest.raises(UserError, match=r"missing 2 tensor\(s\): encoder.final_layer_norm.weight, "
                                        r"decoder.block.0.layer.1.EncDecAttention.v.weight"):
        reader.load_hf_checkpoint(hf_dir)


def test_extra_tensor_is_named(hf_dir):
    tensors = fx.read_tensors(hf_dir)
    tensors["encoder.block.1.layer.0.SelfAttention.q.weight"] = torch.zeros(7, 10)  # a layer the config lacks
    fx.write_tensors(hf_dir, tensors)
    with pytest.raises(UserError, match=r"unexpected 1 tensor\(s\): encoder.block.1.layer.0.SelfAttention.q.weight"):
        reader.load_hf_checkpoint(hf_dir)


def test_misshaped_tensor_is_named_with_both_shapes(hf_dir):
    tensors = fx.read_tensors(hf_dir)
    tensors["encoder.block.0.layer.1.DenseReluDense.wo.weight"] = torch.zeros(10, 15)
    fx.write_tensors(hf_dir, tensors)
    with pytest.raises(UserError, match=r"encoder.block.0.layer.1.DenseReluDense.wo.weight \(10, 15\) "
                                        r"\(expected \(10, 14\)\)"):
        reader.load_hf_checkpoint(hf_dir)


def test_untied_copy_of_the_embedding_is_refused(hf_dir):
    tensors = fx.read_tensors(hf_dir)
    tensors["decoder.embed_tokens.weight"] = tensors["shared.weight"] + 1
    fx.write_tensors(hf_dir, tensors)
    with pytest.raises(UserError, match="decoder.embed_tokens.weight differs from shared.weight"):
        reader.load_hf_checkpoint(hf_dir)


@pytest.mark.parametrize("changes, message", [
    ({"feed_forward_proj": "gated-gelu_10"}, "feed_forward_proj='gated-gelu_10' is not supported"),
    ({"feed_forward_proj": "fancy-relu"}, "is not of the form"),
    ({"model_type": "umt5"}, "model_type='umt5' is not supported"),
    ({"d_kv": None}, "config.json lacks d_kv"),
    ({"retrieval_layer": 0}, "retrieval_layer but no retrieval_head"),
])
def test_unsupported_config_says_so(hf_dir, changes, message):
    fx.edit_config(hf_dir, **changes)
    with pytest.raises(UserError, match=message):
        reader.load_hf_checkpoint(hf_dir)


def test_directory_without_config_or_weights(tmp_path, hf_dir):
    with pytest.raises(UserError, match="no config.json"):
        reader.load_hf_checkpoint(tmp_path)
    (hf_dir / "model.safetensors").unlink()
    with pytest.raises(UserError, match="no weights found"):
        reader.load_hf_checkpoint(hf_dir)


class _Payload:
    """Pickles as a call to os.mkdir: unpickling it with plain pickle would create `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_bin_with_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload_ran"
    payload = tmp_path / "pytorch_model.bin"
    torch.save({"shared.weight": torch.zeros(3, 2), "evil": _Payload(marker)}, payload)
    with pytest.raises(UserError, match="refusing to unpickle posix.mkdir"):
        tensor_files.read_torch_zip(payload)
    assert not marker.exists()
    # Plain pickle would have run it: the test's payload is real.
    with zipfile.ZipFile(payload) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"mkdir" in data


def test_bin_with_a_non_tensor_value_is_refused(tmp_path):
    torch.save({"shared.weight": torch.zeros(3, 2), "step": 7}, tmp_path / "model.bin")
    with pytest.raises(UserError, match="entry 'step' is a int, not a tensor"):
        tensor_files.read_torch_zip(tmp_path / "model.bin")


def test_legacy_non_zip_bin_is_refused(tmp_path):
    (tmp_path / "old.bin").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    with pytest.raises(UserError, match="not a zip-format torch checkpoint"):
        tensor_files.read_torch_zip(tmp_path / "old.bin")


def test_hf_dir_with_a_malicious_bin_fails_through_the_importer(hf_dir, tmp_path):
    (hf_dir / "model.safetensors").unlink()
    torch.save({"shared.weight": torch.zeros(3, 2), "x": _Payload(tmp_path / "ran")}, hf_dir / "pytorch_model.bin")
    with pytest.raises(UserError, match="refusing to unpickle"):
        reader.load_hf_checkpoint(hf_dir)
    assert not (tmp_path / "ran").exists()


def test_truncated_safetensors_is_refused(tmp_path, hf_dir):
    data = (hf_dir / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="inconsistent data offsets"):
        tensor_files.read_safetensors(tmp_path / "cut.safetensors")
    np.testing.assert_array_equal(tensor_files.read_safetensors(hf_dir / "model.safetensors")["shared.weight"],
                                  fx.read_tensors(hf_dir)["shared.weight"].numpy())


def test_empty_safetensors_is_refused(tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="not a safetensors file"):
        tensor_files.read_safetensors(tmp_path / "empty.safetensors")
