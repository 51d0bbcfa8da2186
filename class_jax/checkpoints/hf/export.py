"""Exporting our parameters as a Hugging Face checkpoint directory (config.json + model.safetensors).

The result loads in transformers as `T5ForConditionalGeneration` / `MT5ForConditionalGeneration` (the CLASS /
ReAtt extras are config keys and, in pooled mode, three more tensors in encoder block B, as in the released
CLASS models), and re-imports through `hf_io` to the same parameters bit for bit.
"""

import json
import pathlib
import shutil
from typing import Any, Mapping, Optional

import jax
import numpy as np
from flax.core import meta
from safetensors.numpy import save_file

from class_jax.checkpoints import atomic_dir, param_layout
from class_jax.checkpoints.hf import config as hf_config, mapping
from class_jax.models.config import ModelConfig

WEIGHTS_FILE = "model.safetensors"


def export_hf(directory: pathlib.Path, params: Mapping[str, Any], config: ModelConfig, *,
              source_hf_config: Optional[Mapping[str, Any]] = None, spiece_model: Optional[pathlib.Path] = None,
              overwrite: bool = False) -> pathlib.Path:
    """Writes an HF checkpoint directory atomically (temporary sibling, then rename).

    Args:
      directory: the output directory.
      params: the nested "params" tree (numpy or jax arrays; partitioning boxes are unwrapped).
      config: the model's hyper-parameters.
      source_hf_config: the config.json the model was imported from, if any; its extra keys (token ids,
        n_passages, distillation_tau, model_type, ...) are kept.
      spiece_model: a sentencepiece model to copy in as spiece.model.
      overwrite: replace an existing directory instead of failing.

    Returns:
      The absolute output directory.

    Raises:
      UserError: the directory exists (without overwrite), the parameters do not match the config, or the
        config has no HF equivalent.
    """
    flat = {path: np.asarray(jax.device_get(array), dtype=np.float32)
            for path, array in param_layout.flatten(meta.unbox(params)).items()}
    tensors = mapping.params_to_hf(flat, config)
    hf = hf_config.hf_config_from_spec(config, source_hf_config)
    directory = pathlib.Path(directory).absolute()
    with atomic_dir.staged_directory(directory, overwrite) as staging:
        (staging / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
        # transformers refuses safetensors files without format metadata.
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        if spiece_model is not None:
            shutil.copyfile(spiece_model, staging / "spiece.model")
    return directory
