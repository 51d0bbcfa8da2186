"""The per-device memory estimate: close to XLA's own buffer assignment, refuses what cannot fit, dry run."""

import jax
import numpy as np
import pytest

from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig
from class_jax.runtime.errors import UserError
from class_jax.runtime.partitioning import Partitioner
from class_jax.trainer import data as data_lib
from class_jax.trainer import memory_estimate
from class_jax.trainer import optimizers
from class_jax.trainer import train as train_lib
from class_jax.trainer import train_state
from class_jax.trainer import train_step

# A tiny mT5 with a small vocabulary, so that activations (not the embedding) are most of the step's memory.
TINY = dict(vocab_size=512, emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128, num_encoder_layers=2,
            num_decoder_layers=2)


def _spec(batch: int, k: int, query_len: int, passage_len: int, answer_len: int) -> dict:
    return {"query_tokens": ((batch, query_len), np.int32), "passage_tokens": ((batch, k, passage_len), np.int32),
            "decoder_input_tokens": ((batch, answer_len), np.int32),
            "decoder_target_tokens": ((batch, answer_len), np.int32),
            "decoder_loss_weights": ((batch, answer_len), np.int32)}


def _layout(model, spec):
    optimizer = optimizers.adamw(1e-4, weight_decay=0.01, grad_clip_norm=1.0)
    partitioner = Partitioner()
    shapes = {name: shape for name, (shape, _) in spec.items()}
    types = {name: dtype for name, (_, dtype) in spec.items()}
    return optimizer, partitioner, shapes, types, train_state.build_state_layout(
        model, optimizer.transform, partitioner, shapes, types)


def test_estimate_is_within_15_percent_of_xla_buffer_assignment():
    model = CLASSModel(ModelConfig(**TINY, dropout_rate=0.1))
    spec = _spec(batch=2 * jax.device_count(), k=8, query_len=16, passage_len=48, answer_len=8)
    optimizer, partitioner, shapes, types, layout = _layout(model, spec)
    compiled = train_step.compile_train_step(train_step.make_train_step(model, optimizer), partitioner, layout, spec,
                                             np.zeros((2,), np.uint32))
    analysis = compiled.memory_analysis()
    # Donated state: outputs alias the arguments, so the step's peak is arguments + temporaries (+ unaliased outputs).
    xla = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes - analysis.alias_size_in_bytes
           + analysis.temp_size_in_bytes)
    estimate = memory_estimate.estimate(model, layout.abstract_state, partitioner, shapes, device_limit=1 << 40,
                                        input_types=types)
    assert estimate.activations > estimate.params  # the comparison is about the activation formula
    assert abs(estimate.total / xla - 1) < 0.15, (estimate.summary(), xla)


def test_state_parts_are_exact_and_microbatches_divide_activations():
    model = CLASSModel(ModelConfig(**TINY))
    spec = _spec(batch=8 * jax.device_count(), k=4, query_len=8, passage_len=24, answer_len=8)
    _, partitioner, shapes, types, layout = _layout(model, spec)
    params = sum(x.size * 4 for x in jax.tree_util.tree_leaves(layout.abstract_state.params))
    one = memory_estimate.estimate(model, layout.abstract_state, partitioner, shapes, 1, 1 << 40, types)
    four = memory_estimate.estimate(model, layout.abstract_state, partitioner, shapes, 4, 1 << 40, types)
    assert one.params == params and one.opt_state >= 2 * params and one.grads == params
    assert four.grads == 2 * params  # the accumulator and one microbatch's gradients
    assert (one.rows_per_device, four.rows_per_device) == (8, 2)
    assert four.activations * 4 == one.activations


def test_remat_and_bfloat16_shrink_the_activations():
    spec = _spec(batch=4, k=8, query_len=16, passage_len=48, answer_len=8)
    shapes = {name: shape for name, (shape, _) in spec.items()}
    sizes = {}
    for dtype in ("float32", "bfloat16"):
        for remat in ("none", "minimal", "full"):
            config = ModelConfig(**TINY, dtype=dtype, remat_policy=remat)
            sizes[dtype, remat] = sum(memory_estimate.activation_bytes_per_row(config, shapes).values())
    assert sizes["float32", "none"] > sizes["float32", "minimal"] > sizes["float32", "full"]
    assert sizes["bfloat16", "full"] < sizes["float32", "full"]


def test_a_configuration_that_cannot_fit_is_refused_naming_the_knobs():
    model = CLASSModel(ModelConfig(**TINY, remat_policy="none"))
    spec = _spec(batch=8 * jax.device_count(), k=4, query_len=8, passage_len=24, answer_len=8)
    _, partitioner, shapes, types, layout = _layout(model, spec)
    with pytest.raises(UserError) as error:
        memory_estimate.check_training_memory(model, layout.abstract_state, partitioner, shapes, 1,
                                              device_limit=1 << 20, input_types=types)
    message = str(error.value)
    assert "\n" not in message and "does not fit the device" in message
    for knob in ("NUM_MICROBATCHES", "REMAT_POLICY", "fsdp", "BATCH_SIZE"):
        assert knob in message
    # Warn-only mode returns the estimate.
    result = memory_estimate.check_training_memory(model, layout.abstract_state, partitioner, shapes, 1,
                                                   device_limit=1 << 20, refuse=False, input_types=types)
    assert not result.fits


def test_device_memory_limit_on_cpu_is_the_host_ram():
    limit, source = memory_estimate.device_memory_limit()
    if jax.default_backend() == "cpu":
        assert source in ("host RAM", "cpu bytes_limit") and limit > 0


def test_dry_run_prints_the_estimate_without_reading_data(tmp_path, capsys):
    model = CLASSModel(ModelConfig(**TINY, dtype="bfloat16", remat_policy="full"))
    lengths = {"query_tokens": 16, "passage_tokens": (8, 48), "targets": 8}
    config = data_lib.DatasetConfig("no_such_task_is_registered", lengths, "train", batch_size=4 * jax.device_count())
    result = train_lib.train(model=model, train_dataset_cfg=config, partitioner=Partitioner(),
                             model_dir=str(tmp_path / "run"), total_steps=10,
                             optimizer=optimizers.adamw(1e-4), dry_run=True)
    assert result.state is None and result.step == 0
    printed = capsys.readouterr().out
    assert "per-device memory estimate" in printed and "4 row(s) per device" in printed
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_training_refuses_a_step_that_cannot_fit_before_reading_data(tmp_path):
    model = CLASSModel(ModelConfig(**TINY))
    lengths = {"query_tokens": 16, "passage_tokens": (8, 48), "targets": 8}
    config = data_lib.DatasetConfig("no_such_task_is_registered", lengths, "train", batch_size=jax.device_count())
    with pytest.raises(UserError, match="does not fit the device"):
        train_lib.train(model=model, train_dataset_cfg=config, partitioner=Partitioner(),
                        model_dir=str(tmp_path / "run"), total_steps=10, optimizer=optimizers.adamw(1e-4),
                        device_memory_bytes=1 << 20)
