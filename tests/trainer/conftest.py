"""Fixtures of the trainer tests: a persistent XLA compilation cache shared by the tests and their subprocesses.

The trainer tests compile the same tiny programs many times (in-process runs, resumed runs, CLI subprocesses);
caching the executables on disk keeps the area's default run within a few minutes on a small CPU machine.
"""

import os
import pathlib

import jax
import pytest

TESTS_DIR = pathlib.Path(__file__).resolve().parent
TESTDATA = TESTS_DIR / "testdata"


@pytest.fixture(scope="session")
def compilation_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(autouse=True, scope="session")
def _persistent_compilation_cache(compilation_cache_dir: pathlib.Path):
    previous = {name: getattr(jax.config, name) for name in (
        "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes")}
    jax.config.update("jax_compilation_cache_dir", str(compilation_cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    yield
    for name, value in previous.items():
        jax.config.update(name, value)


@pytest.fixture(scope="session")
def subprocess_env(compilation_cache_dir: pathlib.Path) -> dict[str, str]:
    """Environment for `class-jax` subprocesses: the test model importable, 8 CPU devices, the shared cache."""
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_COMPILATION_CACHE_DIR": str(compilation_cache_dir),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    })
    return env


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, subprocess_env) -> pathlib.Path:
    """An uninterrupted CLI run of the tiny model (data parallel over 8 devices, no pauses) that others must match."""
    import trainer_testing  # pylint: disable=import-outside-toplevel
    model_dir = tmp_path_factory.mktemp("reference") / "run"
    done = trainer_testing.run_class_jax(
        trainer_testing.tiny_train_args(model_dir, "--gin.train_script.train.hooks=[]"), subprocess_env,
        model_dir.parent)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return model_dir


@pytest.fixture(scope="session")
def four_step_run(tmp_path_factory) -> pathlib.Path:
    """An uninterrupted in-process 4-step tiny run (checkpoints at steps 1, 2 and 4, one device axis); tests copy it
    before changing it, or compare with it."""
    import trainer_testing  # pylint: disable=import-outside-toplevel
    from class_jax.runtime import partitioning  # pylint: disable=import-outside-toplevel
    model_dir = tmp_path_factory.mktemp("four_steps") / "run"
    trainer_testing.train_tiny(model_dir, partitioning.Partitioner((-1, 1, 1)), total_steps=4)
    return model_dir
