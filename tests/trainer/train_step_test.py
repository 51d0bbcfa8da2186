"""The train step: gradient accumulation equals the full batch; dropout keys per step; optimizers and schedules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from class_jax.trainer import optimizers
from class_jax.runtime import partitioning
from class_jax.trainer import train_state
from class_jax.trainer import train_step
import trainer_test_model as tm

GLOBAL_BATCH = 16


def _batch(equal_target_lengths: bool) -> dict[str, np.ndarray]:
    batch = tm.synthetic_global_batch(3, GLOBAL_BATCH)
    if equal_target_lengths:
        batch["decoder_loss_weights"] = np.ones_like(batch["decoder_loss_weights"])
        batch["decoder_target_tokens"] = np.maximum(batch["decoder_target_tokens"], 2)
    else:
        assert len(set(batch["decoder_loss_weights"].sum(1).tolist())) > 1, "want ragged targets"
    return batch


class _OneStep:
    """One compiled plain-SGD step (lr 1: new params = params - grads) of the tiny model on a fixed batch."""

    def __init__(self, num_microbatches: int, weighting: str, equal_target_lengths: bool, dropout_rate: float = 0.0):
        self.partitioner = partitioning.Partitioner((-1, 1, 1))
        self.model = tm.TinyEncDecModel(tm.TinyConfig(dropout_rate=dropout_rate))
        self.optimizer = optimizers.Optimizer(optax.sgd(1.0), optax.constant_schedule(1.0))
        self.batch = _batch(equal_target_lengths)
        spec = {name: (value.shape, value.dtype) for name, value in self.batch.items()}
        self.layout = train_state.build_state_layout(self.model, self.optimizer.transform, self.partitioner,
                                                     {k: s for k, (s, _) in spec.items()})
        step_fn = train_step.make_train_step(self.model, self.optimizer, num_microbatches, weighting)
        self.compiled = train_step.compile_train_step(step_fn, self.partitioner, self.layout, spec,
                                                      jax.random.PRNGKey(0))

    def __call__(self, rng_seed: int = 0):
        """(params after the step, metrics), from a fresh copy of the same initial state."""
        state = train_state.init_train_state(self.model, self.optimizer.transform, self.partitioner, self.layout,
                                             jax.random.key(0))
        state, metrics = self.compiled(state, self.partitioner.shard_batch(self.batch, GLOBAL_BATCH),
                                       jax.random.PRNGKey(rng_seed))
        return jax.device_get(state.params), jax.device_get(metrics)


@functools.lru_cache(maxsize=None)
def _one_step(num_microbatches: int, weighting: str, equal_target_lengths: bool, dropout_rate: float = 0.0):
    return _OneStep(num_microbatches, weighting, equal_target_lengths, dropout_rate)


def _max_abs_diff(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_microbatched_step_equals_full_batch_on_ragged_targets():
    batch = _batch(equal_target_lengths=False)
    full_params, full_metrics = _one_step(1, "num_tokens", False)()
    micro_params, micro_metrics = _one_step(4, "num_tokens", False)()
    assert _max_abs_diff(full_params, micro_params) <= 1e-6
    for name in ("loss", "loss/ce", "loss/z", "accuracy", "grad_norm"):
        assert abs(full_metrics[name] - micro_metrics[name]) <= 1e-6, name
    assert micro_metrics["num_tokens"] == full_metrics["num_tokens"] == batch["decoder_loss_weights"].sum()
    # The update really moved the parameters (a vacuous comparison would pass with zero gradients).
    assert full_metrics["grad_norm"] > 1e-2


@pytest.mark.slow
def test_uniform_weighting_is_exact_when_microbatches_hold_equal_token_counts():
    full_params, full_metrics = _one_step(1, "uniform", True)()
    micro_params, micro_metrics = _one_step(2, "uniform", True)()
    assert _max_abs_diff(full_params, micro_params) <= 1e-6
    assert abs(full_metrics["loss"] - micro_metrics["loss"]) <= 1e-6


@pytest.mark.slow
def test_dropout_keys_come_from_the_step_rng():
    step = _one_step(1, "num_tokens", False, dropout_rate=0.3)
    _, first = step(rng_seed=0)
    _, again = step(rng_seed=0)
    _, other = step(rng_seed=1)
    assert first["loss"] == again["loss"]
    assert first["loss"] != other["loss"]


def test_rejects_batches_that_do_not_split_into_microbatches():
    with pytest.raises(ValueError, match="microbatches"):
        _OneStep(3, "num_tokens", equal_target_lengths=False)


def test_linear_warmup_then_linear_decay():
    schedule = optimizers.learning_rate_schedule(1.0, total_steps=10, warmup_steps=2, decay="linear")
    values = [float(schedule(step)) for step in range(11)]
    np.testing.assert_allclose(values[:3], [0.0, 0.5, 1.0], atol=1e-7)
    np.testing.assert_allclose(values[6], 0.5, atol=1e-7)
    np.testing.assert_allclose(values[10], 0.0, atol=1e-7)


def test_rsqrt_decay_is_continuous_after_warmup():
    schedule = optimizers.learning_rate_schedule(1.0, total_steps=1000, warmup_steps=100, decay="rsqrt")
    np.testing.assert_allclose(float(schedule(100)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(400)), 0.5, rtol=1e-6)


def test_cosine_decay_reaches_end_value():
    schedule = optimizers.learning_rate_schedule(2.0, total_steps=20, warmup_steps=0, decay="cosine",
                                                 end_value=0.2)
    np.testing.assert_allclose(float(schedule(0)), 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(10)), 1.1, rtol=1e-5)
    np.testing.assert_allclose(float(schedule(20)), 0.2, rtol=1e-5)


def test_schedule_rejects_unknown_decay():
    with pytest.raises(ValueError, match="decay"):
        optimizers.learning_rate_schedule(1.0, total_steps=10, decay="exponential")


def test_weight_decay_mask_skips_norms_biases_and_vectors():
    params = {"encoder": {"layers_0": {"mlp": {"wi": {"kernel": jnp.ones((4, 8))}},
                                       "pre_attention_layer_norm": {"scale": jnp.ones((4,))}}},
              "decoder": {"final_layer_norm_matrix": jnp.ones((2, 2)), "bias": jnp.ones((2, 2))}}
    mask = optimizers.weight_decay_mask()(params)
    assert mask["encoder"]["layers_0"]["mlp"]["wi"]["kernel"]
    assert not mask["encoder"]["layers_0"]["pre_attention_layer_norm"]["scale"]
    assert not mask["decoder"]["final_layer_norm_matrix"]
    assert not mask["decoder"]["bias"]


def test_adamw_decays_only_masked_parameters():
    optimizer = optimizers.adamw(0.1, weight_decay=0.5, grad_clip_norm=None)
    params = {"kernel": jnp.full((2, 2), 2.0), "scale": jnp.full((2,), 2.0)}
    zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = optimizer.transform.update(zero_grads, optimizer.transform.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * 2.0, rtol=1e-6)
    np.testing.assert_allclose(updates["scale"], 0.0)


@pytest.mark.parametrize("make", [optimizers.adamw, optimizers.adafactor])
def test_global_norm_clipping_comes_first(make):
    # Adam and Adafactor are nearly scale-invariant per step, so compare two steps: clipping inside the optimizer
    # must equal clipping the gradients by hand before an unclipped one, and differ from not clipping.
    params = {"kernel": jnp.linspace(-1.0, 1.0, 256 * 256).reshape(256, 256)}
    grads = [{"kernel": jnp.full((256, 256), 30.0)}, {"kernel": jnp.linspace(0.0, 1e-3, 256 * 256).reshape(256, 256)}]

    def run(optimizer, gradient_list):
        state = optimizer.transform.init(params)
        for g in gradient_list:
            updates, state = optimizer.transform.update(g, state, params)
        return np.asarray(updates["kernel"])

    clip = optax.clip_by_global_norm(1.0)
    by_hand = [clip.update(g, optax.EmptyState())[0] for g in grads]
    clipped_inside = run(make(1e-2, grad_clip_norm=1.0), grads)
    np.testing.assert_allclose(clipped_inside, run(make(1e-2, grad_clip_norm=None), by_hand), rtol=1e-5, atol=1e-9)
    assert not np.allclose(clipped_inside, run(make(1e-2, grad_clip_norm=None), grads), rtol=1e-3)


@pytest.mark.parametrize("grad_clip_norm, mu_dtype", [(1.0, None), (None, None), (0.5, "bfloat16")])
def test_fused_adamw_equals_the_optax_chain_and_shares_its_state(grad_clip_norm, mu_dtype):
    schedule = optimizers.learning_rate_schedule(1e-2, total_steps=10, warmup_steps=2)
    make = functools.partial(optimizers.adamw, schedule, weight_decay=0.1, grad_clip_norm=grad_clip_norm,
                             mu_dtype=mu_dtype)
    fused, chain = make(fused=True).transform, make(fused=False).transform
    rng = np.random.default_rng(0)
    params = {"encoder": {"kernel": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
                          "layer_norm": {"scale": jnp.ones((8,), jnp.float32)}},
              "embedding": jnp.asarray(rng.normal(size=(32, 8)), jnp.float32)}
    fused_state, chain_state = fused.init(params), chain.init(params)
    assert jax.tree.structure(fused_state) == jax.tree.structure(chain_state)  # checkpoints interchange
    fused_params, chain_params = params, params
    for step in range(4):  # warm-up, clipping on the large gradients, bias corrections changing
        grads = jax.tree.map(lambda p, s=step: jnp.asarray(rng.normal(size=p.shape) * (5.0 if s % 2 else 0.01),
                                                           jnp.float32), params)
        updates, fused_state = jax.jit(fused.update)(grads, fused_state, fused_params)
        fused_params = optax.apply_updates(fused_params, updates)
        updates, chain_state = jax.jit(chain.update)(grads, chain_state, chain_params)
        chain_params = optax.apply_updates(chain_params, updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7), fused_params, chain_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                                         rtol=1e-5, atol=1e-8), fused_state, chain_state)
    assert jax.tree.map(lambda a: a.dtype, fused_state) == jax.tree.map(lambda a: a.dtype, chain_state)
    assert not np.allclose(fused_params["encoder"]["kernel"], params["encoder"]["kernel"])
