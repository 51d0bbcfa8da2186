"""Helpers shared by the trainer tests: CLI subprocesses and small in-process training setups."""

import pathlib
import subprocess
import sys
from typing import Sequence

TESTS_DIR = pathlib.Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parents[1]
TESTDATA = TESTS_DIR / "testdata"
TINY_TRAIN_GIN = TESTDATA / "tiny_train.gin"
TINY_TRAIN_STEPS = 12


def tiny_train_args(model_dir: pathlib.Path, *extra: str) -> list[str]:
    """`class-jax train` arguments for the tiny model: data parallel, 12 steps, checkpoints every 2 steps."""
    return ["train", f"--gin_file={TINY_TRAIN_GIN}", "--gin_file=sharding/data_parallel.gin",
            f"--gin.MODEL_DIR='{model_dir}'",
            f"--gin.TRAIN_STEPS={TINY_TRAIN_STEPS}", *extra]


def class_jax_command(*args: str) -> list[str]:
    """argv running the `class-jax` CLI with this interpreter."""
    return [sys.executable, "-m", "class_jax.cli", *args]


def run_class_jax(args: Sequence[str], env: dict[str, str], cwd: pathlib.Path,
                  timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `class-jax ARGS` to completion (cwd outside the repository, so its gin/ folder cannot shadow gin)."""
    return subprocess.run(class_jax_command(*args), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def read_metrics(model_dir: pathlib.Path) -> list[dict]:
    """The records of <model_dir>/metrics.jsonl."""
    import json  # pylint: disable=import-outside-toplevel
    path = pathlib.Path(model_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_trajectory(model_dir: pathlib.Path) -> dict[int, float]:
    """step -> training loss, from metrics.jsonl (training records only)."""
    return {record["step"]: record["loss"] for record in read_metrics(model_dir) if "loss" in record}


def tiny_sharding_partitioner(gin_file: str, **bindings):
    """A Partitioner configured by one of the repository's gin/sharding files (plus optional macro bindings)."""
    import gin  # pylint: disable=import-outside-toplevel
    from class_jax.runtime import gin_utils, partitioning  # pylint: disable=import-outside-toplevel
    gin_utils.parse_gin([gin_file], [f"{name} = {value!r}" for name, value in bindings.items()])
    try:
        return gin.get_configurable(partitioning.Partitioner)()
    finally:
        gin.clear_config()


def train_tiny(model_dir: pathlib.Path, partitioner, total_steps: int = 4, global_batch_size: int = 8,
               config=None, **train_kwargs):
    """Trains the tiny model on synthetic data with train.train (log every step, no TensorBoard)."""
    from class_jax.trainer import checkpointer, data, optimizers, train  # pylint: disable=import-outside-toplevel
    import trainer_test_model as tm  # pylint: disable=import-outside-toplevel
    kwargs = dict(
        model=tm.TinyEncDecModel(config or tm.TinyConfig(dropout_rate=0.1)),
        train_dataset_cfg=data.IteratorDataSource(tm.synthetic_host_iterator, global_batch_size),
        partitioner=partitioner, model_dir=str(model_dir), total_steps=total_steps,
        # The optimizer of testdata/tiny_train.gin (whatever total_steps is), so that in-process runs, CLI runs and
        # runs of other lengths compile the same step and share the XLA cache entry.
        optimizer=optimizers.adamw(optimizers.learning_rate_schedule(1e-2, TINY_TRAIN_STEPS, warmup_steps=2)),
        checkpoint_cfg=checkpointer.CheckpointConfig(save_every_steps=2, keep=10, async_save=False),
        log_period=1, tensorboard=False, peak_flops_per_device=1e9)
    kwargs.update(train_kwargs)
    return train.train(**kwargs)
