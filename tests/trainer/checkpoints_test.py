"""Checkpoints: unreadable or half-written steps are never used, and warm starts map names and report."""

import json
import logging
import pathlib
import shutil

import jax
import numpy as np
import pytest

from class_jax.runtime.errors import UserError
from class_jax.trainer import checkpointer as checkpoints
from class_jax.trainer import data
from class_jax.trainer import param_sources
from class_jax.runtime import partitioning
from class_jax.trainer import train_state
from class_jax.trainer.train_state import TrainState
import trainer_test_model as tm
import trainer_testing


@pytest.fixture(scope="module")
def partitioner():
    return partitioning.Partitioner((-1, 1, 1))


def _copy(run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def _truncate_files(directory: pathlib.Path) -> int:
    count = 0
    for path in directory.rglob("*"):
        if path.is_file() and path.stat().st_size > 1:
            with path.open("r+b") as f:
                f.truncate(path.stat().st_size // 2)
            count += 1
    return count


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one_with_a_warning(four_step_run, tmp_path,
                                                                                  partitioner, caplog):
    run = _copy(four_step_run, tmp_path)
    first_losses = trainer_testing.loss_trajectory(run)
    assert checkpoints.TrainCheckpointer(run).all_steps() == [1, 2, 4]
    assert _truncate_files(run / "checkpoints" / "4" / "params") > 0

    with caplog.at_level(logging.WARNING):
        result = trainer_testing.train_tiny(run, partitioner, total_steps=6)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("step 4" in w and "unreadable" in w for w in warnings), warnings
    assert len(list((run / "checkpoints").glob("4.unreadable-*"))) == 1
    assert result.step == 6
    # Resumed from step 2: steps 3 and 4 were trained again on the same batches from the same state, and their
    # first records were dropped from metrics.jsonl before the new ones were logged.
    records = trainer_testing.read_metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    rerun_losses = {r["step"]: r["loss"] for r in records}
    for step in (3, 4):
        assert abs(rerun_losses[step] - first_losses[step]) <= 1e-6
    assert checkpoints.TrainCheckpointer(run).all_steps() == [1, 2, 4, 6]


def test_half_written_steps_are_never_picked(four_step_run, tmp_path, partitioner, caplog):
    run = _copy(four_step_run, tmp_path)
    # An Orbax save killed before finalisation leaves a temporary directory: never listed, removed on open.
    tmp_dir = run / "checkpoints" / "8.orbax-checkpoint-tmp"
    (tmp_dir / "params").mkdir(parents=True)
    (tmp_dir / "params" / "garbage").write_bytes(b"\0" * 100)
    # A step directory copied without its items (e.g. an interrupted rsync) lists, but cannot be read.
    shutil.copytree(run / "checkpoints" / "4", run / "checkpoints" / "6")
    shutil.rmtree(run / "checkpoints" / "6" / "opt_state")

    checkpointer = checkpoints.TrainCheckpointer(run)
    assert 8 not in checkpointer.all_steps()
    layout = _layout(partitioner)
    with caplog.at_level(logging.WARNING):
        restored = checkpointer.restore_latest(layout)
    checkpointer.save(restored.step, restored.state, restored.data_position, force=True)  # saving first awaits the clean-up
    checkpointer.close()
    assert not tmp_dir.exists()
    assert restored.step == 4
    assert restored.data_position == data.DataPosition(source_start_step=0, batches_consumed=4)
    assert any("step 6" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert int(restored.state.step) == 4


def _layout(partitioner, config=None):
    from class_jax.trainer import optimizers  # pylint: disable=import-outside-toplevel
    model = tm.TinyEncDecModel(config or tm.TinyConfig(dropout_rate=0.1))
    optimizer = optimizers.adamw(optimizers.learning_rate_schedule(1e-2, 100, warmup_steps=1))
    shapes = {name: value.shape for name, value in tm.synthetic_global_batch(0, 8).items()}
    return train_state.build_state_layout(model, optimizer.transform, partitioner, shapes)


def _fresh_params(partitioner, config=None):
    from class_jax.trainer import optimizers  # pylint: disable=import-outside-toplevel
    model = tm.TinyEncDecModel(config or tm.TinyConfig(dropout_rate=0.1))
    optimizer = optimizers.adamw(optimizers.learning_rate_schedule(1e-2, 100, warmup_steps=1))
    layout = _layout(partitioner, config)
    state = train_state.init_train_state(model, optimizer.transform, partitioner, layout, jax.random.key(7))
    return state.params, layout.shardings.params


def _write_renamed_source(four_step_run: pathlib.Path, target: pathlib.Path) -> dict:
    params, step = param_sources.read_run_params_to_host(four_step_run, None)
    assert step == 4
    renamed = dict(params)
    renamed["shared_embedding"] = renamed.pop("token_embedder")
    renamed["unused_extra"] = np.ones((3,), np.float32)
    checkpointer = checkpoints.TrainCheckpointer(target, checkpoints.CheckpointConfig(async_save=False))
    state = TrainState(step=np.asarray(4, np.int32), params=renamed, opt_state={"count": np.zeros((), np.int32)})
    checkpointer.save(4, state, data.DataPosition(), force=True)
    checkpointer.close()
    return renamed


def test_initial_checkpoint_maps_names_keeps_fresh_params_and_reports(four_step_run, tmp_path, partitioner):
    source = _write_renamed_source(four_step_run, tmp_path / "source")
    fresh, shardings = _fresh_params(partitioner)
    mapping = [(r"token_embedder", "shared_embedding"), (r"logits_.*", None)]
    params, report = param_sources.load_initial_params(tmp_path / "source", fresh, shardings, mapping)

    np.testing.assert_array_equal(np.asarray(params["token_embedder"]), source["shared_embedding"])
    np.testing.assert_array_equal(np.asarray(params["qkv"]), source["qkv"])
    np.testing.assert_array_equal(np.asarray(params["logits_dense"]), np.asarray(fresh["logits_dense"]))
    assert not np.array_equal(np.asarray(fresh["qkv"]), source["qkv"])
    assert report.loaded["token_embedder"] == "shared_embedding"
    assert report.fresh == {"logits_dense": "kept fresh by the name mapping"}
    assert report.unused == ["logits_dense", "unused_extra"]
    assert params["qkv"].sharding == shardings["qkv"]


def test_initial_checkpoint_shape_mismatch_is_a_user_error(four_step_run, partitioner):
    source, _ = param_sources.read_run_params_to_host(four_step_run, None)
    wider = {name: np.zeros(value.shape[:-1] + (value.shape[-1] + 1,), value.dtype) for name, value in source.items()}
    fresh = jax.device_put(wider, partitioner.replicated)
    shardings = jax.tree_util.tree_map(lambda _: partitioner.replicated, wider)
    with pytest.raises(UserError, match=r"has shape \(.*\), the model's .* needs"):
        param_sources.load_initial_params(four_step_run, fresh, shardings)


def test_train_warm_starts_from_another_run_and_writes_the_report(four_step_run, tmp_path, partitioner):
    source, _ = param_sources.read_run_params_to_host(four_step_run, None)
    result = trainer_testing.train_tiny(tmp_path / "warm", partitioner, total_steps=1, initial_checkpoint=str(four_step_run),
                                        initial_checkpoint_name_mapping=[("relpos_bias", None)])
    report = json.loads((tmp_path / "warm" / "initial_checkpoint_report.json").read_text())
    assert report["fresh"] == {"relpos_bias": "kept fresh by the name mapping"}
    assert len(report["loaded"]) == len(source) - 1
    # The schedule's learning rate at step 0 is 0, so after one step the parameters are exactly the loaded ones.
    assert result.step == 1
    np.testing.assert_array_equal(np.asarray(result.state.params["qkv"]), source["qkv"])
    assert not np.array_equal(np.asarray(result.state.params["relpos_bias"]), source["relpos_bias"])
