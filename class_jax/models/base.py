"""The model contract the trainer, evaluator and retrieval code rely on (T5X's BaseModel, trimmed)."""

import abc
from typing import Any, Mapping

import jax
import numpy as np

PyTree = Any
Batch = Mapping[str, np.ndarray | jax.Array]


class BaseModel(abc.ABC):
    """A model the trainer can initialise, train and evaluate without knowing what it is.

    Parameters returned by `get_initial_variables` carry logical axis names (flax `nn.LogicallyPartitioned`
    boxes from `nn.with_logical_partitioning`), so the partitioner can map them onto any mesh via gin rules.
    Every method is pure (traceable under `jax.jit`).
    """

    @abc.abstractmethod
    def get_initial_variables(self, rng: jax.Array, input_shapes: Mapping[str, tuple[int, ...]],
                              input_types: Mapping[str, Any] | None = None) -> PyTree:
        """Initialises the variables ({"params": ...}) for batches of the given feature shapes.

        Args:
          rng: PRNG key.
          input_shapes: feature name -> shape of a batch (batch dimension first).
          input_types: feature name -> dtype; int32 when absent.

        Returns:
          The (boxed) variable collections.
        """

    @abc.abstractmethod
    def loss_fn(self, params: PyTree, batch: Batch, dropout_rng: jax.Array | None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Computes the training loss of a batch.

        Args:
          params: unboxed parameters.
          batch: the features of one (micro)batch.
          dropout_rng: PRNG key for dropout; None disables dropout (evaluation).

        Returns:
          (scalar loss to minimise, metrics): metrics maps names to scalars averaged over the batch (e.g.
          "loss/ce", "loss/kl", "accuracy"), plus "num_tokens" (the count the averages are over).
        """

    @abc.abstractmethod
    def predict_batch(self, params: PyTree, batch: Batch, rng: jax.Array | None = None) -> jax.Array:
        """Greedy / beam decodes a batch; returns int32 token ids [batch, max_decode_length]."""

    @abc.abstractmethod
    def score_batch(self, params: PyTree, batch: Batch) -> jax.Array:
        """Returns per-example scores [batch] (log-likelihood of the targets)."""

    def flops_per_step(self, input_shapes: Mapping[str, tuple[int, ...]]) -> float:
        """Analytic FLOPs of one forward+backward pass over a batch of these shapes (for MFU); 0 if unknown."""
        del input_shapes
        return 0.0

    def grad_cache_parts(self) -> Any:
        """The loss split for a GradCache step (a loss with a term over the whole batch), or None (the default).

        A model whose loss has a term that spans the whole batch (stage 1's in-batch retrieval scores) returns an
        object with `vectors`, `retrieval_loss`, `reader_loss` and `totals` (class_jax/models/clr_pt.py), so that
        gradient accumulation over microbatches keeps the term over the whole batch (class_jax/trainer/
        grad_cache.py).
        """
        return None
