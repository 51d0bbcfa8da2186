"""Our own checkpoint format: the parameters of one model, written once by a converter and read by the trainer.

A checkpoint is a directory:
    model_config.json   ModelConfig fields as JSON (tuples as lists)
    params/             Orbax checkpoint (StandardCheckpointer) of the nested "params" tree, float32
    spiece.model        the sentencepiece vocabulary, copied from the source when it had one
    import_report.json  what the import did (`import_report.ImportReport`), when it came from an import

Writes go to a temporary sibling directory renamed into place at the end, so a crash never leaves a directory
that looks complete. `save_params` is a single-process tool (the converter); `load_params` may run in every
process of a multi-host job, each restoring its own shards when given a sharded `target`.
"""

import dataclasses
import json
import pathlib
import shutil
from typing import Any, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax.core import meta

from class_jax.checkpoints import atomic_dir, param_layout
from class_jax.checkpoints.import_report import ImportReport
from class_jax.runtime.errors import UserError
from class_jax.models.config import ModelConfig

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"
SPIECE_FILE = "spiece.model"


def config_to_json(config: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> JSON-ready dict (tuples become lists)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(config).items()}


def config_from_json(data: Mapping[str, Any], *, source: str) -> ModelConfig:
    """JSON dict -> validated ModelConfig. Fields absent from the file take their defaults (older checkpoints).

    Raises:
      UserError: unknown fields or an invalid combination.
    """
    fields = {field.name: field for field in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"{source}: unknown ModelConfig field(s) {', '.join(unknown)}")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
    config = ModelConfig(**values)
    try:
        config.validate()
    except ValueError as e:
        raise UserError(f"{source}: {e}") from e
    return config


def is_checkpoint_dir(directory: pathlib.Path) -> bool:
    """Whether `directory` looks like one of our checkpoints."""
    directory = pathlib.Path(directory)
    return (directory / CONFIG_FILE).is_file() and (directory / PARAMS_DIR).is_dir()


def _float32_numpy_tree(params: Mapping[str, Any], config: ModelConfig) -> dict[str, Any]:
    flat = param_layout.flatten(meta.unbox(params))
    problems = param_layout.describe_mismatches({path: np.shape(a) for path, a in flat.items()}, config,
                                                source="parameters to save")
    if problems:
        raise UserError(" | ".join(problems))
    return param_layout.unflatten({path: np.asarray(jax.device_get(a), dtype=np.float32)
                                   for path, a in flat.items()})


def save_params(directory: pathlib.Path, params: Mapping[str, Any], config: ModelConfig, *,
                report: Optional[ImportReport] = None, spiece_model: Optional[pathlib.Path] = None,
                overwrite: bool = False) -> pathlib.Path:
    """Writes a checkpoint directory atomically.

    Args:
      directory: where the checkpoint goes.
      params: the nested "params" tree (numpy or jax arrays; flax partitioning boxes are unwrapped); stored as
        float32.
      config: the model's hyper-parameters.
      report: the import report to store alongside, if the parameters come from an import.
      spiece_model: a sentencepiece model file to copy in.
      overwrite: replace an existing directory instead of failing.

    Returns:
      The absolute checkpoint directory.

    Raises:
      UserError: the directory exists (without overwrite), or params do not match config.
    """
    tree = _float32_numpy_tree(params, config)
    directory = pathlib.Path(directory).absolute()
    with atomic_dir.staged_directory(directory, overwrite) as staging:
        (staging / CONFIG_FILE).write_text(json.dumps(config_to_json(config), indent=2) + "\n")
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(staging / PARAMS_DIR, tree)
            checkpointer.wait_until_finished()
        if spiece_model is not None:
            shutil.copyfile(spiece_model, staging / SPIECE_FILE)
        if report is not None:
            report.write(staging)
    return directory


def load_config(directory: pathlib.Path) -> ModelConfig:
    """The ModelConfig of a checkpoint directory.

    Raises:
      UserError: not one of our checkpoints.
    """
    directory = pathlib.Path(directory)
    if not is_checkpoint_dir(directory):
        raise UserError(f"{directory}: not a class_jax checkpoint (needs {CONFIG_FILE} and {PARAMS_DIR}/)")
    path = directory / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON: {e}") from e
    return config_from_json(data, source=str(path))


def load_params(directory: pathlib.Path, target: Optional[Any] = None) -> tuple[dict[str, Any], ModelConfig]:
    """Reads a checkpoint directory.

    Args:
      directory: a directory written by `save_params`.
      target: optional abstract tree (`jax.ShapeDtypeStruct`s with shardings, nested like the params) to restore
        straight into sharded device arrays, e.g. the trainer's `jax.eval_shape` of its init; None restores
        host numpy arrays.

    Returns:
      (nested params tree, config).

    Raises:
      UserError: not a checkpoint, the stored parameters do not match the stored config, or `target` describes
        a different model.
    """
    directory = pathlib.Path(directory).absolute()
    config = load_config(directory)
    if target is not None:
        target = meta.unbox(target)
        # Orbax's own mismatch errors are tracebacks deep in tensorstore; name the differing parameters instead.
        problems = param_layout.describe_mismatches(
            {path: tuple(leaf.shape) for path, leaf in param_layout.flatten(target).items()}, config,
            source=f"the model to restore into (vs. {directory / CONFIG_FILE})")
        if problems:
            raise UserError(" | ".join(problems))
    with ocp.StandardCheckpointer() as checkpointer:
        if target is None:
            params = checkpointer.restore(directory / PARAMS_DIR)
        else:
            params = checkpointer.restore(directory / PARAMS_DIR, target)
    problems = param_layout.describe_mismatches(
        {path: np.shape(a) for path, a in param_layout.flatten(params).items()}, config, source=str(directory))
    if problems:
        raise UserError(" | ".join(problems))
    return params, config
