"""Two processes on one machine (CPU devices, gloo collectives, a hybrid DCN x ICI mesh) train like one process,
also across a SIGTERM and a restart.

The processes are started by launch/local.sh, the same script users run.
"""

import re
import signal
import subprocess
import sys
import time

import numpy as np

from class_jax.trainer import param_sources
import trainer_testing

LOCAL_SH = trainer_testing.REPO_ROOT / "launch" / "local.sh"


def test_two_processes_with_gloo_match_one_process_across_a_restart(reference_run, tmp_path, subprocess_env):
    model_dir = tmp_path / "run"
    # Hosts as DCN granules: data parallel across the 2 processes, FSDP over each one's 4 devices. The processes
    # agree on stopping at even steps.
    args = trainer_testing.tiny_train_args(model_dir, "--gin_file=sharding/multihost_gpu.gin",
                                           "--gin.train_script.train.stop_check_period=2")
    command = ["bash", str(LOCAL_SH), "--processes", "2", "--cpu_devices", "4", *args]
    env = dict(subprocess_env, PYTHON=sys.executable, LOG_DIR=str(tmp_path))

    # First run (slowed by the pause hook) until step 3, then SIGTERM to the launcher, which forwards it.
    launcher = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not ((model_dir / "metrics.jsonl").exists() and max(trainer_testing.loss_trajectory(model_dir)) >= 3):
            assert launcher.poll() is None and time.time() < deadline, _logs(tmp_path)
            time.sleep(0.05)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=120) == 0, _logs(tmp_path)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    first = _logs(tmp_path)
    assert "Joined a job of 2 processes as process 0 (4 local / 8 global devices)" in first
    assert "as process 1 (4 local / 8 global devices)" in first
    assert "Mesh {'data': 2, 'fsdp': 4, 'model': 1}" in first
    stopped = [int(s) for s in re.findall(r"Stopped at step (\d+) after SIGTERM", first)]
    assert len(stopped) == 2 and stopped[0] == stopped[1] and stopped[0] % 2 == 0 and stopped[0] < 12, stopped

    # Second run, no pauses: both processes restore their shards and finish.
    done = subprocess.run(command + ["--gin.train_script.train.hooks=[]"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, _logs(tmp_path)
    assert f"Resuming from {model_dir}/checkpoints step {stopped[0]}" in _logs(tmp_path)

    two = trainer_testing.loss_trajectory(model_dir)
    one = trainer_testing.loss_trajectory(reference_run)
    assert sorted(two) == sorted(one) == list(range(1, trainer_testing.TINY_TRAIN_STEPS + 1))
    np.testing.assert_allclose([two[s] for s in sorted(one)], [one[s] for s in sorted(one)], rtol=0, atol=1e-5)
    # The checkpoint written by both processes (each its own shards) holds the same parameters.
    final, _ = param_sources.read_run_params_to_host(model_dir, None)
    expected, _ = param_sources.read_run_params_to_host(reference_run, None)
    for name in expected:
        np.testing.assert_allclose(final[name], expected[name], rtol=0, atol=1e-5, err_msg=name)


def _logs(directory) -> str:
    return "\n".join((directory / f"process_{i}.log").read_text() for i in range(2)
                     if (directory / f"process_{i}.log").exists())
