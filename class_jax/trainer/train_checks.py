"""The start-of-job checks of `train`'s numbers and paths (see class_jax.runtime.config_checks).

Values that gin evaluates into objects are checked where they are built (optimizers.learning_rate_schedule /
adamw / adafactor, data.DatasetConfig, data.IteratorDataSource); what `train` takes as plain values, and the
CheckpointConfig it is given, are checked here before anything starts.
"""

import pathlib
from typing import Any, Callable, Optional

from class_jax.runtime import config_checks as checks
from class_jax.trainer import checkpointer as checkpointer_lib
from class_jax.trainer import train_step as train_step_lib


def check_train_arguments(train: Callable[..., Any], *, model_dir: Any, total_steps: Any,
                          checkpoint_cfg: checkpointer_lib.CheckpointConfig, eval_period: Any, log_period: Any,
                          random_seed: Any, num_microbatches: Any, microbatch_weighting: Any,
                          peak_flops_per_device: Any, stop_check_period: Any, train_dataset_cfg: Any,
                          partitioner: Any = None) -> pathlib.Path:
    """Checks `train`'s arguments (ranges below), then creates the model directory.

    Ranges: total_steps, log_period, num_microbatches, stop_check_period: integers >= 1; eval_period: an integer
    >= 1 or None; random_seed: an integer >= 0; microbatch_weighting: one of train_step.MICROBATCH_WEIGHTINGS;
    peak_flops_per_device: a finite number > 0 or None; CheckpointConfig.save_every_steps: an integer >= 1,
    keep / keep_period: integers >= 1 or None; num_microbatches must divide the training batch size, which must
    split over the partitioner's batch shards; model_dir: a path that is not a file and can be created.

    Args:
      train: the train function (names the gin parameters in errors).
      model_dir: ... the remaining arguments as `train` takes them (partitioner: None skips the batch-size check).

    Returns:
      The model directory (absolute), created.

    Raises:
      config_checks.InvalidValue: naming the gin parameter and its allowed range (or the path that is not a
        directory).
    """
    checks.integer(total_steps, train, "total_steps", minimum=1)
    checks.integer(eval_period, train, "eval_period", minimum=1, allow_none=True)
    checks.integer(log_period, train, "log_period", minimum=1)
    checks.integer(random_seed, train, "random_seed", minimum=0)
    checks.integer(num_microbatches, train, "num_microbatches", minimum=1)
    checks.choice(microbatch_weighting, train, "microbatch_weighting", train_step_lib.MICROBATCH_WEIGHTINGS)
    checks.number(peak_flops_per_device, train, "peak_flops_per_device", minimum=0.0, exclusive_minimum=True,
                  allow_none=True)
    checks.integer(stop_check_period, train, "stop_check_period", minimum=1)
    config_cls = checkpointer_lib.CheckpointConfig
    checks.integer(checkpoint_cfg.save_every_steps, config_cls, "save_every_steps", minimum=1)
    checks.integer(checkpoint_cfg.keep, config_cls, "keep", minimum=1, allow_none=True)
    checks.integer(checkpoint_cfg.keep_period, config_cls, "keep_period", minimum=1, allow_none=True)
    batch_size: Optional[int] = getattr(train_dataset_cfg, "batch_size",
                                        getattr(train_dataset_cfg, "global_batch_size", None))
    if isinstance(batch_size, int) and batch_size % num_microbatches:
        raise checks.InvalidValue(f"gin parameter {checks.parameter_name(train, 'num_microbatches')} must divide the "
                                  f"training batch size {batch_size}; got {num_microbatches}")
    if isinstance(batch_size, int) and partitioner is not None:
        try:
            partitioner.host_batch_shard(batch_size)
        except ValueError as e:
            raise checks.InvalidValue(f"the training batch size does not fit the mesh: {e}") from e
    name = checks.parameter_name(train, "model_dir")
    if not isinstance(model_dir, (str, pathlib.PurePath)) or not str(model_dir).strip():
        raise checks.InvalidValue(f"gin parameter {name} must be a directory path; got {model_dir!r}")
    path = pathlib.Path(model_dir).absolute()
    if path.exists() and not path.is_dir():
        raise checks.InvalidValue(f"gin parameter {name} names a file, not a directory: {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise checks.InvalidValue(f"gin parameter {name}: cannot create {path}: {e.strerror or e}") from e
    return path
