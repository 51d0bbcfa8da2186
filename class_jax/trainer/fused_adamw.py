"""AdamW (with global-norm clipping) computed in one elementwise expression per parameter.

`optax.chain(clip_by_global_norm, adamw)` runs as a series of tree maps: the clipped gradient, the first moment,
the second moment and the update each come out of their own XLA fusion, and each writes a full-size array that the
next one reads back. At mT5 shapes two of the parameters are [250112, 512] vocabulary matrices, so on a CPU host
those extra passes over memory cost about 0.1 s of a 2 s training step (bench/RESULTS.md, "Measurements the code
relies on").
Here the clipped gradient, both moments and the update of one parameter are written as a single expression, so XLA
emits one loop per parameter that reads the gradient, the parameter and the moments once.

The arithmetic is optax's (`clip_by_global_norm`, `scale_by_adam`, masked `add_decayed_weights`,
`scale_by_learning_rate`), except that clipping multiplies by one factor, max_norm / norm, where optax divides by
the norm and multiplies by max_norm (equal up to rounding; as an elementwise select it kept XLA from fusing). The
state is optax's own: the same pytree of `ScaleByAdamState` / `MaskedState` / `ScaleByScheduleState`, so
checkpoints move freely between the two.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def fused_adamw(reference: optax.GradientTransformation, schedule: Callable[[jax.Array], jax.Array], *, b1: float,
                b2: float, eps: float, weight_decay: float, decay_mask: Callable[[PyTree], PyTree],
                mu_dtype: Any, grad_clip_norm: float | None) -> optax.GradientTransformation:
    """The fused equivalent of `reference` = [clip_by_global_norm(grad_clip_norm)] → adamw(schedule, ...).

    Args:
      reference: the optax chain this computes; its `init` gives the state (and thus its layout).
      schedule: the learning-rate schedule (called on the schedule's own step count, as optax does).
      b1: first-moment decay.
      b2: second-moment decay.
      eps: denominator epsilon (added outside the square root).
      weight_decay: decoupled weight-decay coefficient.
      decay_mask: params -> tree of bools, True where weight decay applies.
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      grad_clip_norm: the global-norm clipping threshold; None or <= 0: no clipping (the reference has no clip
        stage then).

    Returns:
      A GradientTransformation whose updates the train step adds to the parameters (`optax.apply_updates`).
    """
    clipping = grad_clip_norm is not None and grad_clip_norm > 0

    def update(grads: PyTree, state: Any, params: PyTree | None = None) -> tuple[PyTree, Any]:
        if params is None:
            raise ValueError("fused_adamw needs the parameters (weight decay)")
        clip_state, (adam, masked, scheduled) = state if clipping else (None, state)
        count = optax.safe_increment(adam.count)
        step_size = schedule(scheduled.count)
        first_correction = 1 - b1 ** count
        second_correction = 1 - b2 ** count
        if clipping:  # optax.clip_by_global_norm, as one factor
            grad_norm = optax.global_norm(grads)
            clip_factor = jnp.where(jnp.squeeze(grad_norm < grad_clip_norm), 1.0, grad_clip_norm / grad_norm)

        def one(grad, mu, nu, param, decays):
            if clipping:
                grad = grad * clip_factor.astype(grad.dtype)
            new_mu = (1 - b1) * grad + b1 * mu  # optax.tree.update_moment
            new_nu = (1 - b2) * (grad * grad) + b2 * nu  # update_moment_per_elem_norm, order 2
            mu_hat = new_mu / first_correction.astype(new_mu.dtype)
            nu_hat = new_nu / second_correction.astype(new_nu.dtype)
            step = mu_hat / (jnp.sqrt(nu_hat) + eps)
            if decays:
                step = step + weight_decay * param
            stored_mu = new_mu if mu_dtype is None else new_mu.astype(mu_dtype)
            return -step_size * step, stored_mu, new_nu.astype(nu.dtype)

        treedef = jax.tree.structure(params)
        outputs = [one(*leaves) for leaves in zip(
            treedef.flatten_up_to(grads), treedef.flatten_up_to(adam.mu), treedef.flatten_up_to(adam.nu),
            treedef.flatten_up_to(params), treedef.flatten_up_to(decay_mask(params)))]
        updates, mus, nus = (treedef.unflatten(part) for part in zip(*outputs))
        new_state = (adam._replace(count=count, mu=mus, nu=nus), masked,
                     scheduled._replace(count=optax.safe_increment(scheduled.count)))
        return updates, ((clip_state, new_state) if clipping else new_state)

    return optax.GradientTransformation(reference.init, update)
