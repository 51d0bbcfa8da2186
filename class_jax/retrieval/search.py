"""Exact maximum-inner-product top-k search: sharded over devices (JAX) or on the CPU (faiss IndexFlatIP).

Both backends return the same top-k: scores in descending order and, among equal scores, the lower index row
first (and a lower row wins a tie at the k-th place). Scores are float32 dot products; the two backends sum in
different orders, so on real data their scores agree to float32 rounding and their rankings agree except between
rows whose scores differ by that rounding.

Device search: the index rows are split over every device of the mesh (all mesh axes together, row blocks in
device order). For a batch of queries, each device scores its rows chunk by chunk (one matmul per chunk, so the
[queries, rows] score matrix never exists whole) keeping a running `lax.top_k`; the per-device top-k are then
all-gathered and reduced with one more top-k. Token-mode (ReAtt) indexes use the same machinery with max-sim
scores per chunk.

Which is faster (bench/search.py, 256 queries, top-100 of float32 x 768 rows): on this project's 2-core CPU machine
faiss IndexFlatIP (pip faiss-cpu 1.15.1) is 1.4-1.5x the JAX path at 100k and 1M rows, running the scoring products
close to the machine's float32 matmul rate; on an H100 the JAX path searches 1M rows in 17.5 ms. So "auto", the
commands' default, picks faiss for pooled vectors in a single-process CPU run and the device search everywhere else
(accelerators, several processes, token-mode indexes, which faiss cannot score); see `resolve_backend`.
"""

import abc
import math
from typing import Any, Callable, Optional

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from class_jax.models import retrievers
from class_jax.retrieval.index_reader import IdTable

PyTree = Any
# Reads rows [start, stop) of the index as {"vectors": ...} or {"tokens": ..., "lengths": ...} numpy arrays.
RowReader = Callable[[int, int], dict[str, np.ndarray]]
# Scores a block of queries against a chunk of index rows: -> [queries, rows] float32.
BlockScorer = Callable[[PyTree, PyTree], jax.Array]
# Row multiple of large search chunks (see `_even_chunk_rows`).
_CHUNK_ALIGN = 256
# Default rows per search step on CPUs (the chunk every CPU figure in bench/RESULTS.md was measured with).
_CPU_CHUNK_ROWS = 32768
# On accelerators, pooled vectors: bytes of one step's float32 score block plus float32 copy of its rows.
_ACCELERATOR_CHUNK_BYTES = 1 << 30


