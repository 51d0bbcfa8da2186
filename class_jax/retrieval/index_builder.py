"""Encoding a corpus into an index: resumable, sharded over devices, split over hosts.

The corpus rows are cut into index shards of `shard_size` rows (see `index_format`). Each process encodes a
contiguous block of shards (its share of the corpus) with one jitted program whose batch spans every device of
every host; a process that runs out of work feeds empty rows until the others finish, since all must take the
same number of steps. Every shard starts a new batch, so a shard's bytes do not depend on which shards were
skipped: a killed build resumed later writes exactly what an uninterrupted one would have.

Multi-host builds need INDEX_DIR on a file system every host sees (NFS, a GCS FUSE mount): process 0 writes the
spec and the manifest from the shard markers the others wrote.
"""

import logging
import math
import pathlib
import queue
import shutil
import threading
import time
from typing import Any, Iterator, NamedTuple, Optional

import jax
from jax.experimental import multihost_utils
import numpy as np

from class_jax.corpus import corpus_io
from class_jax.models import retrievers
from class_jax.runtime.errors import UserError
from class_jax.retrieval import index_format
from class_jax.tasks import text_inputs
from class_jax.retrieval.corpus_source import CorpusSource
from class_jax.retrieval.encoder import RetrievalEncoder
from class_jax.runtime.partitioning import Partitioner
from class_jax.retrieval import loaded_model
from class_jax.retrieval.model_identity import ModelIdentity

DEFAULT_SHARD_SIZE = 1 << 17  # 131,072 passages: 256 MiB of float16 mT5-large vectors per shard


class _Batch(NamedTuple):
    shard: int
    tokens: np.ndarray
    passage_ids: list[str]


