"""The training loop: hooks and data switches survive resumption exactly; SIGTERM checkpoints the current step."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from class_jax.trainer import checkpointer as checkpoints
from class_jax.trainer import data
from class_jax.trainer import hooks
from class_jax.runtime import partitioning
import trainer_test_model as tm
import trainer_testing


@pytest.fixture(scope="module")
def partitioner():
    return partitioning.Partitioner((-1, 1, 1))


def _seeded_source(seed: int) -> data.IteratorDataSource:
    return data.IteratorDataSource(lambda shard: tm.synthetic_host_iterator(shard, seed=seed), 8)


class SwitchAtStepFour:
    """A retrieval-refresh stand-in: at step 4 it switches to other data and records that in model_dir."""

    def __init__(self):
        self.calls = []

    def __call__(self, ctx: hooks.HookContext):
        self.calls.append((ctx.step, ctx.resuming))
        marker = ctx.model_dir / "switch.json"
        if ctx.resuming:
            if marker.exists():
                return hooks.DataSwitch(_seeded_source(1), json.loads(marker.read_text())["start_step"])
            return None
        assert np.isfinite(float(jax.numpy.sum(ctx.params["qkv"])))  # the hook sees the live parameters
        if ctx.step == 4:
            marker.write_text(json.dumps({"start_step": 4}))
            return hooks.DataSwitch(_seeded_source(1), 4)
        return None


def _params_equal(a, b, atol):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


def test_hook_data_switch_is_reproduced_after_a_restart(tmp_path, partitioner):
    uninterrupted_hook = SwitchAtStepFour()
    uninterrupted = trainer_testing.train_tiny(
        tmp_path / "straight", partitioner, total_steps=7,
        hooks=[hooks.PeriodicHook(uninterrupted_hook, every_steps=2, name="switch")])
    assert uninterrupted_hook.calls == [(0, False), (2, False), (4, False), (6, False)]

    first_hook, second_hook = SwitchAtStepFour(), SwitchAtStepFour()
    trainer_testing.train_tiny(tmp_path / "restarted", partitioner, total_steps=5,
                               hooks=[hooks.PeriodicHook(first_hook, every_steps=2)])
    resumed = trainer_testing.train_tiny(tmp_path / "restarted", partitioner, total_steps=7,
                                         hooks=[hooks.PeriodicHook(second_hook, every_steps=2)])
    # Step 5 is not a hook step: the hook re-establishes its switch; at step 6 it runs normally.
    assert second_hook.calls == [(5, True), (6, False)]
    _params_equal(resumed.state.params, uninterrupted.state.params, atol=1e-6)
    # Rerunning a finished run trains nothing and leaves its records alone.
    records = trainer_testing.read_metrics(tmp_path / "restarted")
    again = trainer_testing.train_tiny(tmp_path / "restarted", partitioner, total_steps=7)
    assert again.step == 7 and trainer_testing.read_metrics(tmp_path / "restarted") == records
    _params_equal(again.state.params, uninterrupted.state.params, atol=1e-6)

    # The switch really changed the data: without the hook, training agrees up to step 4 and then differs.
    plain = trainer_testing.train_tiny(tmp_path / "plain", partitioner, total_steps=5)
    straight, plain_losses = (trainer_testing.loss_trajectory(tmp_path / d) for d in ("straight", "plain"))
    assert all(abs(straight[s] - plain_losses[s]) <= 1e-6 for s in (1, 2, 3, 4))
    assert abs(straight[5] - plain_losses[5]) > 1e-4
    assert plain.step == 5


def test_sigterm_checkpoints_the_current_step_and_stops(tmp_path, partitioner):
    def terminate(ctx):
        os.kill(os.getpid(), signal.SIGTERM)

    handler_before = signal.getsignal(signal.SIGTERM)
    result = trainer_testing.train_tiny(
        tmp_path / "run", partitioner, total_steps=10,
        hooks=[hooks.PeriodicHook(terminate, every_steps=3, run_at_start=False)])
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert result.preempted and result.step == 4  # the signal came before batch 3; stopped after it
    checkpointer = checkpoints.TrainCheckpointer(tmp_path / "run")
    assert checkpointer.latest_step() == 4
    meta = checkpointer.read_meta(4)
    checkpointer.close()
    assert meta == {"step": 4, "data": {"source_start_step": 0, "batches_consumed": 4}}
    assert max(trainer_testing.loss_trajectory(tmp_path / "run")) == 4


def test_metrics_records_hold_loss_parts_and_throughput(tmp_path, partitioner):
    trainer_testing.train_tiny(tmp_path / "run", partitioner, total_steps=2)
    record = trainer_testing.read_metrics(tmp_path / "run")[-1]
    for key in ("loss", "loss/ce", "loss/z", "accuracy", "grad_norm", "learning_rate", "param_norm", "num_tokens",
                "perf/step_time_s", "perf/tokens_per_s", "perf/examples_per_s", "perf/mfu"):
        assert key in record, key
    assert record["step"] == 2
    assert record["loss"] == pytest.approx(record["loss/ce"] + record["loss/z"], rel=1e-6)
    # MFU = FLOPs / (step time x peak x devices) with the configured 1e9 FLOP/s peak.
    flops = tm.TinyEncDecModel().flops_per_step({"decoder_input_tokens": (8, 6)})
    assert record["perf/mfu"] == pytest.approx(flops / (record["perf/step_time_s"] * 1e9 * 8), rel=1e-6)
    assert record["perf/tokens_per_s"] == pytest.approx(8 * (8 + 6) / record["perf/step_time_s"], rel=1e-6)
