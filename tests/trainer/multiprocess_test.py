"""Two processes on one machine (CPU devices, gloo collectives, a hybrid DCN x ICI mesh) train like one process."""

import socket
import subprocess

import numpy as np

from class_jax.trainer import param_sources
import trainer_testing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_with_gloo_match_one_process(reference_run, tmp_path, subprocess_env):
    model_dir = tmp_path / "run"
    port = _free_port()
    env = dict(subprocess_env, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    processes, logs = [], []
    for process_id in range(2):
        log = open(tmp_path / f"process_{process_id}.log", "w")  # pylint: disable=consider-using-with
        # Hosts as DCN granules (data parallel across the 2 processes, FSDP over each one's 4 devices).
        args = trainer_testing.tiny_train_args(model_dir, "--gin.train_script.train.hooks=[]",
                                               "--gin_file=sharding/multihost_gpu.gin",
                                               f"--coordinator_address=localhost:{port}", "--num_processes=2",
                                               f"--process_id={process_id}")
        processes.append(subprocess.Popen(trainer_testing.class_jax_command(*args), env=env, cwd=tmp_path,
                                          stdout=log, stderr=subprocess.STDOUT))
        logs.append(log)
    try:
        codes = [p.wait(timeout=400) for p in processes]
    finally:
        for p, log in zip(processes, logs):
            if p.poll() is None:
                p.kill()
            log.close()
    outputs = [(tmp_path / f"process_{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
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
