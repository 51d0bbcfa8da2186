"""Helpers shared by the trainer tests: CLI subprocesses and small in-process training setups."""

import pathlib
import subprocess
import sys
from typing import Sequence

TESTS_DIR = pathlib.Path(__file__).resolve().parent
TESTDATA = TESTS_DIR / "testdata"
TINY_TRAIN_GIN = TESTDATA / "tiny_train.gin"


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
    from class_jax.trainer import gin_utils, partitioning  # pylint: disable=import-outside-toplevel
    gin_utils.parse_gin([gin_file], [f"{name} = {value!r}" for name, value in bindings.items()])
    try:
        return gin.get_configurable(partitioning.Partitioner)()
    finally:
        gin.clear_config()
