"""Two processes (4 CPU devices each, gloo collectives) build the same index and retrieve the same passages as one.

The corpus split is uneven on purpose (process 0 encodes 2 shards, process 1 three), so the process that finishes
first must keep feeding empty batches until the other is done.
"""

import json
import os
import socket
import subprocess

import numpy as np
import pytest

from class_jax import cli
from class_jax.retrieval.index_reader import IndexReader
import retrieval_fixtures as fx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_two_processes(args: list[str], tmp_path, name: str) -> list[str]:
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    processes, logs = [], []
    for process_id in range(2):
        log = open(tmp_path / f"{name}_{process_id}.log", "w")  # pylint: disable=consider-using-with
        command = fx.class_jax_command(*args, f"--coordinator_address=localhost:{port}", "--num_processes=2",
                                       f"--process_id={process_id}")
        processes.append(subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))
        logs.append(log)
    try:
        codes = [p.wait(timeout=600) for p in processes]
    finally:
        for p, log in zip(processes, logs):
            if p.poll() is None:
                p.kill()
            log.close()
    outputs = [(tmp_path / f"{name}_{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    return outputs


@pytest.mark.slow
def test_two_process_index_and_retrieve_match_one_process(checkpoint, corpus, tmp_path):
    queries = tmp_path / "queries.jsonl"
    fx.write_queries(queries)
    common = ["--checkpoint", str(checkpoint), "--no_progress"]
    index_args = ["index", "--corpus", str(corpus[0]), "--batch_size", "8", "--shard_size", "5", "--dtype", "float32"]
    assert cli.main([*index_args, *common, "--out", str(tmp_path / "one")]) == 0
    outputs = _run_two_processes([*index_args, *common, "--out", str(tmp_path / "two")], tmp_path, "index")
    assert "this process encodes 2 shards (10 passages) in 5 steps" in outputs[0]
    assert "this process encodes 3 shards (13 passages) in 5 steps" in outputs[1]

    one, two = IndexReader(tmp_path / "one"), IndexReader(tmp_path / "two", verify_checksums=True)
    assert [two.ids()[i] for i in range(23)] == [one.ids()[i] for i in range(23)]
    np.testing.assert_allclose(two.read_rows("vectors", 0, 23), one.read_rows("vectors", 0, 23),
                               rtol=1e-5, atol=1e-6)

    retrieve_args = ["retrieve", "--checkpoint", str(checkpoint), "--queries", str(queries), "--k", "5",
                     "--backend", "device", "--index", str(tmp_path / "one")]
    assert cli.main([*retrieve_args, "--out", str(tmp_path / "one.json")]) == 0
    _run_two_processes([*retrieve_args, "--out", str(tmp_path / "two.json")], tmp_path, "retrieve")
    assert json.loads((tmp_path / "two.json").read_text()) == json.loads((tmp_path / "one.json").read_text())
