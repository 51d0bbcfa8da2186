"""The pure training step, with gradient accumulation over microbatches, and its one-time compilation.

`train_step(state, batch, rng) -> (state, metrics)`: dropout keys are `fold_in(fold_in(rng, step), microbatch)`,
so a step is a pure function of its inputs and a resumed run repeats the uninterrupted one exactly.

Microbatching. Microbatch m holds rows m, m + M, ... of the global batch (runtime/microbatches.py: each device
keeps its own rows in every microbatch). Gradients and metrics are accumulated in `lax.fori_loop` and combined
with weights:
  * "num_tokens": microbatch m weighs n_m / sum(n) where n_m is the model's "num_tokens" metric. For a loss that
    is a mean over target tokens (cross-entropy) this is exactly the full-batch gradient whatever the padding.
  * "uniform": every microbatch weighs 1 / M; exact for losses that are means over examples.
Per-query terms of a mixed loss (CLASS's KL) are weighted like the tokens under "num_tokens"; use "uniform" when
those dominate. A model with a term over the whole batch (stage 1's in-batch scores: `model.grad_cache_parts()` is
not None) is accumulated by GradCache instead (grad_cache.py), so its loss and gradients do not depend on M.

Stage 1 with a neural teacher: `train_step(state, batch, rng, teacher_params)`. The frozen teacher
(models/teacher.py) fills in the batch's teacher_scores over the whole global batch and its decoder distribution
before the student's loss; its parameters are an argument of the step, not part of the state (no optimizer slots,
not checkpointed).
"""

from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import optax

from class_jax.models import teacher as teacher_lib
from class_jax.models.base import BaseModel
from class_jax.runtime import microbatches as microbatch_layout
from class_jax.runtime import partitioning
from class_jax.trainer import grad_cache
from class_jax.trainer.optimizers import Optimizer
from class_jax.trainer.train_state import StateLayout, TrainState

PyTree = Any
Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
TrainStepFn = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]

MICROBATCH_WEIGHTINGS = ("num_tokens", "uniform")
NUM_TOKENS = "num_tokens"


def _combine(weighted_sum: Metrics, total_weight: jax.Array, token_total: jax.Array | None) -> Metrics:
    metrics = {name: value / total_weight for name, value in weighted_sum.items()}
    if token_total is not None:
        metrics[NUM_TOKENS] = token_total  # a count, summed rather than averaged
    return metrics


def _value_and_grads(model: BaseModel, params: PyTree, batch: Batch,
                     dropout_rng: Optional[jax.Array]) -> tuple[PyTree, Metrics]:
    (loss, metrics), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, dropout_rng)
    return grads, {**metrics, "loss": loss}


def _accumulated(model: BaseModel, params: PyTree, batch: Batch, step_rng: Optional[jax.Array],
                 num_microbatches: int, microbatch_weighting: str) -> tuple[PyTree, Metrics]:
    """Plain gradient accumulation over microbatches, combined as the module docstring says."""
    microbatches = microbatch_layout.split(batch, num_microbatches)

    def microbatch_rng(m: jax.Array) -> Optional[jax.Array]:
        return None if step_rng is None else jax.random.fold_in(step_rng, m)

    metric_shapes = jax.eval_shape(
        lambda: _value_and_grads(model, params, microbatch_layout.take(microbatches, 0), step_rng)[1])
    use_tokens = microbatch_weighting == NUM_TOKENS and NUM_TOKENS in metric_shapes
    zeros_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
    zeros_metrics = {name: jnp.zeros(s.shape, jnp.float32) for name, s in metric_shapes.items()}
    init = (zeros_grads, zeros_metrics, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))

    def body(m: jax.Array, carry: tuple) -> tuple:
        grad_sum, metric_sum, weight_sum, token_sum = carry
        grads, metrics = _value_and_grads(model, params, microbatch_layout.take(microbatches, m), microbatch_rng(m))
        tokens = metrics[NUM_TOKENS].astype(jnp.float32) if NUM_TOKENS in metrics else jnp.float32(0)
        weight = tokens if use_tokens else jnp.float32(1)
        grad_sum = jax.tree_util.tree_map(lambda acc, g: acc + weight * g, grad_sum, grads)
        metric_sum = {name: metric_sum[name] + weight * metrics[name].astype(jnp.float32) for name in metric_sum}
        return grad_sum, metric_sum, weight_sum + weight, token_sum + tokens

    grad_sum, metric_sum, weight_sum, token_sum = jax.lax.fori_loop(0, num_microbatches, body, init)
    weight_sum = jnp.maximum(weight_sum, 1e-12)
    grads = jax.tree_util.tree_map(lambda g: g / weight_sum, grad_sum)
    return grads, _combine(metric_sum, weight_sum, token_sum if NUM_TOKENS in metric_shapes else None)


