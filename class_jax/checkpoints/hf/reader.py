"""Importing a Hugging Face T5 / mT5 / ReAtt / released-CLASS checkpoint directory.

A directory holds `config.json` and the weights in one of: `model.safetensors`, sharded safetensors with
`model.safetensors.index.json`, `pytorch_model.bin`, or sharded `.bin` with `pytorch_model.bin.index.json`
(safetensors preferred when several are present). `.bin` files are read by `tensor_files.read_torch_zip`,
which refuses anything but tensors.
"""

import json
import pathlib
from typing import Any, Mapping, Optional

import numpy as np

from class_jax.checkpoints.hf import config as hf_config, mapping, tensor_files
from class_jax.checkpoints import import_report
from class_jax.checkpoints.import_report import ImportedCheckpoint, ImportReport
from class_jax.runtime.errors import UserError

CONFIG_FILE = "config.json"
SPIECE_FILE = "spiece.model"
# (file, reader of it or of the shards it indexes), in order of preference.
_WEIGHT_FILES = (
    ("model.safetensors", tensor_files.read_safetensors),
    ("model.safetensors.index.json", tensor_files.read_safetensors),
    ("pytorch_model.bin", tensor_files.read_torch_zip),
    ("pytorch_model.bin.index.json", tensor_files.read_torch_zip),
)


def read_hf_config(directory: pathlib.Path) -> dict[str, Any]:
    """The parsed config.json of an HF checkpoint directory.

    Raises:
      UserError: the directory or its config.json is missing or not JSON.
    """
    path = pathlib.Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{directory}: no {CONFIG_FILE} (not a Hugging Face checkpoint directory)")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON: {e}") from e


def _read_sharded(directory: pathlib.Path, index_name: str, reader: Any) -> dict[str, np.ndarray]:
    index_path = directory / index_name
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (ValueError, KeyError) as e:
        raise UserError(f"{index_path}: not a shard index with a weight_map: {e}") from e
    tensors: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = directory / shard
        if not shard_path.is_file():
            raise UserError(f"{index_path}: shard {shard} is missing")
        tensors.update(reader(shard_path))
    absent = sorted(name for name in weight_map if name not in tensors)
    if absent:
        raise UserError(f"{index_path}: tensors listed in the index but absent from their shards: "
                        f"{', '.join(absent)}")
    return tensors


def read_hf_tensors(directory: pathlib.Path) -> tuple[dict[str, np.ndarray], str]:
    """Every tensor of an HF checkpoint directory.

    Args:
      directory: the checkpoint directory.

    Returns:
      (name -> array, the file it was read from, for the report).

    Raises:
      UserError: no weights file, or an unreadable one.
    """
    directory = pathlib.Path(directory)
    for name, reader in _WEIGHT_FILES:
        if (directory / name).is_file():
            if name.endswith(".index.json"):
                return _read_sharded(directory, name, reader), name
            return reader(directory / name), name
    looked_for = ", ".join(name for name, _ in _WEIGHT_FILES)
    raise UserError(f"{directory}: no weights found (looked for {looked_for})")


def load_hf_checkpoint(directory: pathlib.Path, *, overrides: Optional[Mapping[str, Any]] = None,
                       seed: int = 0) -> ImportedCheckpoint:
    """Imports an HF T5 / mT5 / ReAtt / CLASS checkpoint directory.

    Args:
      directory: the checkpoint directory.
      overrides: ModelConfig fields to set on top of what config.json says (e.g. {"retrieval_mode": "token"}).
      seed: seed for parameters the source lacks (the pooled retriever), see
        `import_report.add_new_parameters`.

    Returns:
      The imported parameters, config and report.

    Raises:
      UserError: unsupported config, or tensors missing / unexpected / mis-shaped for it.
    """
    directory = pathlib.Path(directory)
    hf = read_hf_config(directory)
    tensors, weights_file = read_hf_tensors(directory)
    spec = hf_config.spec_from_hf_config(
        hf, source=str(directory), retriever_block_in_tensors=mapping.find_retriever_block(list(tensors)),
        overrides=overrides)
    report = ImportReport(source=str(directory), source_format="hf", source_hf_config=hf)
    report.notes.append(f"read {weights_file}; {spec.flavour} checkpoint "
                        f"(retrieval_mode={spec.config.retrieval_mode}, retriever_layer="
                        f"{spec.config.retriever_layer_index})")
    report.notes.extend(spec.notes)
    flat = mapping.hf_to_params(tensors, spec.config, report, source=str(directory),
                                   lm_head_from_shared=spec.lm_head_from_shared)
    import_report.add_new_parameters(flat, spec.config, report, seed=seed)
    spiece = directory / SPIECE_FILE
    return ImportedCheckpoint(params=flat, config=spec.config, report=report,
                              spiece_model=spiece if spiece.is_file() else None)
