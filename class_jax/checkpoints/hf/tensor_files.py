"""Reading tensor files without torch: safetensors, and torch's zip `.bin` through a refusing unpickler.

`pytorch_model.bin` is a pickle; unpickling an untrusted one with the standard `pickle` module can run any code.
`read_torch_zip` instead resolves only the handful of globals a plain state dict needs (tensor rebuild functions,
typed storages, OrderedDict) and refuses every other global, so a crafted file fails with a UserError instead
of executing. Neither reader needs torch (TPU VMs rarely have it); both return numpy arrays, bfloat16 as
`ml_dtypes.bfloat16`.
"""

import collections
import json
import pathlib
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from class_jax.runtime.errors import UserError

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_TORCH_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Reads every tensor of a .safetensors file.

    The format is an 8-byte little-endian header size, a JSON header {name: {dtype, shape, data_offsets}} and
    the raw little-endian data; it is parsed here because the safetensors package's numpy loader cannot return
    bfloat16.

    Args:
      path: the file.

    Returns:
      name -> array (copied out of the file, so it may be replaced afterwards).

    Raises:
      UserError: a truncated or malformed file, or an unsupported dtype.
    """
    if pathlib.Path(path).stat().st_size < 8:
        raise UserError(f"{path}: not a safetensors file (shorter than its 8-byte header size)")
    # Memory-mapped, so a multi-GB file is paged in tensor by tensor rather than held twice.
    data = np.memmap(path, dtype=np.uint8, mode="r")
    (header_size,) = struct.unpack("<Q", data[:8].tobytes())
    if 8 + header_size > len(data):
        raise UserError(f"{path}: truncated safetensors file (header of {header_size} bytes)")
    try:
        header = json.loads(data[8:8 + header_size].tobytes())
    except ValueError as e:
        raise UserError(f"{path}: malformed safetensors header: {e}") from e
    body = data[8 + header_size:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise UserError(f"{path}: tensor {name} has unsupported dtype {info.get('dtype')!r}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if end > len(body) or end - begin != count * np.dtype(dtype).itemsize:
            raise UserError(f"{path}: tensor {name} {shape} {info['dtype']} has inconsistent data offsets")
        tensors[name] = np.array(body[begin:end].view(np.dtype(dtype).newbyteorder("<")).reshape(shape),
                                 dtype=dtype)
    return tensors


class _StorageType:
    """Stands for a `torch.<X>Storage` class during unpickling: only its element dtype matters."""

    def __init__(self, dtype: np.dtype):
        self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage: np.ndarray, storage_offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    requires_grad: bool = False, backward_hooks: Any = None, metadata: Any = None) -> np.ndarray:
    """numpy stand-in for `torch._utils._rebuild_tensor_v2`.

    A tensor spanning its whole storage (the usual case in a state dict) is returned as a read-only array over
    the storage's bytes, without a copy; views and strided tensors are copied out, so no two returned arrays
    share memory.
    """
    del requires_grad, backward_hooks, metadata
    itemsize = storage.dtype.itemsize
    if 0 in size:
        return np.zeros(tuple(size), storage.dtype)
    # as_strided does no bounds checking: make sure the last element lies inside the storage.
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if storage_offset < 0 or min(stride, default=0) < 0 or last >= storage.size:
        raise UserError(f"tensor of size {tuple(size)} runs past the end of its storage")
    contiguous_strides = tuple(int(np.prod(size[i + 1:], dtype=np.int64)) for i in range(len(size)))
    if storage_offset == 0 and tuple(stride) == contiguous_strides and last == storage.size - 1:
        return storage.reshape(tuple(size))
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view)


def _rebuild_parameter(data: np.ndarray, requires_grad: bool = False, backward_hooks: Any = None) -> np.ndarray:
    """`torch._utils._rebuild_parameter`: an nn.Parameter is just its data here."""
    del requires_grad, backward_hooks
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles torch's data.pkl resolving only the globals a state dict of tensors needs."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, byteorder: str, path: pathlib.Path):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._byteorder = "<" if byteorder == "little" else ">"
        self._path = path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _StorageType(_TORCH_STORAGE_DTYPES[name])
        raise UserError(f"{self._path}: refusing to unpickle {module}.{name}: a checkpoint .bin may only hold "
                        "tensors in a dict (convert it to safetensors if it is trusted)")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UserError(f"{self._path}: unsupported persistent object {pid!r} in data.pkl")
        _, storage_type, key, _, numel = pid
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError as e:
                raise UserError(f"{self._path}: storage {key} referenced by data.pkl is missing") from e
            dtype = storage_type.dtype.newbyteorder(self._byteorder)
            if len(raw) < numel * dtype.itemsize:
                raise UserError(f"{self._path}: storage {key} is truncated")
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        return self._storages[key]


def read_torch_zip(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Reads a state dict saved by `torch.save` (zip format, torch >= 1.6) without torch and without running code.

    Args:
      path: the .bin file.

    Returns:
      name -> array (native byte order; possibly read-only).

    Raises:
      UserError: not a zip archive (legacy torch format), a forbidden global, or a value that is not a tensor.
    """
    path = pathlib.Path(path)
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a zip-format torch checkpoint (the legacy pre-1.6 format is not read; "
                        "re-save it with a recent torch or convert it to safetensors)")
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise UserError(f"{path}: expected exactly one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][:-len("data.pkl")]
        names = set(archive.namelist())
        byteorder = archive.read(f"{prefix}byteorder").decode().strip() if f"{prefix}byteorder" in names else "little"
        with archive.open(pickles[0]) as data_pkl:
            try:
                state = _StateDictUnpickler(data_pkl, archive, prefix, byteorder, path).load()
            except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as e:
                raise UserError(f"{path}: cannot read data.pkl: {e}") from e
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    tensors = {}
    for name, value in state.items():
        if not isinstance(value, np.ndarray):
            raise UserError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor; a checkpoint .bin "
                            "must hold only tensors")
        tensors[str(name)] = value.astype(value.dtype.newbyteorder("="), copy=False)
    return tensors
