"""Nothing lost, nothing silent: restores refuse a changed config, detect damaged steps and fall back, never start
over on their own; metrics.jsonl stays truthful across resumes; a SIGTERM during start-up stops cleanly."""

import json
import logging
import pathlib
import signal

import numpy as np
import pytest

from class_jax.demo import report
from class_jax.runtime import partitioning
from class_jax.runtime.errors import UserError
from class_jax.trainer import checkpointer as checkpoints
from class_jax.trainer import data
from class_jax.trainer import metrics
from class_jax.trainer import param_sources
import trainer_test_model as tm
import trainer_testing


@pytest.fixture(scope="module")
def partitioner():
    return partitioning.Partitioner((-1, 1, 1))


def _copy_run(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    import shutil  # pylint: disable=import-outside-toplevel
    shutil.copytree(source, target)
    return target


def _listing(model_dir: pathlib.Path) -> list[tuple[str, int]]:
    """The run's files with their sizes (config.gin aside: a refused run must not replace it, checked apart)."""
    return sorted((str(path.relative_to(model_dir)), path.stat().st_size) for path in model_dir.rglob("*")
                  if path.name != "config.gin")


def _largest_file(directory: pathlib.Path) -> pathlib.Path:
    return max((path for path in directory.rglob("*") if path.is_file()), key=lambda path: path.stat().st_size)


def _flip_bytes(path: pathlib.Path, count: int = 64) -> None:
    raw = bytearray(path.read_bytes())
    start = len(raw) // 2 - count // 2
    for i in range(start, start + count):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _params(model_dir: pathlib.Path, step: int):
    return param_sources.read_run_params_to_host(model_dir, step)[0]


def _assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_every_step_has_a_manifest_that_verifies(four_step_run):
    for step in (1, 2, 4):
        step_dir = four_step_run / "checkpoints" / str(step)
        manifest = json.loads((step_dir / checkpoints.INTEGRITY_FILE).read_text())
        assert manifest["algorithm"] == "crc32" and manifest["files"]
        assert {name.split("/")[0] for name in manifest["files"]} == {"params", "opt_state", "train_meta"}
        assert checkpoints.verify_integrity_manifest(step_dir)


def test_a_changed_model_config_is_refused_and_nothing_is_moved(four_step_run, tmp_path, partitioner):
    model_dir = _copy_run(four_step_run, tmp_path / "run")
    before = _listing(model_dir)
    with pytest.raises(UserError) as error:
        trainer_testing.train_tiny(model_dir, partitioner, total_steps=6,
                                   config=tm.TinyConfig(dropout_rate=0.1, mlp_dim=48))
    message = str(error.value)
    assert "checkpoint step 4" in message and "does not fit the configured model" in message
    assert "params/encoder_wi is configured float32[16, 2, 48], the checkpoint has float32[16, 2, 32]" in message
    assert "another model_dir" in message and "start_fresh" in message
    assert _listing(model_dir) == before


@pytest.mark.parametrize("item", ["params", "opt_state"])
def test_flipped_bytes_are_detected_and_the_previous_step_is_used(four_step_run, tmp_path, partitioner, caplog, item):
    model_dir = _copy_run(four_step_run, tmp_path / "run")
    damaged = _largest_file(model_dir / "checkpoints" / "4" / item)
    size = damaged.stat().st_size
    _flip_bytes(damaged)
    assert damaged.stat().st_size == size
    with caplog.at_level(logging.INFO):
        result = trainer_testing.train_tiny(model_dir, partitioner, total_steps=4)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(damaged) in w and "fails its checksum" in w for w in warnings), warnings
    assert any("Resuming from" in r.getMessage() and r.getMessage().endswith("step 2.") for r in caplog.records)
    assert [p.name.split(".")[0] for p in (model_dir / "checkpoints").glob("4.unreadable-*")] == ["4"]
    # Steps 3 and 4 were trained again from step 2 and the new step 4 matches the uninterrupted run's bit for bit.
    assert result.step == 4
    _assert_same_params(_params(model_dir, 4), _params(four_step_run, 4))


def test_an_edited_data_position_is_detected(four_step_run, tmp_path, partitioner, caplog):
    model_dir = _copy_run(four_step_run, tmp_path / "run")
    meta_file = model_dir / "checkpoints" / "4" / "train_meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["data"]["batches_consumed"] = 3
    meta_file.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        trainer_testing.train_tiny(model_dir, partitioner, total_steps=4)
    assert any(str(meta_file) in r.getMessage() for r in caplog.records)
    assert list((model_dir / "checkpoints").glob("4.unreadable-*"))


def test_the_data_position_is_checked_against_the_step_without_a_manifest(tmp_path):
    path = tmp_path / "train_meta"
    ok = {"step": 6, "data": {"source_start_step": 4, "batches_consumed": 2}}
    assert checkpoints.check_train_meta(6, ok, path) == data.DataPosition(4, 2)
    edited = {"step": 6, "data": {"source_start_step": 0, "batches_consumed": 5}}
    with pytest.raises(checkpoints.CorruptCheckpointError, match="batches_consumed 5 != step 6"):
        checkpoints.check_train_meta(6, edited, path)
    with pytest.raises(checkpoints.CorruptCheckpointError, match="records step 4"):
        checkpoints.check_train_meta(6, {"step": 4, "data": ok["data"]}, path)


def test_a_step_without_manifest_is_restored_with_a_warning(four_step_run, tmp_path, partitioner, caplog):
    model_dir = _copy_run(four_step_run, tmp_path / "run")
    (model_dir / "checkpoints" / "4" / checkpoints.INTEGRITY_FILE).unlink()
    with caplog.at_level(logging.INFO):
        result = trainer_testing.train_tiny(model_dir, partitioner, total_steps=4)
    assert result.step == 4 and not result.preempted
    assert any("has no integrity.json" in r.getMessage() for r in caplog.records)
    assert not list((model_dir / "checkpoints").glob("*.unreadable-*"))


