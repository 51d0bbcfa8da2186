"""Every gin file of the repository parses, binds and finalises (REQUIRED values given test values)."""

import pathlib

import gin
import jax
import pytest

from class_jax.runtime.gin_paths import gin_dir
from class_jax.runtime import gin_utils
from class_jax.runtime import partitioning

GIN_DIR = gin_dir()
GIN_FILES = sorted(pathlib.Path(GIN_DIR).rglob("*.gin"))

# Parsed before each file (the file's own definitions win): what run files take from model files.
PRELUDE = [
    "from __gin__ import dynamic_registration",
    "import trainer_test_model",
    "MODEL = @trainer_test_model.TinyEncDecModel()",
]
# Files that complete another one (their header says "include after ..."), parsed after it.
COMPLETES = {"stages/clr_pt_teacher.gin": "stages/clr_pt.gin"}
# Values for `%gin.REQUIRED` macros, bound after the file; unknown REQUIRED macros get a placeholder string.
TEST_VALUES = {
    "MODEL_DIR": "'/tmp/class_jax_gin_test'",
    "MIXTURE_OR_TASK_NAME": "'test_task'",
    "TASK_FEATURE_LENGTHS": "{'inputs': 8, 'targets': 4}",
    "TRAIN_STEPS": "10",
    "CHECKPOINT_PATH": "'/tmp/class_jax_gin_test'",
    "EVAL_OUTPUT_DIR": "'/tmp/class_jax_gin_test/eval'",
    "INFER_OUTPUT_DIR": "'/tmp/class_jax_gin_test/infer'",
    "EXPORT_DIR": "'/tmp/class_jax_gin_test/export'",
}


def _required_macros() -> list[str]:
    """Macros currently bound to %gin.REQUIRED."""
    names = []
    for (scope, selector), bindings in gin.config._CONFIG.items():  # pylint: disable=protected-access
        if selector.endswith("gin.macro") and "value" in bindings:
            value = bindings["value"]
            if isinstance(value, gin.config.ConfigurableReference) and \
                    value.configurable.wrapped is gin.config._retrieve_constant:  # pylint: disable=protected-access
                if value.scoped_configurable_fn() is gin.REQUIRED:
                    names.append(scope)
    return names


def _parse_with_test_values(path: pathlib.Path) -> None:
    gin_utils.parse_gin([], PRELUDE, finalize=False)
    completed = COMPLETES.get(str(path.relative_to(GIN_DIR)))
    if completed:
        gin.parse_config_file(str(pathlib.Path(GIN_DIR) / completed))
    gin.parse_config_file(str(path))
    bindings = [f"{name} = {TEST_VALUES.get(name, repr('gin-test-placeholder'))}" for name in _required_macros()]
    gin.parse_config(bindings)
    gin.finalize()


def test_gin_files_are_found():
    names = {str(p.relative_to(GIN_DIR)) for p in GIN_FILES}
    assert {"runs/train.gin", "runs/eval.gin", "runs/infer.gin", "runs/export.gin", "sharding/data_parallel.gin",
            "sharding/fsdp.gin", "sharding/fsdp_tp.gin", "sharding/tensor_parallel_8.gin"} <= names


@pytest.mark.parametrize("path", GIN_FILES, ids=[str(p.relative_to(GIN_DIR)) for p in GIN_FILES])
def test_gin_file_parses_and_binds(path):
    try:
        _parse_with_test_values(path)
        # Whatever partitioner the file configures must build a mesh on the test's 8 devices.
        if any(selector.endswith("partitioning.Partitioner")
               for _, selector in gin.config._CONFIG):  # pylint: disable=protected-access
            partitioner = gin.get_configurable(partitioning.Partitioner)()
            assert partitioner.mesh.size == jax.device_count()
    finally:
        gin.clear_config()
