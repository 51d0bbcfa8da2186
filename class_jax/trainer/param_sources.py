"""Parameters from elsewhere: warm starts (name mapping, fresh init for the rest) and inference restores.

Sources:
  * a params-only directory written by `class_jax.checkpoints.params_io.save_params` (imports of mT5 / ReAtt /
    released CLASS weights, `class-jax export` of a previous stage);
  * another run's model_dir (or its checkpoints/ folder): the parameters of its latest step.

Mapping (T5X's assignment map): `name_mapping` is a list of (target regex, source template or None). For each
parameter of the model being trained, the first rule whose regex fully matches its '/'-joined path gives the
source path (`re.sub` template, so groups work) or, for None, keeps the fresh initialisation; without a matching
rule the source path is the target path. Targets whose source is absent keep their fresh initialisation. Every
decision is reported (log + `<model_dir>/initial_checkpoint_report.json`); a shape mismatch is an error.
"""

import dataclasses
import logging
import pathlib
import re
from typing import Any, Optional, Sequence

import jax
import numpy as np

from class_jax.runtime.errors import UserError
from class_jax.runtime import tree_paths
from class_jax.trainer.checkpointer import CHECKPOINT_SUBDIR, PARAMS_ITEM, TrainCheckpointer, find_step_to_restore

PyTree = Any
NameMapping = Sequence[tuple[str, Optional[str]]]


@dataclasses.dataclass
class InitialCheckpointReport:
    """What a warm start did.

    Attributes:
      source: the directory read.
      loaded: target path -> source path, for parameters taken from the checkpoint.
      fresh: target path -> why it kept its fresh initialisation (mapped to None, or absent from the source).
      unused: source paths nothing was loaded from.
      config_differences: field -> (checkpoint value, model value) of ModelConfig fields that differ.
    """

    source: str
    loaded: dict[str, str] = dataclasses.field(default_factory=dict)
    fresh: dict[str, str] = dataclasses.field(default_factory=dict)
    unused: list[str] = dataclasses.field(default_factory=list)
    config_differences: dict[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as written to initial_checkpoint_report.json."""
        return {**dataclasses.asdict(self), "config_differences": {k: list(v) for k, v in
                                                                   self.config_differences.items()}}

    def log(self) -> None:
        """Logs a summary, a warning per freshly initialised parameter and per differing config field."""
        logging.info("Initial checkpoint %s: %d parameters loaded, %d freshly initialised, %d unused.",
                     self.source, len(self.loaded), len(self.fresh), len(self.unused))
        for path, reason in self.fresh.items():
            logging.warning("Initial checkpoint: %s keeps its fresh initialisation (%s).", path, reason)
        for path in self.unused:
            logging.info("Initial checkpoint: %s is not used by the model.", path)
        for field, (theirs, ours) in self.config_differences.items():
            logging.warning("Initial checkpoint: ModelConfig.%s is %r there, %r here.", field, theirs, ours)


def resolve_source_paths(target_paths: Sequence[str], name_mapping: NameMapping) -> dict[str, Optional[str]]:
    """Target path -> source path (None: keep fresh), following the rules described in the module docstring."""
    rules = [(re.compile(pattern), template) for pattern, template in name_mapping]
    resolved = {}
    for target in target_paths:
        resolved[target] = target
        for pattern, template in rules:
            if pattern.fullmatch(target):
                resolved[target] = None if template is None else pattern.sub(template, target)
                break
    return resolved


def _read_source(path: pathlib.Path) -> tuple[dict[str, np.ndarray], Any]:
    """Host arrays of the source's parameters ('/'-joined paths) and its ModelConfig (None for training runs)."""
    from class_jax.checkpoints import params_io  # pylint: disable=import-outside-toplevel

    if params_io.is_checkpoint_dir(path):
        params, config = params_io.load_params(path)
        return tree_paths.flatten_with_paths(params), config
    params, _ = read_run_params_to_host(path, None)
    return tree_paths.flatten_with_paths(params), None


def _run_dir(path: pathlib.Path, purpose: str) -> pathlib.Path:
    model_dir = path.parent if path.name == CHECKPOINT_SUBDIR else path
    if not (model_dir / CHECKPOINT_SUBDIR).is_dir():
        raise UserError(f"{purpose} {path}: neither a params directory (params_io) nor a run directory with "
                        f"{CHECKPOINT_SUBDIR}/")
    return model_dir


def read_run_params_to_host(path: str | pathlib.Path, step: Optional[int]) -> tuple[dict[str, Any], int]:
    """A run's parameters (its latest step, or `step`) as host numpy arrays, without building the model.

    The parameter tree comes from the checkpoint's own metadata; arrays are restored onto the host CPU device,
    whatever accelerator the run used (single-process use: export, warm starts).

    Returns:
      (nested params of numpy arrays, the step read).

    Raises:
      UserError: not a run directory, or no such step.
    """
    model_dir = _run_dir(pathlib.Path(path).absolute(), "checkpoint")
    checkpointer = TrainCheckpointer(model_dir, read_only=True)
    try:
        try:
            chosen = find_step_to_restore(checkpointer, step)
        except FileNotFoundError as e:
            raise UserError(str(e)) from e
        metadata = checkpointer.manager.item_metadata(chosen)[PARAMS_ITEM]
        host = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
        abstract = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=host),
                                          metadata, is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
        params = checkpointer.restore_params(chosen, abstract)
    finally:
        checkpointer.close()
    return jax.tree_util.tree_map(np.asarray, params), chosen


