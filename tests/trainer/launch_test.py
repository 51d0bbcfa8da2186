"""The launch scripts: valid shell, and the TPU launcher passes gin overrides through the remote shell intact."""

import shlex
import subprocess

import pytest

import trainer_testing

LAUNCH = trainer_testing.REPO_ROOT / "launch"
SCRIPTS = sorted(p for p in LAUNCH.iterdir() if p.suffix in (".sh", ".sbatch"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_is_valid_bash(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_tpu_launcher_runs_the_same_command_on_every_node_with_arguments_intact():
    command = ["train", "--gin_file=stages/clr_pt.gin", "--gin.MODEL_DIR='gs://bucket/run dir'",
               "--gin.TASK_FEATURE_LENGTHS={'query_tokens': 50}"]
    done = subprocess.run(["bash", str(LAUNCH / "tpu_vm.sh"), "--tpu", "slice-0,slice-1", "--zone", "us-central2-b",
                           "--env", "XLA_FLAGS=--xla_tpu_enable_latency_hiding_scheduler=true", "--dry_run", "--",
                           *command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    for node, line in zip(("slice-0", "slice-1"), lines):
        argv = shlex.split(line)
        assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", node]
        assert "--worker=all" in argv
        remote = argv[argv.index("--command") + 1]
        remote_argv = shlex.split(remote)  # what the worker's shell makes of it
        assert remote_argv[remote_argv.index("class_jax.cli") + 1:] == command
        assert "XLA_FLAGS=--xla_tpu_enable_latency_hiding_scheduler=true" in remote_argv


def test_local_launcher_requires_a_command():
    done = subprocess.run(["bash", str(LAUNCH / "local.sh")], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr
