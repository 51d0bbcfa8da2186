"""Optimizers (AdamW, Adafactor) and learning-rate schedules, built from optax and configured in gin.

    train_script.train.optimizer = @optimizers.adamw()
    optimizers.adamw.learning_rate = @optimizers.learning_rate_schedule()
    optimizers.learning_rate_schedule:
      peak_value = 1e-4
      warmup_steps = 6400
      decay = 'linear'
      total_steps = %TRAIN_STEPS

Every optimizer clips the global gradient norm first (when `grad_clip_norm` is set) and applies weight decay only to
parameters selected by `weight_decay_mask` (by default: matrices, not norm scales or biases).
"""

import dataclasses
import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from class_jax.trainer import fused_adamw
from class_jax.runtime import config_checks
from class_jax.runtime import tree_paths

PyTree = Any
Schedule = Callable[[jax.Array | int], jax.Array]

DECAYS = ("constant", "linear", "cosine", "rsqrt")
# Parameters never decayed by default: RMSNorm/LayerNorm scales and biases (names as in T5X / HF trees).
DEFAULT_NO_DECAY_PATTERNS = (r"(^|/)scale$", r"(^|/)bias$", r"norm")


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An optax transformation together with its learning-rate schedule (logged each step).

    Attributes:
      transform: the gradient transformation, clipping and weight decay included.
      learning_rate_fn: step -> learning rate.
    """

    transform: optax.GradientTransformation
    learning_rate_fn: Schedule


def learning_rate_schedule(peak_value: float,
                           total_steps: int,
                           warmup_steps: int = 0,
                           decay: str = "linear",
                           end_value: float = 0.0,
                           init_value: float = 0.0) -> Schedule:
    """Linear warm-up from `init_value` to `peak_value`, then a decay.

    Args:
      peak_value: the learning rate reached at the end of warm-up.
      total_steps: training steps; "linear" and "cosine" reach `end_value` here.
      warmup_steps: steps of linear warm-up (0: start at the peak).
      decay: "constant", "linear", "cosine", or "rsqrt" (T5 style: peak * sqrt(warmup / step) after warm-up, i.e.
        continuous at the end of warm-up; with no warm-up it decays from step 1).
      end_value: final value of the linear / cosine decays.
      init_value: value at step 0 of the warm-up.

    Returns:
      The schedule, a function of the (0-based) step.

    Raises:
      config_checks.InvalidValue (a ValueError): a value of the wrong type or range (naming the gin parameter), an
        unknown decay, or a warm-up longer than training.
    """
    fn = learning_rate_schedule
    peak_value = config_checks.number(peak_value, fn, "peak_value", minimum=0.0, exclusive_minimum=True)
    total_steps = config_checks.integer(total_steps, fn, "total_steps", minimum=1)
    warmup_steps = config_checks.integer(warmup_steps, fn, "warmup_steps", minimum=0, maximum=total_steps)
    decay = config_checks.choice(decay, fn, "decay", DECAYS)
    end_value = config_checks.number(end_value, fn, "end_value", minimum=0.0)
    init_value = config_checks.number(init_value, fn, "init_value", minimum=0.0)
    decay_steps = max(total_steps - warmup_steps, 1)
    if decay == "constant":
        after_warmup = optax.constant_schedule(peak_value)
    elif decay == "linear":
        after_warmup = optax.linear_schedule(peak_value, end_value, decay_steps)
    elif decay == "cosine":
        after_warmup = optax.cosine_decay_schedule(peak_value, decay_steps, alpha=end_value / peak_value
                                                   if peak_value else 0.0)
    else:
        offset = max(warmup_steps, 1)

        def after_warmup(count: jax.Array | int) -> jax.Array:
            # `count` restarts at 0 after warm-up (join_schedules); step = warmup + count.
            return peak_value * jnp.sqrt(offset / jnp.maximum(count + warmup_steps, offset))
    if warmup_steps == 0:
        return after_warmup
    warmup = optax.linear_schedule(init_value, peak_value, warmup_steps)
    return optax.join_schedules([warmup, after_warmup], [warmup_steps])


def weight_decay_mask(no_decay_patterns: Sequence[str] = DEFAULT_NO_DECAY_PATTERNS,
                      min_rank: int = 2) -> Callable[[PyTree], PyTree]:
    """Selects the parameters that get weight decay.

    Args:
      no_decay_patterns: regular expressions searched in each parameter's '/'-joined path; a match disables decay.
      min_rank: parameters of lower rank (vectors, scalars) are never decayed.

    Returns:
      A function params -> tree of bools (True: decay), as optax masks take.
    """
    compiled = [re.compile(p) for p in no_decay_patterns]

    def mask(params: PyTree) -> PyTree:
        return tree_paths.map_with_paths(
            lambda path, leaf: jnp.ndim(leaf) >= min_rank and not any(p.search(path) for p in compiled), params)

    return mask


def _with_clipping(transform: optax.GradientTransformation, grad_clip_norm: float | None) -> optax.GradientTransformation:
    if grad_clip_norm is None or grad_clip_norm <= 0:
        return transform
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), transform)


def _as_schedule(learning_rate: float | Schedule, fn: Callable[..., Any]) -> Schedule:
    if callable(learning_rate):
        return learning_rate
    learning_rate = config_checks.number(learning_rate, fn, "learning_rate", minimum=0.0, exclusive_minimum=True)
    return optax.constant_schedule(learning_rate)


def _check_common(fn: Callable[..., Any], weight_decay: float | None, grad_clip_norm: float | None) -> None:
    config_checks.number(weight_decay, fn, "weight_decay", minimum=0.0, allow_none=True)
    config_checks.number(grad_clip_norm, fn, "grad_clip_norm", minimum=0.0, allow_none=True)


def adamw(learning_rate: float | Schedule,
          b1: float = 0.9,
          b2: float = 0.999,
          eps: float = 1e-8,
          weight_decay: float = 0.01,
          grad_clip_norm: float | None = 1.0,
          no_decay_patterns: Sequence[str] = DEFAULT_NO_DECAY_PATTERNS,
          mu_dtype: str | None = None,
          fused: bool = True) -> Optimizer:
    """AdamW with decoupled weight decay (scaled by the learning rate, as torch.optim.AdamW, which CLASS used).

    Args:
      learning_rate: a constant or a schedule (see `learning_rate_schedule`).
      b1: first-moment decay.
      b2: second-moment decay.
      eps: denominator epsilon.
      weight_decay: decay coefficient.
      grad_clip_norm: clip the global gradient norm to this value first; None or 0 disables.
      no_decay_patterns: parameters whose path matches any of these are not decayed (nor are vectors).
      mu_dtype: dtype of the first moment ("bfloat16" halves its memory); None keeps the parameters' dtype.
      fused: compute clipping, both moments and the update of each parameter in one expression
        (`fused_adamw`: the same arithmetic and state as the optax chain, fewer passes over memory); False runs
        optax's chain as is.

    Returns:
      The optimizer.

    Raises:
      config_checks.InvalidValue: a value of the wrong type or range (naming the gin parameter).
    """
    schedule = _as_schedule(learning_rate, adamw)
    _check_common(adamw, weight_decay, grad_clip_norm)
    config_checks.number(b1, adamw, "b1", minimum=0.0, maximum=1.0)
    config_checks.number(b2, adamw, "b2", minimum=0.0, maximum=1.0)
    config_checks.number(eps, adamw, "eps", minimum=0.0)
    mask = weight_decay_mask(no_decay_patterns)
    transform = _with_clipping(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask,
                                           mu_dtype=mu_dtype), grad_clip_norm)
    if fused:
        transform = fused_adamw.fused_adamw(transform, schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                                            decay_mask=mask, grad_clip_norm=grad_clip_norm,
                                            mu_dtype=None if mu_dtype is None else jnp.dtype(mu_dtype))
    return Optimizer(transform, schedule)


def adafactor(learning_rate: float | Schedule,
              decay_rate: float = 0.8,
              multiply_by_parameter_scale: bool = True,
              clipping_threshold: float | None = 1.0,
              momentum: float | None = None,
              weight_decay: float | None = None,
              factored: bool = True,
              min_dim_size_to_factor: int = 128,
              grad_clip_norm: float | None = None,
              no_decay_patterns: Sequence[str] = DEFAULT_NO_DECAY_PATTERNS) -> Optimizer:
    """Adafactor (T5 / T5X's default optimizer), memory-light factored second moments.

    Args:
      learning_rate: a constant or a schedule.
      decay_rate: second-moment decay exponent.
      multiply_by_parameter_scale: scale updates by the parameters' RMS (T5 default).
      clipping_threshold: update clipping threshold (per-parameter RMS), None disables.
      momentum: first-moment decay; None uses no first moment.
      weight_decay: decay rate (multiplied by the learning rate in optax); None disables.
      factored: factor the second moment of matrices.
      min_dim_size_to_factor: factor only dimensions at least this large.
      grad_clip_norm: clip the global gradient norm to this value first; None or 0 disables.
      no_decay_patterns: parameters whose path matches any of these are not decayed (nor are vectors).

    Returns:
      The optimizer.

    Raises:
      config_checks.InvalidValue: a value of the wrong type or range (naming the gin parameter).
    """
    schedule = _as_schedule(learning_rate, adafactor)
    _check_common(adafactor, weight_decay, grad_clip_norm)
    config_checks.number(decay_rate, adafactor, "decay_rate", minimum=0.0)
    config_checks.integer(min_dim_size_to_factor, adafactor, "min_dim_size_to_factor", minimum=1)
    transform = optax.adafactor(schedule, min_dim_size_to_factor=min_dim_size_to_factor, decay_rate=decay_rate,
                                multiply_by_parameter_scale=multiply_by_parameter_scale,
                                clipping_threshold=clipping_threshold, momentum=momentum,
                                weight_decay_rate=weight_decay, factored=factored,
                                weight_decay_mask=weight_decay_mask(no_decay_patterns))
    return Optimizer(_with_clipping(transform, grad_clip_norm), schedule)
