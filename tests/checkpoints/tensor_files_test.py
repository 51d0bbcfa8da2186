"""The torch-free readers return what torch stored: dtypes (bfloat16 too), views, transposes, shared storage."""

import ml_dtypes
import numpy as np
import torch
from safetensors.torch import save_file

from class_jax.checkpoints.hf import tensor_files


def _reference_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(5, 6, generator=generator)
    return {
        "float32": base,
        "bfloat16": torch.randn(4, 3, generator=generator).to(torch.bfloat16),
        "float16": torch.randn(7, generator=generator).half(),
        "int64": torch.arange(6).reshape(2, 3),
        "view_of_float32": base[1:4, ::2],  # shares base's storage with an offset and strides
        "transposed": base.t(),
        "scalar": torch.tensor(2.5),
        "parameter": torch.nn.Parameter(torch.randn(3, generator=generator)),
    }


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy().astype(ml_dtypes.bfloat16)
    return tensor.numpy()


def test_torch_zip_reader_matches_torch(tmp_path):
    tensors = _reference_tensors()
    torch.save(tensors, tmp_path / "state.bin")
    read = tensor_files.read_torch_zip(tmp_path / "state.bin")
    assert set(read) == set(tensors)
    for name, tensor in tensors.items():
        expected = _as_numpy(tensor)
        assert read[name].dtype == expected.dtype and read[name].shape == expected.shape, name
        np.testing.assert_array_equal(read[name], expected, err_msg=name)
    # Values are copies: writing one does not change another that shared its torch storage.
    read["view_of_float32"][0, 0] = 1e6
    assert read["float32"][1, 0] != 1e6


def test_safetensors_reader_matches_torch(tmp_path):
    tensors = {name: t.detach().contiguous() for name, t in _reference_tensors().items()}
    save_file(tensors, tmp_path / "state.safetensors")
    read = tensor_files.read_safetensors(tmp_path / "state.safetensors")
    assert set(read) == set(tensors)
    for name, tensor in tensors.items():
        expected = _as_numpy(tensor)
        assert read[name].dtype == expected.dtype and read[name].shape == expected.shape, name
        np.testing.assert_array_equal(read[name], expected, err_msg=name)