def loss_and_grads(model: BaseModel, params: PyTree, batch: Batch, step_rng: Optional[jax.Array] = None, *,
                   num_microbatches: int = 1, microbatch_weighting: str = "num_tokens",
                   teacher: Optional[BaseModel] = None, teacher_params: Optional[PyTree] = None
                   ) -> tuple[PyTree, Metrics]:
    """The loss terms and gradients of one global batch, exactly as the train step computes them.

    The step's whole computation before the optimizer: the teacher's signals (stage 1 with a neural teacher), then
    one pass, GradCache (a model with `grad_cache_parts()`, M > 1) or plain accumulation.

    Args:
      model: the model being trained.
      params: its parameters.
      batch: the global batch (model features; stage 1 with a teacher also the teacher_* token features).
      step_rng: the step's dropout key (None: no dropout).
      num_microbatches: M.
      microbatch_weighting: for plain accumulation (see the module docstring).
      teacher: stage 1's frozen neural teacher model, or None.
      teacher_params: its parameters.

    Returns:
      (gradients, metrics): every loss term under its own name ("loss/..."), "loss", "accuracy", "num_tokens".
    """
    if teacher is not None:
        batch = {**batch, **teacher_lib.teacher_signals(teacher, teacher_params, batch, num_microbatches)}
    if num_microbatches == 1:
        return _value_and_grads(model, params, batch, step_rng)
    parts = model.grad_cache_parts()
    if parts is not None:
        return grad_cache.loss_and_grads(parts, params, batch, step_rng, num_microbatches)
    return _accumulated(model, params, batch, step_rng, num_microbatches, microbatch_weighting)


def make_train_step(model: BaseModel, optimizer: Optimizer, num_microbatches: int = 1,
                    microbatch_weighting: str = "num_tokens", teacher: Optional[BaseModel] = None) -> TrainStepFn:
    """Builds the pure train step.

    Args:
      model: the model (its `loss_fn` gives the loss and metrics).
      optimizer: transformation and learning-rate schedule.
      num_microbatches: gradient-accumulation steps per batch (1: none).
      microbatch_weighting: "num_tokens" or "uniform" (see the module docstring; not used by GradCache).
      teacher: stage 1's frozen neural teacher model (its parameters are the step's fourth argument).

    Returns:
      train_step(state, batch, rng[, teacher_params]) -> (new state, metrics). Metrics hold the model's metrics
      plus "loss", "grad_norm" (before clipping), "learning_rate" and "param_norm".

    Raises:
      ValueError: for an unknown weighting or a non-positive microbatch count.
    """
    if microbatch_weighting not in MICROBATCH_WEIGHTINGS:
        raise ValueError(f"microbatch_weighting={microbatch_weighting!r}: expected one of {MICROBATCH_WEIGHTINGS}")
    if num_microbatches < 1:
        raise ValueError(f"num_microbatches={num_microbatches} must be >= 1")

    def train_step(state: TrainState, batch: Batch, rng: jax.Array,
                   teacher_params: Optional[PyTree] = None) -> tuple[TrainState, Metrics]:
        grads, metrics = loss_and_grads(model, state.params, batch, jax.random.fold_in(rng, state.step),
                                        num_microbatches=num_microbatches, microbatch_weighting=microbatch_weighting,
                                        teacher=teacher, teacher_params=teacher_params)
        updates, opt_state = optimizer.transform.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {name: jnp.asarray(value, jnp.float32) for name, value in metrics.items()}
        metrics.update(grad_norm=optax.global_norm(grads), param_norm=optax.global_norm(state.params),
                       learning_rate=jnp.asarray(optimizer.learning_rate_fn(state.step), jnp.float32))
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def compile_train_step(train_step: TrainStepFn, partitioner: partitioning.Partitioner, layout: StateLayout,
                       batch_spec: Mapping[str, tuple[tuple[int, ...], Any]], rng: jax.Array,
                       teacher_params: Optional[PyTree] = None) -> jax.stages.Compiled:
    """Jits the step once with explicit shardings and state donation, ahead of time.

    Args:
      train_step: from `make_train_step`.
      partitioner: mesh and rules (active while tracing, for the model's activation constraints).
      layout: the train state's layout.
      batch_spec: feature -> (global shape, dtype).
      rng: the (replicated) base key, for its abstract type.
      teacher_params: the placed teacher parameters (their shapes and shardings), for a step with a teacher.

    Returns:
      The compiled step, callable as compiled(state, batch, rng), or compiled(state, batch, rng, teacher_params).
    """
    batch_shardings = {name: partitioner.batch_sharding(len(shape)) for name, (shape, _) in batch_spec.items()}
    abstract_batch = {name: jax.ShapeDtypeStruct(shape, dtype, sharding=batch_shardings[name])
                      for name, (shape, dtype) in batch_spec.items()}
    abstract_rng = jax.ShapeDtypeStruct(rng.shape, rng.dtype, sharding=partitioner.replicated)
    in_shardings = (layout.shardings, batch_shardings, partitioner.replicated)
    abstract_args = (layout.abstract_state, abstract_batch, abstract_rng)
    if teacher_params is not None:
        in_shardings += (jax.tree_util.tree_map(lambda x: x.sharding, teacher_params),)
        abstract_args += (jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), teacher_params),)
    jitted = jax.jit(train_step, in_shardings=in_shardings, out_shardings=(layout.shardings, partitioner.replicated),
                     donate_argnums=(0,), compiler_options=partitioner.training_compiler_options())
    with partitioner.activate():
        return jitted.lower(*abstract_args).compile()


def compiled_flops(compiled: jax.stages.Compiled) -> float:
    """FLOPs of one call from XLA's cost analysis (0 when the backend gives none), an MFU fallback."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # pylint: disable=broad-except  (backends without cost analysis raise various errors)
        return 0.0
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))
