"""`class-jax train` as users run it: kill -9 and rerun resumes exactly; SIGTERM saves the current step."""

import random
import re
import signal
import subprocess
import time

import numpy as np

from class_jax.trainer import checkpointer as checkpoints
from class_jax.trainer import param_sources
import trainer_testing

TOTAL_STEPS = trainer_testing.TINY_TRAIN_STEPS
train_args = trainer_testing.tiny_train_args

def _start(args, env, cwd, log_path):
    log = open(log_path, "w")  # pylint: disable=consider-using-with
    return subprocess.Popen(trainer_testing.class_jax_command(*args), env=env, cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT), log


def _wait_for_step(model_dir, step, process, timeout=240.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (model_dir / "metrics.jsonl").exists():
            steps = trainer_testing.loss_trajectory(model_dir)
            if steps and max(steps) >= step:
                return max(steps)
        if process.poll() is not None:
            raise AssertionError(f"training exited with {process.returncode} before step {step}")
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


def test_kill_9_then_rerun_resumes_and_matches_the_uninterrupted_run(reference_run, tmp_path, subprocess_env):
    kill_at = random.randint(3, TOTAL_STEPS - 3)
    model_dir = tmp_path / "run"
    process, log = _start(train_args(model_dir), subprocess_env, tmp_path, tmp_path / "killed.log")
    try:
        _wait_for_step(model_dir, kill_at, process)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        log.close()
        if process.poll() is None:
            process.kill()
    reached = max(trainer_testing.loss_trajectory(model_dir))
    assert reached < TOTAL_STEPS, "the run finished before it was killed"

    rerun = trainer_testing.run_class_jax(train_args(model_dir), subprocess_env, tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    resumed_from = int(re.search(r"Resuming from .* step (\d+)", rerun.stdout).group(1))
    assert 1 <= resumed_from <= reached, (kill_at, reached, resumed_from)

    final, step = param_sources.read_run_params_to_host(model_dir, None)
    expected, expected_step = param_sources.read_run_params_to_host(reference_run, None)
    assert step == expected_step == TOTAL_STEPS
    for name in expected:  # bit for bit: same batches, same per-step dropout keys, same compiled step
        np.testing.assert_array_equal(final[name], expected[name], err_msg=name)
    # Every step after the resume point saw the same batch and state as the uninterrupted run.
    reference_losses = trainer_testing.loss_trajectory(reference_run)
    records = trainer_testing.read_metrics(model_dir)
    # Each step logged once: the records the killed run wrote past its checkpoint were dropped on resuming.
    assert [record["step"] for record in records] == list(range(1, TOTAL_STEPS + 1))
    for record in records[resumed_from:]:
        assert abs(record["loss"] - reference_losses[record["step"]]) <= 1e-6


def test_sigterm_saves_a_complete_checkpoint_at_the_current_step(tmp_path, subprocess_env):
    model_dir = tmp_path / "run"
    process, log = _start(train_args(model_dir), subprocess_env, tmp_path, tmp_path / "terminated.log")
    try:
        _wait_for_step(model_dir, 3, process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        log.close()
        if process.poll() is None:
            process.kill()
    output = (tmp_path / "terminated.log").read_text()
    stopped_at = int(re.search(r"Stopped at step (\d+) after SIGTERM", output).group(1))
    assert 3 <= stopped_at < TOTAL_STEPS
    assert max(trainer_testing.loss_trajectory(model_dir)) == stopped_at
    checkpointer = checkpoints.TrainCheckpointer(model_dir, read_only=True)
    assert checkpointer.latest_step() == stopped_at
    assert checkpointer.read_meta(stopped_at)["data"]["batches_consumed"] == stopped_at
    checkpointer.close()
    params, step = param_sources.read_run_params_to_host(model_dir, stopped_at)
    assert step == stopped_at and all(np.all(np.isfinite(v)) for v in params.values())


def test_operative_config_is_written_to_the_model_dir(reference_run):
    operative = (reference_run / "operative_config.gin").read_text()
    assert "train_script.train.total_steps = %TRAIN_STEPS" in operative
    assert f"TRAIN_STEPS = {TOTAL_STEPS}" in operative
    assert "partitioning.Partitioner.mesh_shape = (-1, 1, 1)" in operative
    assert (reference_run / "config.gin").read_text().startswith("from __gin__ import dynamic_registration")


def test_bad_gin_input_is_a_one_line_user_error(tmp_path, subprocess_env):
    missing = trainer_testing.run_class_jax(["train", "--gin_file=no/such/file.gin"], subprocess_env, tmp_path)
    assert missing.returncode == 2
    assert "class-jax train: error: gin configuration" in missing.stderr and "no/such/file.gin" in missing.stderr
    unknown = trainer_testing.run_class_jax(
        ["train", f"--gin_file={trainer_testing.TINY_TRAIN_GIN}", "--gin.train_script.train.no_such_arg=1"],
        subprocess_env, tmp_path)
    assert unknown.returncode == 2 and "no_such_arg" in unknown.stderr
