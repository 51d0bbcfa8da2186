"""`class-jax export`: the parameters of a training run's checkpoint as a params-only directory (params_io format).

The exported directory is what warm starts (`train.initial_checkpoint`), evaluation, inference, retrieval indexing
and `class-jax convert` (HF export) read. Gin supplies the model (for its ModelConfig, which params_io stores and
checks the shapes against): parse the run's own `config.gin` plus gin/runs/export.gin.
"""

import logging
import pathlib
from typing import Optional

import jax

from class_jax.runtime.errors import UserError
from class_jax.models.base import BaseModel
from class_jax.trainer import param_sources


def export(*,
           model: BaseModel,
           checkpoint_path: str,
           output_dir: str,
           step: Optional[int] = None,
           overwrite: bool = False) -> pathlib.Path:
    """Writes a run's parameters with `params_io.save_params`.

    Args:
      model: the model the run trained (its `config` is stored with the parameters).
      checkpoint_path: the run directory (or its checkpoints/ folder).
      output_dir: the params directory to write.
      step: which step (None: the latest).
      overwrite: replace an existing output directory.

    Returns:
      The written directory.

    Raises:
      UserError: several processes, no such checkpoint, a model without a ModelConfig, or shapes that do not fit it.
    """
    from class_jax.checkpoints import params_io  # pylint: disable=import-outside-toplevel

    if jax.process_count() > 1:
        raise UserError("export is a single-process tool; run it without --coordinator_address")
    config = getattr(model, "config", None)
    if config is None:
        raise UserError(f"{type(model).__name__} has no `config` (ModelConfig) to store with the parameters")
    params, chosen = param_sources.read_run_params_to_host(checkpoint_path, step)
    written = params_io.save_params(pathlib.Path(output_dir), params, config, overwrite=overwrite)
    logging.info("Exported step %d of %s to %s.", chosen, checkpoint_path, written)
    return written
