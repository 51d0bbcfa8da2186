"""Jitted, sharded retrieval encoding of fixed-shape token batches (queries or passages).

The batch of every call is one global array split over the mesh's batch axes; each process feeds only the rows its
devices hold (`Partitioner.host_batch_shard`). Two entry points:
  * `encode_local`: each process passes its own rows (different data per host, e.g. its share of a corpus) and
    gets its own rows back — nothing is gathered across hosts;
  * `encode_global`: every process passes the same whole batch (e.g. the queries) and gets the whole result back.
Every process must make the same sequence of calls (SPMD).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from class_jax.models import retrievers
from class_jax.models.class_model import CLASSModel
from class_jax.runtime.partitioning import Partitioner

PyTree = Any


def _outputs(model: CLASSModel, params: PyTree, tokens: jax.Array, is_query: bool,
             dtype: jnp.dtype) -> dict[str, jax.Array]:
    """What the index stores (`RetrieverKind.index_rows`): pooled vectors, or per-token vectors (zero at pads) and
    lengths."""
    return retrievers.get_retriever(model.config).index_rows(model.encode_for_retrieval(params, tokens, is_query),
                                                             dtype)


def local_rows(array: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded global array, in order (replicas along other axes read once)."""
    by_start = {}
    for shard in array.addressable_shards:
        rows = shard.index[0] if shard.index else slice(None)
        by_start.setdefault(rows.start or 0, shard)
    return np.concatenate([np.asarray(by_start[start].data) for start in sorted(by_start)])


class RetrievalEncoder:
    """Encodes batches of `batch_size` rows (global) with the first B encoder layers of a CLASS model."""

    def __init__(self, model: CLASSModel, params: PyTree, partitioner: Partitioner, batch_size: int,
                 dtype: str = "float32"):
        """Prepares the jitted functions (compiled on first use per side and token length).

        Args:
          model: the model.
          params: its parameters, already placed with the partitioner's shardings.
          partitioner: mesh and logical rules.
          batch_size: global rows per call; must split evenly over the batch-sharding devices.
          dtype: dtype of the returned vectors ("float32", "float16", "bfloat16").

        Raises:
          ValueError: batch_size does not split over the devices.
        """
        self.model = model
        self.params = params
        self.partitioner = partitioner
        self.batch_size = batch_size
        self.shard = partitioner.host_batch_shard(batch_size)
        self.dtype = jnp.dtype(dtype)
        sharded = {name: partitioner.batch_sharding(rank)
                   for name, rank in retrievers.get_retriever(model.config).index_arrays.items()}
        replicated = {name: partitioner.replicated for name in sharded}
        options = partitioner.inference_compiler_options()
        self._functions = {}
        for is_query in (True, False):
            body = functools.partial(_outputs, model, is_query=is_query, dtype=self.dtype)
            self._functions[is_query, "local"] = jax.jit(body, out_shardings=sharded, compiler_options=options)
            self._functions[is_query, "global"] = jax.jit(body, out_shardings=replicated, compiler_options=options)

    @property
    def local_batch_size(self) -> int:
        """Rows this process feeds per call."""
        return self.shard.local_batch_size

    def _run(self, local_tokens: np.ndarray, is_query: bool, kind: str) -> dict[str, jax.Array]:
        batch = self.partitioner.shard_batch({"tokens": local_tokens}, self.batch_size)["tokens"]
        with self.partitioner.activate():
            return self._functions[is_query, kind](self.params, batch)

    def encode_local(self, tokens: np.ndarray, is_query: bool) -> dict[str, np.ndarray]:
        """Encodes this process's rows (at most `local_batch_size`; fewer are padded, and dropped again).

        Args:
          tokens: [rows, length] int token ids, 0-padded.
          is_query: query side (query_proj / Q) or passage side (passage_proj / K).

        Returns:
          {"vectors": [rows, dim]} or {"tokens": [rows, length, head_dim], "lengths": [rows]} as numpy.
        """
        return self.fetch_local(self.dispatch_local(tokens, is_query), len(tokens))

    def dispatch_local(self, tokens: np.ndarray, is_query: bool) -> dict[str, jax.Array]:
        """`encode_local` without waiting: returns the device outputs; pass them to `fetch_local` later.

        Lets the caller tokenise the next batch while the devices encode this one.

        Raises:
          ValueError: more rows than the local batch.
        """
        if len(tokens) > self.local_batch_size:
            raise ValueError(f"{len(tokens)} rows exceed the local batch of {self.local_batch_size}")
        padded = np.zeros((self.local_batch_size,) + tokens.shape[1:], np.int32)
        padded[:len(tokens)] = tokens
        return self._run(padded, is_query, "local")

    @staticmethod
    def fetch_local(outputs: dict[str, jax.Array], rows: int) -> dict[str, np.ndarray]:
        """Host copies of this process's first `rows` rows of dispatched outputs."""
        return {name: local_rows(value)[:rows] for name, value in outputs.items()}

    def encode_global(self, tokens: np.ndarray, is_query: bool) -> dict[str, np.ndarray]:
        """Encodes a whole batch that every process holds; every process gets every row back.

        Args:
          tokens: [rows <= batch_size, length] token ids (the same on every process).
          is_query: which side to encode.

        Returns:
          The outputs of all `rows` rows, as numpy.
        """
        rows = len(tokens)
        if rows > self.batch_size:
            raise ValueError(f"{rows} rows exceed the batch of {self.batch_size}")
        padded = np.zeros((self.batch_size,) + tokens.shape[1:], np.int32)
        padded[:rows] = tokens
        start = self.shard.index * self.local_batch_size
        outputs = self._run(padded[start:start + self.local_batch_size], is_query, "global")
        return {name: np.asarray(jax.device_get(value))[:rows] for name, value in outputs.items()}
