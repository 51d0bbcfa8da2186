"""Batched, partitioned `predict_batch` / `score_batch` over a stream of examples (for evaluation and inference).

Every process iterates the same full stream of examples (evaluation sets are small next to training data), cuts it
into global batches (the last one padded by repeating its final example), feeds its own rows of each batch, and
gets the outputs back fully replicated, so every process holds every result in the stream's order.
"""

from typing import Any, Iterable, Iterator, Mapping

import jax
import numpy as np

from class_jax.models.base import BaseModel
from class_jax.runtime.partitioning import Partitioner

PyTree = Any
Example = Mapping[str, np.ndarray]


def batch_examples(examples: Iterable[Example], batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Yields (batch, number of real rows); the last batch is padded by repeating its final example."""
    pending: list[Example] = []
    for example in examples:
        pending.append(example)
        if len(pending) == batch_size:
            yield _stack(pending), batch_size
            pending = []
    if pending:
        real = len(pending)
        pending += [pending[-1]] * (batch_size - real)
        yield _stack(pending), real


def _stack(examples: list[Example]) -> dict[str, np.ndarray]:
    return {name: np.stack([np.asarray(e[name]) for e in examples]) for name in examples[0]}


class Predictor:
    """Jitted, sharded decoding and scoring."""

    def __init__(self, model: BaseModel, partitioner: Partitioner, batch_size: int):
        """Prepares the jitted functions (compiled on first use per feature shape; parameters keep the shardings
        they already have).

        Args:
          model: the model.
          partitioner: mesh and rules.
          batch_size: global rows per call; must divide over the batch-sharding devices.
        """
        self.model = model
        self.partitioner = partitioner
        self.batch_size = batch_size
        self.shard = partitioner.host_batch_shard(batch_size)
        replicated = partitioner.replicated
        # Forward-only programs: on CPU meshes without YNNPACK fusions, which made `bench/decode.py`'s encoder +
        # greedy decoding 14-17% slower (see Partitioner.inference_compiler_options).
        options = partitioner.inference_compiler_options()
        self._predict = jax.jit(lambda params, batch: model.predict_batch(params, batch),
                                out_shardings=replicated, compiler_options=options)
        self._score = jax.jit(lambda params, batch: model.score_batch(params, batch),
                              out_shardings=replicated, compiler_options=options)

    def _global_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        rows = slice(self.shard.index * self.shard.local_batch_size,
                     (self.shard.index + 1) * self.shard.local_batch_size)
        return self.partitioner.shard_batch({name: value[rows] for name, value in batch.items()}, self.batch_size)

    def _run(self, fn: Any, params: PyTree, examples: Iterable[Example]) -> list[np.ndarray]:
        outputs: list[np.ndarray] = []
        with self.partitioner.activate():
            for batch, real in batch_examples(examples, self.batch_size):
                result = np.asarray(jax.device_get(fn(params, self._global_batch(batch))))
                outputs.extend(result[:real])
        return outputs

    def predict(self, params: PyTree, examples: Iterable[Example]) -> list[np.ndarray]:
        """Decoded token ids, one array per example, in order."""
        return self._run(self._predict, params, examples)

    def score(self, params: PyTree, examples: Iterable[Example]) -> list[np.ndarray]:
        """Per-example scores, in order."""
        return self._run(self._score, params, examples)
