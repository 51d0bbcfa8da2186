"""The microbatch layout every accumulation uses: microbatch m of M holds rows m, m + M, m + 2M, ... of the batch.

A batch [B, ...] is viewed as [B / M, M, ...] and microbatch m is column m, so each device keeps its own rows in
every microbatch under batch sharding (a [M, B / M] view would put a whole microbatch on a fraction of the devices).
The train step's plain accumulation, GradCache (trainer/grad_cache.py) and the stage-1 teacher (models/teacher.py)
all use this one layout, so per-microbatch outputs land back on the rows they came from.
"""

from typing import Any, Mapping

import jax
import jax.numpy as jnp

Batch = Mapping[str, jax.Array]


def _view(x: jax.Array, num_microbatches: int) -> jax.Array:
    """[B, ...] -> [B / M, M, ...]."""
    if x.shape[0] % num_microbatches:
        raise ValueError(f"batch of {x.shape[0]} rows does not split into {num_microbatches} microbatches")
    return x.reshape((x.shape[0] // num_microbatches, num_microbatches) + x.shape[1:])


def split(batch: Batch, num_microbatches: int) -> dict[str, jax.Array]:
    """[B, ...] -> [B / M, M, ...] per feature; microbatch m is `x[:, m]` (`take`).

    Raises:
      ValueError: a batch that does not split evenly.
    """
    return {name: _view(value, num_microbatches) for name, value in batch.items()}


def take(microbatches: Batch, m: jax.Array) -> dict[str, jax.Array]:
    """Microbatch m of `split`'s view (m may be traced)."""
    return {name: jax.lax.dynamic_index_in_dim(value, m, axis=1, keepdims=False)
            for name, value in microbatches.items()}


def stacked(x: jax.Array, num_microbatches: int) -> jax.Array:
    """[B, ...] -> [M, B / M, ...]: the microbatches one after another (the input of `jax.lax.map`).

    Raises:
      ValueError: a batch that does not split evenly.
    """
    return jnp.swapaxes(_view(x, num_microbatches), 0, 1)


def unstacked(tree: Any) -> Any:
    """[M, B / M, ...] leaves (e.g. `jax.lax.map` over microbatches) -> [B, ...] in batch order."""
    return jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:]), tree)