def barrier(name: str) -> None:
    """Waits for every process at `name` (a no-op in a single process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def clear_stale_index(index_dir: pathlib.Path, identity: ModelIdentity, barrier_name: str) -> None:
    """Removes a scratch index built with other parameters, so that building it again does not resume that one.

    Args:
      index_dir: the scratch index (a training hook's, rebuilt with the current parameters each time).
      identity: the parameters the index is about to be built with.
      barrier_name: where the processes wait for process 0's removal.
    """
    if jax.process_index() == 0 and index_dir.is_dir():
        try:
            spec = index_format.read_spec(index_dir)
        except UserError:
            spec = None
        if spec is None or not identity.same_model(spec.model):
            shutil.rmtree(index_dir)
    barrier(barrier_name)


def _host_shards(num_shards: int) -> range:
    """The contiguous block of shards this process encodes."""
    index, count = jax.process_index(), jax.process_count()
    return range(index * num_shards // count, (index + 1) * num_shards // count)


def _prefetched(iterator: Iterator[Any], depth: int = 4) -> Iterator[Any]:
    """Runs `iterator` in a thread `depth` items ahead (tokenising overlaps device work); re-raises its errors."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as e:  # pylint: disable=broad-except
            items.put(e)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class CorpusEncoder:
    """Builds (or resumes) one index from one corpus with one model."""

    def __init__(self, encoder: RetrievalEncoder, vocabulary: text_inputs.Vocabulary, corpus: CorpusSource,
                 index_dir: str | pathlib.Path, identity: ModelIdentity, vocabulary_sha256: str,
                 dtype: str = "float16", shard_size: int = DEFAULT_SHARD_SIZE,
                 passage_max_length: int = text_inputs.PASSAGE_MAX_LENGTH):
        """Plans the build.

        Args:
          encoder: the sharded retrieval encoder (its dtype should be `dtype`).
          vocabulary: tokenizer with `encode` and `eos_id`.
          corpus: the planned corpus rows.
          index_dir: where the index goes (created; a started build there is resumed).
          identity: the encoding model's identity.
          vocabulary_sha256: sha256 of the vocabulary file.
          dtype: stored vector dtype, "float16" or "float32".
          shard_size: rows per index shard.
          passage_max_length: passage tokens, EOS included.

        Raises:
          UserError: a bad dtype or shard size.
        """
        if dtype not in index_format.VECTOR_DTYPES:
            raise UserError(f"--dtype {dtype!r}: expected one of {', '.join(index_format.VECTOR_DTYPES)}")
        if shard_size < 1:
            raise UserError(f"shard size must be positive, got {shard_size}")
        self.encoder = encoder
        self.vocabulary = vocabulary
        self.corpus = corpus
        self.index_dir = index_format.index_dir_path(index_dir)
        config = encoder.model.config
        self.spec = index_format.IndexSpec(
            model=identity.to_json(), vocabulary_sha256=vocabulary_sha256, passage_max_length=passage_max_length,
            dtype=dtype, dim=retrievers.get_retriever(config).index_dim(config),
            shard_size=shard_size, corpus_root=str(corpus.root), corpus_files=corpus.to_json(),
            num_rows=corpus.num_rows)

    # ------------------------------------------------------------------------------------------------ setup
    def _claim(self) -> Optional[dict[str, Any]]:
        """Checks a previous build in the directory; returns its manifest when it is already complete.

        Raises:
          UserError: the directory holds an index (or a started build) of a different model, corpus or format.
        """
        for name in (index_format.MANIFEST_FILE, index_format.SPEC_FILE):
            path = self.index_dir / name
            if not path.is_file():
                continue
            previous = index_format.IndexSpec.from_json(index_format.read_json(path), str(path))
            differences = previous.differences(self.spec)
            if differences:
                state = "holds a complete index" if name == index_format.MANIFEST_FILE else "holds a started build"
                model = previous.model.get("checkpoint")
                raise UserError(f"{self.index_dir} {state} made with a different {', '.join(differences)} "
                                f"(model {model}); refusing to mix shards: choose another --out or delete it")
            if name == index_format.MANIFEST_FILE:
                return index_format.read_json(path)
        return None

    def _batches(self, shards: list[int]) -> Iterator[_Batch]:
        """Tokenised batches of this process's pending shards; each shard starts a new batch."""
        local_batch = self.encoder.local_batch_size
        length = self.spec.passage_max_length
        for shard in shards:
            first, stop = self.spec.shard_rows(shard)
            ids: list[str] = []
            sequences: list[list[int]] = []
            for record in self.corpus.iter_rows(first, stop):
                ids.append(record.passage_id)
                sequences.append(text_inputs.passage_ids(self.vocabulary, record.title, record.text, length))
                if len(ids) == local_batch:
                    yield _Batch(shard, text_inputs.pad_batch(sequences, length), ids)
                    ids, sequences = [], []
            if ids:
                yield _Batch(shard, text_inputs.pad_batch(sequences, length), ids)

    # ------------------------------------------------------------------------------------------------ build
    def run(self, progress: bool = True) -> dict[str, Any]:
        """Encodes every shard not yet complete, then writes the manifest.

        Args:
          progress: show a progress bar (process 0).

        Returns:
          The manifest.

        Raises:
          UserError: incompatible previous build, or bad corpus input (file and line named).
        """
        from tqdm import tqdm  # pylint: disable=import-outside-toplevel

        if jax.process_index() == 0:
            complete = self._claim()
            if complete is not None:
                logging.info("%s is already complete (%d passages).", self.index_dir, complete["count"])
            else:
                self.index_dir.mkdir(parents=True, exist_ok=True)
                corpus_io.remove_partial_files(self.index_dir)  # temporary files of a killed build
                index_format.write_spec(self.index_dir, self.spec)
        barrier("class_jax_index_spec")
        complete = self._claim()
        if complete is not None:
            return complete

        done = index_format.completed_shards(self.index_dir, self.spec)
        pending = [s for s in _host_shards(self.spec.num_shards) if s not in done]
        local_batch = self.encoder.local_batch_size
        rows = {s: self.spec.shard_rows(s)[1] - self.spec.shard_rows(s)[0] for s in pending}
        local_steps = sum(math.ceil(count / local_batch) for count in rows.values())
        steps = int(np.max(multihost_utils.process_allgather(np.asarray(local_steps)))) if (
            jax.process_count() > 1) else local_steps
        logging.info("Index %s: %d shards, %d complete; this process encodes %d shards (%d passages) in %d steps.",
                     self.index_dir, self.spec.num_shards, len(done), len(pending), sum(rows.values()), steps)

        bar = tqdm(total=sum(rows.values()), unit="passage", desc="encoding corpus", smoothing=0.05,
                   disable=not progress or jax.process_index() != 0)
        batches = _prefetched(self._batches(pending))
        empty = np.zeros((0, self.spec.passage_max_length), np.int32)
        collected: dict[str, list[np.ndarray]] = {}
        collected_ids: list[str] = []
        in_flight: Optional[tuple[dict[str, jax.Array], Optional[_Batch]]] = None
        started = time.perf_counter()

        def finish(outputs: dict[str, jax.Array], batch: Optional[_Batch]) -> None:
            if batch is None:
                return
            for name, value in self.encoder.fetch_local(outputs, len(batch.passage_ids)).items():
                stored = value if name == "lengths" else value.astype(self.spec.dtype, copy=False)
                collected.setdefault(name, []).append(stored)
            collected_ids.extend(batch.passage_ids)
            bar.update(len(batch.passage_ids))
            if len(collected_ids) == rows[batch.shard]:
                arrays = {name: np.concatenate(parts) for name, parts in collected.items()}
                index_format.write_shard(self.index_dir, self.spec, batch.shard, arrays, collected_ids)
                collected.clear()
                collected_ids.clear()

        try:
            for _ in range(steps):
                batch = next(batches, None)
                outputs = self.encoder.dispatch_local(empty if batch is None else batch.tokens, is_query=False)
                if in_flight is not None:
                    finish(*in_flight)  # fetch the previous batch while this one runs
                in_flight = (outputs, batch)
            if in_flight is not None:
                finish(*in_flight)
            leftover = next(batches, None)
            if leftover is not None:
                raise RuntimeError(f"shard {leftover.shard} has more batches than planned")
        finally:
            bar.close()
            batches.close()
        elapsed = time.perf_counter() - started
        logging.info("Encoded %d passages in %.1f s (%.1f passages/s on this process).", sum(rows.values()),
                     elapsed, sum(rows.values()) / max(elapsed, 1e-9))

        barrier("class_jax_index_shards")
        if jax.process_index() == 0:
            done = index_format.completed_shards(self.index_dir, self.spec)
            missing = [s for s in range(self.spec.num_shards) if s not in done]
            if missing:
                raise UserError(f"{self.index_dir}: shards {missing[:10]} are missing after encoding; is the "
                                "directory on a file system every host sees?")
            index_format.write_manifest(self.index_dir, self.spec, done.values())
        barrier("class_jax_index_manifest")
        return index_format.read_json(self.index_dir / index_format.MANIFEST_FILE)


def encode_corpus(encoder: RetrievalEncoder, vocabulary: text_inputs.Vocabulary, corpus: CorpusSource,
                  index_dir: str | pathlib.Path, identity: ModelIdentity, vocabulary_sha256: str, *,
                  dtype: str = "float16", shard_size: int = DEFAULT_SHARD_SIZE,
                  passage_max_length: int = text_inputs.PASSAGE_MAX_LENGTH, progress: bool = True) -> dict[str, Any]:
    """Encodes `corpus` into an index at `index_dir` (resuming a build started there); see `CorpusEncoder`.

    Returns:
      The index manifest.

    Raises:
      UserError: an incompatible build already in `index_dir`, or bad corpus input.
    """
    return CorpusEncoder(encoder, vocabulary, corpus, index_dir, identity, vocabulary_sha256, dtype=dtype,
                         shard_size=shard_size, passage_max_length=passage_max_length).run(progress)


def build_index(checkpoint: str, vocabulary_path: Optional[str], corpus: CorpusSource, out: str,
                partitioner: Partitioner, *, batch_size: int = 256, dtype: str = "float16",
                shard_size: int = DEFAULT_SHARD_SIZE,
                passage_max_length: int = text_inputs.PASSAGE_MAX_LENGTH, progress: bool = True) -> dict[str, Any]:
    """Encodes `corpus` with a params directory into the index `out` (resuming a killed build).

    Args:
      checkpoint: the params directory.
      vocabulary_path: a SentencePiece model, or None for the checkpoint's own.
      corpus: the planned corpus rows.
      out: the index directory.
      partitioner: where the parameters are placed.
      batch_size: passages per step over all devices.
      dtype: stored vector dtype.
      shard_size: passages per index shard.
      passage_max_length: passage tokens, EOS included.
      progress: show a progress bar.

    Returns:
      The index manifest.

    Raises:
      UserError: bad checkpoint or vocabulary, a batch that does not split over the devices, or an incompatible
        build in `out`.
    """
    vocabulary, vocabulary_sha256 = loaded_model.load_vocabulary(vocabulary_path, checkpoint)
    loaded = loaded_model.load_model(checkpoint, partitioner, vocabulary)
    try:
        encoder = RetrievalEncoder(loaded.model, loaded.params, partitioner, batch_size, dtype=dtype)
    except ValueError as e:
        raise UserError(f"--batch_size {batch_size}: {e}") from e
    return encode_corpus(encoder, vocabulary, corpus, out, loaded.identity, vocabulary_sha256,
                                        dtype=dtype, shard_size=shard_size, passage_max_length=passage_max_length,
                                        progress=progress)
