"""Gradient accumulation that keeps a loss term over the whole batch: the JAX form of GradCache (Gao et al., 2021).

Stage 1 scores every query against every passage of the global batch. Plain accumulation would score a
microbatch's queries against that microbatch's passages only, so the negatives shrink with the microbatch count
(and the loss changes). The authors' release avoids that with GradCache, and so does this step:

  1. every microbatch's retrieval vectors are computed (encoder only, no gradient kept);
  2. the whole-batch retrieval loss and its gradient with respect to all those vectors are taken at once;
  3. each microbatch is run again in full, differentiating its per-chunk terms plus the surrogate
     <v_m, dL/dv_m> summed over its vectors, whose parameter gradient is the retrieval term's share through the
     microbatch's encoder;
  4. the gradients add up (plus the retrieval term's direct parameter gradient, e.g. a token kind's position bias).

Loss and gradients equal the one-pass loss's for any microbatch count (up to float reordering): the per-chunk
terms are sums divided by global counts (`GradCacheParts.totals`), so microbatch shares add up exactly. Both
passes of a microbatch use its dropout key, so they draw the same masks. Microbatch m holds rows m, m + M, ...
(runtime/microbatches.py), which keeps every device's rows on that device.
"""

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

from class_jax.runtime import microbatches as microbatch_layout

PyTree = Any
Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


def _float_leaves(tree: PyTree) -> list[jax.Array]:
    """The floating-point leaves of `tree`, in order (masks and other integer leaves have no gradient)."""
    return [leaf for leaf in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)]


def _with_float_leaves(tree: PyTree, floats: list[jax.Array]) -> PyTree:
    """`tree` with its floating-point leaves replaced, in order, by `floats`."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    replacements = iter(floats)
    return jax.tree_util.tree_unflatten(treedef, [next(replacements) if jnp.issubdtype(leaf.dtype, jnp.floating)
                                                  else leaf for leaf in leaves])


def loss_and_grads(parts: Any, params: PyTree, batch: Batch, step_rng: Optional[jax.Array],
                   num_microbatches: int) -> tuple[PyTree, Metrics]:
    """Gradients and metrics of the whole batch's loss, run in `num_microbatches` pieces.

    Args:
      parts: the model's `grad_cache_parts()` (class_jax/models/clr_pt.py GradCacheParts).
      params: the parameters.
      batch: the global batch.
      step_rng: the step's dropout key (None: no dropout); microbatch m uses `fold_in(step_rng, m)` in both passes.
      num_microbatches: M >= 1.

    Returns:
      (gradients, metrics with "loss"), as `jax.value_and_grad` of the one-pass loss would give.
    """
    microbatches = microbatch_layout.split(batch, num_microbatches)

    def rng(m: jax.Array) -> Optional[jax.Array]:
        return None if step_rng is None else jax.random.fold_in(step_rng, m)

    def vectors_of(m: jax.Array) -> PyTree:
        return parts.vectors(params, microbatch_layout.take(microbatches, m), rng(m))

    vectors = microbatch_layout.unstacked(jax.lax.map(vectors_of, jnp.arange(num_microbatches)))

    def retrieval(float_vecs: list[jax.Array], p: PyTree) -> tuple[jax.Array, Metrics]:
        return parts.retrieval_loss(p, _with_float_leaves(vectors, float_vecs), batch)

    (retrieval_value, retrieval_metrics), (vector_grads, retrieval_param_grads) = jax.value_and_grad(
        retrieval, argnums=(0, 1), has_aux=True)(_float_leaves(vectors), params)
    vector_grads = microbatch_layout.split(dict(enumerate(vector_grads)), num_microbatches)  # leaf index -> grads
    totals = parts.totals(batch)

    def share(p: PyTree, m: jax.Array) -> tuple[jax.Array, Metrics]:
        loss, metrics, vecs = parts.reader_loss(p, microbatch_layout.take(microbatches, m), rng(m), totals)
        grads_m = microbatch_layout.take(vector_grads, m)
        surrogate = sum(jnp.vdot(v.astype(jnp.float32), grads_m[i]) for i, v in enumerate(_float_leaves(vecs)))
        return loss + surrogate, {**metrics, "loss": loss}

    metric_shapes = jax.eval_shape(lambda: share(params, 0)[1])
    init = (retrieval_param_grads, {name: jnp.zeros(s.shape, jnp.float32) for name, s in metric_shapes.items()})

    def body(m: jax.Array, carry: tuple[PyTree, Metrics]) -> tuple[PyTree, Metrics]:
        grad_sum, metric_sum = carry
        grads, metrics = jax.grad(share, has_aux=True)(params, m)
        return (jax.tree_util.tree_map(jnp.add, grad_sum, grads),
                {name: metric_sum[name] + metrics[name].astype(jnp.float32) for name in metric_sum})

    grads, metrics = jax.lax.fori_loop(0, num_microbatches, body, init)
    metrics.update(retrieval_metrics)
    metrics["loss"] = metrics["loss"] + retrieval_value
    return grads, metrics
