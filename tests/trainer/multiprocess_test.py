"""Two processes on one machine (CPU devices, gloo collectives, a hybrid DCN x ICI mesh) train like one process.

The processes are started by launch/local.sh, the same script users run.
"""

import subprocess
import sys

import numpy as np

from class_jax.trainer import param_sources
import trainer_testing

LOCAL_SH = trainer_testing.REPO_ROOT / "launch" / "local.sh"


def test_two_processes_with_gloo_match_one_process(reference_run, tmp_path, subprocess_env):
    model_dir = tmp_path / "run"
    # Hosts as DCN granules: data parallel across the 2 processes, FSDP over each one's 4 devices.
    args = trainer_testing.tiny_train_args(model_dir, "--gin.train_script.train.hooks=[]",
                                           "--gin_file=sharding/multihost_gpu.gin")
    env = dict(subprocess_env, PYTHON=sys.executable, LOG_DIR=str(tmp_path))
    done = subprocess.run(["bash", str(LOCAL_SH), "--processes", "2", "--cpu_devices", "4", *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=400)
    outputs = [(tmp_path / f"process_{i}.log").read_text() for i in range(2)]
    assert done.returncode == 0, "\n\n".join(o[-3000:] for o in outputs) + done.stderr
    assert "Joined a job of 2 processes as process 0 (4 local / 8 global devices)" in outputs[0]
    assert "as process 1 (4 local / 8 global devices)" in outputs[1]
    assert "Mesh {'data': 2, 'fsdp': 4, 'model': 1}" in outputs[0]

    two = trainer_testing.loss_trajectory(model_dir)
    one = trainer_testing.loss_trajectory(reference_run)
    assert sorted(two) == sorted(one) == list(range(1, trainer_testing.TINY_TRAIN_STEPS + 1))
    np.testing.assert_allclose([two[s] for s in sorted(one)], [one[s] for s in sorted(one)], rtol=0, atol=1e-5)
    # The checkpoint written by both processes (each its own shards) holds the same parameters.
    final, _ = param_sources.read_run_params_to_host(model_dir, None)
    expected, _ = param_sources.read_run_params_to_host(reference_run, None)
    for name in expected:
        np.testing.assert_allclose(final[name], expected[name], rtol=0, atol=1e-5, err_msg=name)