def load_initial_params(path: str | pathlib.Path, fresh_params: PyTree, param_shardings: PyTree,
                        name_mapping: NameMapping = (), model_config: Any = None) -> tuple[PyTree, InitialCheckpointReport]:
    """Builds the starting parameters from a checkpoint, keeping fresh values where it has none.

    Args:
      path: a params_io directory or a run directory.
      fresh_params: the freshly initialised (sharded) parameters; their structure is the target's.
      param_shardings: the NamedSharding of every parameter.
      name_mapping: (target regex, source template or None) rules.
      model_config: the model's ModelConfig, to report differing hyper-parameters (None: not compared).

    Returns:
      (parameters placed with `param_shardings`, report).

    Raises:
      UserError: unreadable source or a shape mismatch.
    """
    path = pathlib.Path(path).absolute()
    source, source_config = _read_source(path)
    report = InitialCheckpointReport(source=str(path))
    if source_config is not None and model_config is not None and dataclasses.is_dataclass(model_config):
        for field in dataclasses.fields(model_config):
            theirs, ours = getattr(source_config, field.name, None), getattr(model_config, field.name)
            if theirs != ours:
                report.config_differences[field.name] = (theirs, ours)

    flat_fresh = tree_paths.flatten_with_paths(fresh_params)
    flat_shardings = tree_paths.flatten_with_paths(param_shardings)
    mapping = resolve_source_paths(list(flat_fresh), name_mapping)
    used = set()
    new_flat = {}
    for target, fresh in flat_fresh.items():
        source_path = mapping[target]
        if source_path is None or source_path not in source:
            report.fresh[target] = ("kept fresh by the name mapping" if source_path is None
                                    else f"{source_path} is not in the checkpoint")
            new_flat[target] = fresh
            continue
        value = source[source_path]
        if tuple(value.shape) != tuple(fresh.shape):
            raise UserError(f"initial checkpoint {path}: {source_path} has shape {tuple(value.shape)}, the model's "
                            f"{target} needs {tuple(fresh.shape)}")
        value = np.asarray(value, dtype=fresh.dtype)
        new_flat[target] = jax.make_array_from_callback(value.shape, flat_shardings[target],
                                                        lambda index, v=value: v[index])
        report.loaded[target] = source_path
        used.add(source_path)
    report.unused = sorted(set(source) - used)
    leaves = [new_flat[path] for path in flat_fresh]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(fresh_params), leaves), report


# ModelConfig fields a params directory's model_config.json decides for inference, whatever the gin model says: how
# its reader was trained to see a pair (released checkpoints: "packed"). They leave the parameter layout unchanged.
CHECKPOINT_INPUT_FIELDS = ("pair_layout",)


def adopt_checkpoint_settings(model: Any, path: str | pathlib.Path) -> Any:
    """The model with the `CHECKPOINT_INPUT_FIELDS` of a params directory's config (a run directory: unchanged).

    A checkpoint trained on normalised queries (`normalize_queries`) is reported: the SeqIO tasks tokenise before
    the model is known, so their gin macro `NORMALIZE_QUERIES` must say so.

    Args:
      model: a model with a dataclass `config` and `with_config` (CLASSModel); other models are returned as given.
      path: the checkpoint path of an inference job.

    Returns:
      The model to run.
    """
    from class_jax.checkpoints import params_io  # pylint: disable=import-outside-toplevel

    path = pathlib.Path(path).absolute()
    config = getattr(model, "config", None)
    if not params_io.is_checkpoint_dir(path) or not dataclasses.is_dataclass(config) or not hasattr(model,
                                                                                                   "with_config"):
        return model
    theirs = params_io.load_config(path)
    if getattr(theirs, "normalize_queries", False):
        logging.warning("%s was trained on normalised queries (normalize_queries); evaluate its tasks with "
                        "--gin.NORMALIZE_QUERIES=True", path)
    changes = {name: getattr(theirs, name) for name in CHECKPOINT_INPUT_FIELDS
               if hasattr(config, name) and getattr(theirs, name) != getattr(config, name)}
    if not changes:
        return model
    logging.info("Taking %s from the checkpoint's model_config.json", changes)
    return model.with_config(dataclasses.replace(config, **changes))


@dataclasses.dataclass(frozen=True)
class ParamsSource:
    """Where restored parameters came from: `step` is None for params_io directories."""

    description: str
    step: Optional[int]


def load_params_for_inference(path: str | pathlib.Path, abstract_params: PyTree,
                              step: Optional[int] = None) -> tuple[PyTree, ParamsSource]:
    """Reads parameters straight into their shardings, for evaluation, inference and export.

    Args:
      path: a params_io directory, or a run directory (its latest step, or `step`).
      abstract_params: jax.ShapeDtypeStruct tree with shardings (`train_state.build_param_layout`).
      step: a run's step to read (None: latest); must be None for params_io directories.

    Returns:
      (parameters, where they came from).

    Raises:
      UserError: nothing readable at `path`.
    """
    from class_jax.checkpoints import params_io  # pylint: disable=import-outside-toplevel

    path = pathlib.Path(path).absolute()
    if params_io.is_checkpoint_dir(path):
        if step is not None:
            raise UserError(f"{path} is a params directory; it has no steps (drop --step)")
        params, _ = params_io.load_params(path, target=abstract_params)
        return params, ParamsSource(str(path), None)
    checkpointer = TrainCheckpointer(_run_dir(path, "checkpoint"), read_only=True)
    try:
        try:
            chosen = find_step_to_restore(checkpointer, step)
        except FileNotFoundError as e:
            raise UserError(str(e)) from e
        params = checkpointer.restore_params(chosen, abstract_params)
    finally:
        checkpointer.close()
    return params, ParamsSource(f"{checkpointer.directory} step {chosen}", chosen)