class Searcher(abc.ABC):
    """Top-k search over a fixed set of index rows."""

    def __init__(self, num_rows: int, ids: Optional[IdTable] = None):
        self.num_rows = num_rows
        self.ids = ids

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= self.num_rows:
            raise ValueError(f"k={k}: must be between 1 and the {self.num_rows} rows of the index")

    @abc.abstractmethod
    def search_rows(self, queries: PyTree, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows of each query.

        Args:
          queries: [num_queries, dim] float vectors (token mode: {"tokens", "valid"}).
          k: results per query, 1 <= k <= num_rows.

        Returns:
          (scores [num_queries, k] float32 descending, rows [num_queries, k] int64).
        """

    def search(self, queries: PyTree, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k passages of each query: (scores [n, k] float32, passage ids [n, k] object array of str).

        Raises:
          ValueError: the searcher was built without ids, or k is out of range.
        """
        if self.ids is None:
            raise ValueError("this searcher has no passage ids; use search_rows")
        scores, rows = self.search_rows(queries, k)
        return scores, self.ids.lookup(rows)


# ------------------------------------------------------------------------------------------------ block scorers
def dot_block_scores(queries: jax.Array, rows: dict[str, jax.Array]) -> jax.Array:
    """Pooled vectors: exact float32 inner products (HIGHEST precision, so TPUs do not round inputs to bf16)."""
    vectors = rows["vectors"].astype(jnp.float32)
    return lax.dot_general(queries.astype(jnp.float32), vectors, (((1,), (1,)), ((), ())),
                           precision=lax.Precision.HIGHEST, preferred_element_type=jnp.float32)


def maxsim_block_scorer(position_bias: Optional[np.ndarray] = None, length_norm: bool = False) -> BlockScorer:
    """Token mode: ReAtt max-sim Σ_i max_j q_i·k_j (optionally + position bias, / query length); see
    `retrievers.TokenRetriever.index_scorer`."""
    return retrievers.maxsim_block_scorer(position_bias, length_norm)


def top_k_group_size(num_columns: int, k: int) -> int:
    """The group size `grouped_top_k` uses for rows of `num_columns` scores: the power of two nearest
    sqrt(num_columns / k), which balances its two smaller top-k (over the group maxima and over the candidates);
    1 (plain `lax.top_k`) where grouping cannot leave more than k groups."""
    size = 1 << max(0, round(math.log2(max(1.0, num_columns / k)) / 2))
    while size > 1 and (num_columns % size or num_columns // size <= k):
        size //= 2
    return size


def grouped_top_k(scores: jax.Array, k: int, group_size: int) -> tuple[jax.Array, jax.Array]:
    """Exactly `lax.top_k(scores, k)` (values and positions, ties to lower positions), from two smaller top-k.

    The columns are cut into groups of `group_size`; the k groups with the largest maxima hold every element of
    the top k: an element is in the top k only if at most k - 1 elements exceed it, so at most k - 1 groups have a
    larger maximum than its group, and among groups of equal maxima the lower ones are taken, as lower positions
    win ties. So the top k of the k * group_size candidates of those groups, taken in position order, is the top k
    of the row. It sorts num_columns / group_size + k * group_size elements instead of num_columns: XLA:GPU runs
    `lax.top_k` with k = 100 as a sort of the whole row, and this halved the 1M-row search on an H100.

    Args:
      scores: [rows, num_columns].
      k: how many per row.
      group_size: columns per group (1: plain `lax.top_k`); it must divide num_columns and leave more than k
        groups.

    Returns:
      (values [rows, k], positions [rows, k] int32), as `lax.top_k` returns them.
    """
    num_rows, num_columns = scores.shape
    if group_size == 1:
        return lax.top_k(scores, k)
    if num_columns % group_size or num_columns // group_size <= k:
        raise ValueError(f"group size {group_size} must divide {num_columns} columns into more than {k} groups")
    groups = scores.reshape(num_rows, num_columns // group_size, group_size)
    _, best_groups = lax.top_k(groups.max(axis=-1), k)
    best_groups = jnp.sort(best_groups, axis=-1)  # position order, so the next top_k breaks ties as lax.top_k does
    candidates = jnp.take_along_axis(groups, best_groups[:, :, None], axis=1).reshape(num_rows, k * group_size)
    values, picked = lax.top_k(candidates, k)
    group_of_pick = jnp.take_along_axis(best_groups, picked // group_size, axis=1)
    return values, group_of_pick * group_size + picked % group_size


def _sorted_by_score_then_row(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of results ordered by descending score, ties by ascending row."""
    order = np.lexsort((rows, -scores.astype(np.float64)), axis=-1)
    return np.take_along_axis(scores, order, -1), np.take_along_axis(rows, order, -1)


# ------------------------------------------------------------------------------------------------ device
class DeviceSearcher(Searcher):
    """Exact search with the index rows sharded over every device of a mesh."""

    def __init__(self, read_rows: RowReader, num_rows: int, mesh: jax.sharding.Mesh,
                 ids: Optional[IdTable] = None, scorer: BlockScorer = dot_block_scores,
                 query_batch_size: int = 256, chunk_rows: Optional[int] = None, device_dtype: Optional[str] = None):
        """Places the index on the devices.

        Args:
          read_rows: reads index rows [start, stop) (each process reads only the rows its devices hold).
          num_rows: rows in the index.
          mesh: the device mesh; rows are split over all of its axes.
          ids: passage ids of the rows (for `search`).
          scorer: block scorer (`dot_block_scores` or `maxsim_block_scorer(...)`).
          query_batch_size: queries per device call (the last batch is padded, so one compilation serves all).
          chunk_rows: rows scored per matmul on each device (bounds the [queries, chunk] score block); default
            `default_chunk_rows`.
          device_dtype: dtype of the vectors kept on device (default: as stored; scores are float32 anyway).

        Raises:
          ValueError: an empty index or one beyond int32 row numbers.
        """
        super().__init__(num_rows, ids)
        if num_rows < 1 or num_rows >= 2 ** 31 - 1:
            raise ValueError(f"device search needs 1 <= rows < 2**31, got {num_rows}")
        self.mesh = mesh
        self.row_axes = tuple(mesh.axis_names)
        self.num_shards = mesh.size
        self.query_batch_size = query_batch_size
        self.scorer = scorer
        per_shard = -(-num_rows // self.num_shards)
        sample = read_rows(0, 1)
        if chunk_rows is None:
            chunk_rows = default_chunk_rows(mesh.devices.flat[0].platform, query_batch_size,
                                            sample["vectors"].shape[1] if scorer is dot_block_scores else None)
        self.chunk_rows = _even_chunk_rows(per_shard, chunk_rows)
        self.rows_per_shard = -(-per_shard // self.chunk_rows) * self.chunk_rows
        padded_rows = self.rows_per_shard * self.num_shards
        row_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(self.row_axes))

        self.rows: dict[str, jax.Array] = {}
        for name, value in sample.items():
            dtype = np.dtype(device_dtype) if device_dtype and name != "lengths" else value.dtype

            def block(index: tuple[slice, ...], name: str = name, dtype: np.dtype = dtype) -> np.ndarray:
                start, stop, _ = index[0].indices(padded_rows)
                out = np.zeros((stop - start,) + value.shape[1:], dtype)
                real_stop = min(stop, num_rows)
                if start < real_stop:
                    out[:real_stop - start] = read_rows(start, real_stop)[name]
                return out

            self.rows[name] = jax.make_array_from_callback((padded_rows,) + value.shape[1:], row_sharding, block)
        self._functions: dict[tuple[int, int], Callable] = {}

    def _function(self, batch: int, k: int) -> Callable:
        key = (batch, k)
        if key not in self._functions:
            self._functions[key] = self._build(k)
        return self._functions[key]

    def _build(self, k: int) -> Callable:
        axes, chunk, num_rows = self.row_axes, self.chunk_rows, self.num_rows
        num_chunks = self.rows_per_shard // chunk
        per_chunk_k = min(k, chunk)
        group_size = top_k_group_size(chunk, per_chunk_k)
        scorer = self.scorer

        def shard_top_k(queries: PyTree, rows: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
            base = lax.axis_index(axes) * self.rows_per_shard
            chunks = jax.tree_util.tree_map(lambda x: x.reshape((num_chunks, chunk) + x.shape[1:]), rows)
            num_queries = jax.tree_util.tree_leaves(queries)[0].shape[0]

            def step(best, inputs):
                best_scores, best_rows = best
                chunk_index, block = inputs
                row_numbers = base + chunk_index * chunk + jnp.arange(chunk, dtype=jnp.int32)
                scores = jnp.where(row_numbers[None, :] < num_rows, scorer(queries, block), -jnp.inf)
                scores, positions = grouped_top_k(scores, per_chunk_k, group_size)
                # The running best (lower rows) comes first, so top_k keeps it on ties.
                merged_scores = jnp.concatenate([best_scores, scores], axis=1)
                merged_rows = jnp.concatenate([best_rows, row_numbers[positions]], axis=1)
                top_scores, picked = lax.top_k(merged_scores, k)
                return (top_scores, jnp.take_along_axis(merged_rows, picked, axis=1)), None

            init = (jnp.full((num_queries, k), -jnp.inf, jnp.float32), jnp.full((num_queries, k), -1, jnp.int32))
            (scores, row_ids), _ = lax.scan(step, init, (jnp.arange(num_chunks, dtype=jnp.int32), chunks))
            # Gathered in device order = row-block order, so equal scores keep ascending rows across devices too.
            all_scores = lax.all_gather(scores, axes, axis=1, tiled=True)  # [queries, devices * k]
            all_rows = lax.all_gather(row_ids, axes, axis=1, tiled=True)
            top_scores, picked = lax.top_k(all_scores, k)
            return top_scores, jnp.take_along_axis(all_rows, picked, axis=1)

        P = jax.sharding.PartitionSpec
        # Every device reduces the same all-gathered candidates, so the outputs are replicated; the type system
        # cannot infer that through all_gather, hence check_vma=False.
        mapped = jax.shard_map(shard_top_k, mesh=self.mesh, in_specs=(P(), P(axes)), out_specs=(P(), P()),
                               check_vma=False)
        return jax.jit(mapped)

    def search_rows(self, queries: PyTree, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_k(k)
        leaves = jax.tree_util.tree_leaves(queries)
        num_queries = leaves[0].shape[0]
        batch = self.query_batch_size
        function = self._function(batch, k)
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        all_scores, all_rows = [], []
        for start in range(0, num_queries, batch):
            block = jax.tree_util.tree_map(lambda x: _pad_rows(np.asarray(x)[start:start + batch], batch), queries)
            block = jax.device_put(block, replicated)
            scores, rows = function(block, self.rows)
            real = min(batch, num_queries - start)
            all_scores.append(np.asarray(scores)[:real])
            all_rows.append(np.asarray(rows)[:real].astype(np.int64))
        if not all_scores:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate(all_scores), np.concatenate(all_rows)


def default_chunk_rows(platform: str, query_batch_size: int, dim: Optional[int]) -> int:
    """Rows each device scores per search step when the caller names no chunk size.

    Each step of the scan costs a fixed set of kernels (two top-k, a merge) whatever its size; on an H100 the 31
    steps over 1M rows took about 0.3 ms each, most of a 32-query search. So on accelerators pooled vectors are
    scored in as few steps as keep one step's float32 scores and float32 copy of its rows within 1 GiB
    (262144 rows for 256 queries x 768). CPUs, and max-sim scoring, whose intermediates grow with the token
    counts, keep 32768-row steps.

    Args:
      platform: the devices' platform ("cpu", "gpu", "tpu").
      query_batch_size: queries per search call.
      dim: vector size for inner-product scoring; None for other scorers.

    Returns:
      Rows per step (before `_even_chunk_rows` evens them out).
    """
    if platform == "cpu" or dim is None:
        return _CPU_CHUNK_ROWS
    rows = _ACCELERATOR_CHUNK_BYTES // (4 * (query_batch_size + dim))
    return max(_CPU_CHUNK_ROWS, rows // _CHUNK_ALIGN * _CHUNK_ALIGN)


def _even_chunk_rows(rows: int, chunk_rows: int) -> int:
    """Rows per chunk, at most `chunk_rows`, for as few chunks as `chunk_rows` allows over `rows` and as little
    padding as possible: 100k rows in 32768-row chunks would be scored as 131072; in four 25088-row chunks, 100352.
    Chunks of 1024 rows and more are rounded up to a multiple of 256, so that `grouped_top_k` finds a group size."""
    num_chunks = -(-rows // chunk_rows)
    even = -(-rows // num_chunks)
    align = _CHUNK_ALIGN if even >= 4 * _CHUNK_ALIGN else 1
    return min(chunk_rows, -(-even // align) * align)


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    if len(array) == rows:
        return array
    return np.concatenate([array, np.zeros((rows - len(array),) + array.shape[1:], array.dtype)])


# ------------------------------------------------------------------------------------------------ faiss
class FaissSearcher(Searcher):
    """Exact search on the CPU with faiss IndexFlatIP (pooled vectors only)."""

    def __init__(self, read_rows: RowReader, num_rows: int, dim: int, ids: Optional[IdTable] = None,
                 add_batch_rows: int = 1 << 18, num_threads: Optional[int] = None):
        """Copies the vectors (as float32, faiss's only flat type) into a faiss index.

        Args:
          read_rows: reads index rows [start, stop) as {"vectors": ...}.
          num_rows: rows in the index.
          dim: vector size.
          ids: passage ids of the rows.
          add_batch_rows: rows converted and added at a time (bounds the float32 copy).
          num_threads: OpenMP threads for faiss (default: faiss's own choice).
        """
        import faiss  # pylint: disable=import-outside-toplevel
        super().__init__(num_rows, ids)
        if num_threads:
            faiss.omp_set_num_threads(num_threads)
        self.index = faiss.IndexFlatIP(dim)
        for start in range(0, num_rows, add_batch_rows):
            block = read_rows(start, min(start + add_batch_rows, num_rows))
            if "vectors" not in block:
                raise ValueError("the faiss backend searches pooled vectors only; use the device backend for "
                                 "token-mode indexes")
            self.index.add(np.ascontiguousarray(block["vectors"], dtype=np.float32))

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, rows.astype(np.int64)

    def search_rows(self, queries: PyTree, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_k(k)
        queries = np.asarray(queries, dtype=np.float32)
        # One result more than asked shows whether the k-th score is tied with rows left out; only such
        # queries need more work to find the lowest tied rows (faiss does not promise which tied rows it keeps).
        fetch = min(k + 1, self.num_rows)
        scores, rows = self._search(queries, fetch)
        scores, rows = _sorted_by_score_then_row(scores, rows)
        if fetch > k:
            for query in np.flatnonzero(scores[:, k] == scores[:, k - 1]):
                scores_q, rows_q = self._all_tied_at_boundary(queries[query:query + 1], k)
                scores[query, :k], rows[query, :k] = scores_q, rows_q
        return scores[:, :k], rows[:, :k]

    def _all_tied_at_boundary(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of one query whose k-th score is tied beyond k: widen until a lower score shows up."""
        fetch = k
        while True:
            fetch = min(2 * fetch, self.num_rows)
            scores, rows = self._search(query, fetch)
            scores, rows = _sorted_by_score_then_row(scores[0], rows[0])
            if fetch == self.num_rows or scores[-1] < scores[k - 1]:
                return scores[:k], rows[:k]


def resolve_backend(backend: str, token_mode: bool = False) -> str:
    """The backend that "auto" stands for here; "device" and "faiss" are returned as they are.

    Args:
      backend: "auto", "device" or "faiss".
      token_mode: the index holds token vectors (ReAtt max-sim), which only the device search scores.

    Returns:
      "faiss" for "auto" with pooled vectors in a single-process run on CPU (the faster one there), else "device".
    """
    if backend != "auto":
        return backend
    if not token_mode and jax.default_backend() == "cpu" and jax.process_count() == 1:
        return "faiss"
    return "device"


def make_searcher(backend: str, read_rows: RowReader, num_rows: int, dim: int, *,
                  mesh: Optional[jax.sharding.Mesh] = None, ids: Optional[IdTable] = None,
                  **options: Any) -> Searcher:
    """A searcher of the named backend ("device" or "faiss"; see `resolve_backend` for "auto").

    Raises:
      ValueError: an unknown backend, or "device" without a mesh.
    """
    backend = resolve_backend(backend)
    if backend == "faiss":
        return FaissSearcher(read_rows, num_rows, dim, ids, **options)
    if backend == "device":
        if mesh is None:
            raise ValueError("the device backend needs a mesh")
        return DeviceSearcher(read_rows, num_rows, mesh, ids, **options)
    raise ValueError(f"backend {backend!r}: expected 'auto', 'device' or 'faiss'")

