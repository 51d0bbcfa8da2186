"""The training queries of a refreshed run, in the exact order training consumes them.

The asynchronous passage update re-retrieves passages for "the next block of training queries", so the refresh
must know which queries steps [s, s + N) will read. It owns that order: the queries form an endless stream of
epochs, each a seeded permutation of all queries, and step t trains on stream positions [t * B, (t + 1) * B)
(B = the global batch size). Epoch e orders the queries by a keyed hash of (seed, e, position in the query
list), which depends on nothing but those numbers (not on a library's random generator), so the order is the
same on every host, after a restart, and across library versions.

The queries are read from FiD example directories (tasks/fid_files.py): the stage's initial training files,
whose passages are ignored and re-retrieved. Every field the training task needs (question, target, answers,
source passage, ...) comes from there.
"""

import dataclasses
import hashlib
import logging
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from class_jax.runtime.errors import UserError
from class_jax.tasks import fid_files

# The query-level fields of a FiD record (passages are not parsed: the refresh replaces them).
_QUERY_FIELDS = ("id", "lang", "question", "answers", "target", "english_question", "source_passage_id")
_PARSE_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class QueryBlock:
    """The queries of steps [start_step, start_step + num_steps), in consumption order.

    Attributes:
      start_step: first step of the block.
      num_steps: steps covered.
      batch_size: global rows per step.
      queries: num_steps * batch_size queries (FiD examples without passages); query i is row i % batch_size
        of step start_step + i // batch_size.
    """

    start_step: int
    num_steps: int
    batch_size: int
    queries: tuple[fid_files.FiDExample, ...]


def _expand(fid_dirs: fid_files.FiDDirs, languages: Optional[Sequence[str]]) -> list[str]:
    """Directory specs with "{lang}" expanded over `languages` (language-major order)."""
    items = [fid_dirs] if isinstance(fid_dirs, str) else list(fid_dirs)
    templated = [item for item in items if "{lang}" in item]
    if templated and not languages:
        raise UserError(f"query directories {templated} contain '{{lang}}' but no languages are given")
    if not templated:
        return items
    return [item.format(lang=lang) for lang in languages for item in items]


def _read_queries(fid_dir: str) -> list[fid_files.FiDExample]:
    """The queries of one FiD directory in written order, parsing only the query-level fields.

    Record i lives in shard i % n at position i // n, so reading the n shards round-robin one record at a time
    gives back the written order. Batched parsing of the query fields alone is ~50x faster than
    fid_files.read_fid_examples on records with many passages (it matters for millions of MLQA-PT questions).
    """
    manifest = fid_files.read_manifest(fid_dir)
    paths = fid_files.shard_paths(fid_dir, manifest)
    has = manifest["has"]
    full_spec = fid_files.feature_description()
    spec = {name: full_spec[name] for name in _QUERY_FIELDS}
    records = tf.data.Dataset.from_tensor_slices(paths).interleave(tf.data.TFRecordDataset,
                                                                   cycle_length=len(paths), block_length=1)
    batches = records.batch(_PARSE_BATCH).map(lambda serialized: tf.io.parse_example(serialized, spec))
    queries = []
    for batch in batches:
        columns = {name: value.to_list() if isinstance(value, tf.RaggedTensor) else value.numpy().tolist()
                   for name, value in batch.items()}
        for values in zip(*(columns[name] for name in _QUERY_FIELDS)):
            record = dict(zip(_QUERY_FIELDS, values))
            text = {name: record[name].decode("utf-8") for name in _QUERY_FIELDS if name != "answers"}
            queries.append(fid_files.FiDExample(
                id=text["id"], lang=text["lang"], question=text["question"],
                answers=tuple(a.decode("utf-8") for a in record["answers"]), passages=(), target=text["target"],
                english_question=text["english_question"] if has["english_question"] else None,
                source_passage_id=text["source_passage_id"] if has["source_passage_id"] else None))
    if len(queries) != manifest["num_examples"]:
        raise UserError(f"{fid_dir}: read {len(queries)} records, the manifest records {manifest['num_examples']}")
    return queries


def load_queries(fid_dirs: fid_files.FiDDirs, languages: Optional[Sequence[str]] = None
                 ) -> list[fid_files.FiDExample]:
    """The queries of FiD example directories, in directory then record order, without passages.

    Args:
      fid_dirs: a directory, a glob, or a list of them; entries with "{lang}" are expanded over `languages`.
      languages: languages for "{lang}" templates.

    Returns:
      The queries.

    Raises:
      UserError: a bad or missing directory (see fid_files.read_manifest), or no query at all.
    """
    queries = []
    for fid_dir in fid_files.resolve_fid_dirs(_expand(fid_dirs, languages)):
        found = _read_queries(fid_dir)
        queries.extend(found)
        logging.info("Refresh queries: %d from %s.", len(found), fid_dir)
    if not queries:
        raise UserError(f"no training query in {fid_dirs!r}: the refresh has nothing to retrieve for")
    return queries


def queries_fingerprint(queries: Sequence[fid_files.FiDExample]) -> str:
    """sha256 over the ids and questions in order (tells whether a round was made for the same query list)."""
    digest = hashlib.sha256()
    for query in queries:
        digest.update(f"{query.id}\t{query.question}\n".encode("utf-8"))
    return digest.hexdigest()


class QueryStream:
    """Epochs of seeded permutations of a fixed query list, read by stream position."""

    def __init__(self, queries: Sequence[fid_files.FiDExample], seed: int):
        """Wraps the queries.

        Args:
          queries: the query list (its order matters: it is part of what the seed permutes).
          seed: permutation seed.

        Raises:
          UserError: no queries.
        """
        if not queries:
            raise UserError("the refresh query stream needs at least one query")
        self.queries = tuple(queries)
        self.seed = seed
        self.fingerprint = queries_fingerprint(self.queries)
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.queries)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Query indices in the order epoch `epoch` reads them (a permutation of range(len(self)))."""
        if epoch not in self._orders:
            if len(self._orders) > 4:  # blocks only ever look at neighbouring epochs
                self._orders.pop(min(self._orders))
            key = f"{self.seed}:{epoch}:".encode()
            keys = [hashlib.blake2b(key + str(i).encode(), digest_size=8).digest() for i in range(len(self))]
            self._orders[epoch] = np.asarray(sorted(range(len(self)), key=lambda i: (keys[i], i)), np.int64)
        return self._orders[epoch]

    def positions(self, start: int, stop: int) -> list[int]:
        """Query indices at stream positions [start, stop)."""
        count = len(self)
        return [int(self.epoch_order(p // count)[p % count]) for p in range(start, stop)]

    def block(self, start_step: int, num_steps: int, batch_size: int) -> QueryBlock:
        """The queries of steps [start_step, start_step + num_steps) at `batch_size` rows per step.

        Raises:
          ValueError: a negative step or non-positive sizes.
        """
        if start_step < 0 or num_steps < 1 or batch_size < 1:
            raise ValueError(f"bad block: start_step={start_step}, num_steps={num_steps}, batch_size={batch_size}")
        first = start_step * batch_size
        indices = self.positions(first, first + num_steps * batch_size)
        return QueryBlock(start_step=start_step, num_steps=num_steps, batch_size=batch_size,
                          queries=tuple(self.queries[i] for i in indices))