def test_all_steps_damaged_is_an_error_then_start_fresh_starts_afresh(four_step_run, tmp_path, partitioner):
    model_dir = _copy_run(four_step_run, tmp_path / "run")
    steps = checkpoints.TrainCheckpointer(model_dir, read_only=True).all_steps()
    assert steps == [1, 2, 4]  # Orbax also saves the first step, whatever the period
    for step in steps:
        step_dir = model_dir / "checkpoints" / str(step)
        truncated = _largest_file(step_dir / "params")
        truncated.write_bytes(truncated.read_bytes()[:10])
    with pytest.raises(UserError, match="no usable checkpoint .* refusing to train from scratch"):
        trainer_testing.train_tiny(model_dir, partitioner, total_steps=4)
    assert not (model_dir / "checkpoints" / "2").exists()
    # The damaged steps stay set aside, and the next run refuses as well rather than starting over.
    with pytest.raises(UserError, match="1.unreadable-.*2.unreadable-.*4.unreadable-"):
        trainer_testing.train_tiny(model_dir, partitioner, total_steps=4)

    result = trainer_testing.train_tiny(model_dir, partitioner, total_steps=4, start_fresh=True)
    assert result.step == 4
    moved = list(model_dir.glob("checkpoints.replaced-*"))
    assert len(moved) == 1 and sorted(p.name.split(".")[0] for p in moved[0].iterdir()) == ["1", "2", "4"]
    assert list(model_dir.glob("metrics.replaced-*.jsonl"))
    assert sorted(trainer_testing.loss_trajectory(model_dir)) == [1, 2, 3, 4]
    _assert_same_params(_params(model_dir, 4), _params(four_step_run, 4))


def test_records_past_the_resumed_step_are_dropped_and_a_torn_line_is_tolerated(four_step_run, tmp_path,
                                                                                  partitioner):
    model_dir = _copy_run(four_step_run, tmp_path / "run")
    # As if the run had logged steps 5 and 6 after its step-4 checkpoint and been killed mid-write.
    with (model_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 5, "loss": 99.0}) + "\n" + json.dumps({"step": 6, "loss": 99.0}) + "\n")
        f.write('{"step": 7, "lo')
    curve = report.read_loss_curve(model_dir)
    assert curve["step"] == [1, 2, 3, 4, 5, 6]
    trainer_testing.train_tiny(model_dir, partitioner, total_steps=6)
    steps = [record["step"] for record in trainer_testing.read_metrics(model_dir)]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert all(record["loss"] < 50 for record in trainer_testing.read_metrics(model_dir))


def test_readers_drop_superseded_records_of_older_files(tmp_path):
    lines = [{"step": s, "loss": float(s)} for s in (1, 2, 3, 4)] + [{"step": 4, "eval/f1": 1.0}]
    lines += [{"step": s, "loss": 10.0 + s} for s in (3, 4, 5)]  # resumed at step 2 by a writer that kept them
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 6, "lo')
    records = metrics.read_records(tmp_path / "metrics.jsonl")
    assert [(r["step"], r.get("loss")) for r in records] == [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0), (5, 15.0)]
    assert report.read_loss_curve(tmp_path)["loss"] == [1.0, 2.0, 13.0, 14.0, 15.0]
    assert metrics.truncate_records(tmp_path / "metrics.jsonl", 4) == 5
    assert [r["step"] for r in metrics.read_records(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def test_sigterm_during_start_up_stops_cleanly(tmp_path, partitioner):
    handler_before = signal.getsignal(signal.SIGTERM)
    result = trainer_testing.train_tiny(
        tmp_path / "run", partitioner, total_steps=4,
        train_dataset_cfg=data.IteratorDataSource(tm.terminating_host_iterator, 8))
    assert result.preempted and result.step == 0 and result.state is None
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert not (tmp_path / "run" / "checkpoints").exists() or not list((tmp_path / "run" / "checkpoints").iterdir())


def test_cli_refuses_a_changed_config_with_exit_code_2(four_step_run, tmp_path, subprocess_env):
    model_dir = _copy_run(four_step_run, tmp_path / "run")
    before = _listing(model_dir)
    done = trainer_testing.run_class_jax(
        trainer_testing.tiny_train_args(model_dir, "--gin.train_script.train.hooks=[]",
                                        "--gin.trainer_test_model.TinyConfig.mlp_dim=48"), subprocess_env, tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("class-jax train: error:")]
    assert len(errors) == 1 and "does not fit the configured model" in errors[0] and "encoder_wi" in errors[0]
    assert "Traceback" not in done.stderr
    assert _listing(model_dir) == before
    assert not (model_dir / "config.gin").exists()  # the refused configuration is not recorded as the run's


def test_cli_sigterm_during_start_up_exits_0_without_a_traceback(tmp_path, subprocess_env):
    override = tmp_path / "terminate.gin"
    override.write_text("from __gin__ import dynamic_registration\nfrom class_jax.trainer import data\n"
                        "import trainer_test_model\n"
                        "data.IteratorDataSource.make_host_iterator = @trainer_test_model.terminating_host_iterator\n")
    done = trainer_testing.run_class_jax(
        trainer_testing.tiny_train_args(tmp_path / "run", f"--gin_file={override}",
                                        "--gin.train_script.train.hooks=[]"), subprocess_env, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Stopped during start-up after SIGTERM" in output and "Traceback" not in output
