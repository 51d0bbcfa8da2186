"""The asynchronous passage update (docs/method.md#asynchronous-passage-refresh) as a trainer hook.

Every N steps (and at step 0 when configured) `PassageRefresh`, inside the training process and on the training
mesh, with the CURRENT parameters (no checkpoint round-trip):

  1. takes the block of training queries steps [s, s + N) will consume (refresh_queries.QueryStream: a seeded
     permutation of the queries per epoch, B queries per step);
  2. re-encodes the corpus into a scratch index with the current retriever (corpus_encoder: sharded over the
     devices, split over hosts, resumable);
  3. retrieves the top k + 1 passages of every query of the block and drops the query's own source passage
     (MLQA-PT's `source_passage_id`), keeping k;
  4. writes the block as FiD files in consumption order to MODEL_DIR/refresh/step_{s}/ (refresh_rounds; the
     manifest, written last, records the step, the block and the retriever fingerprint);
  5. returns DataSwitch(round source, start_step=s): step s + j trains on records [j * B, (j + 1) * B).

Resumption (the trainer's contract, hooks.py): a run resumed at a step r that is not a refresh step reloads the
newest complete round made at a step <= r and returns its switch; the trainer skips the r - s batches already
consumed. A refresh step reached again (a restart at s, or a round killed half-way) redoes the round, unless a
complete round for the same step, block, settings and retriever fingerprint is already there, which is reused.
Old rounds are pruned to the newest `keep_rounds`, never removing a round a retained checkpoint resumes into.

Time per phase goes to the log and to metrics.jsonl (`refresh/*` scalars at the refresh step).

Configured in gin/stages/refresh.gin through `passage_refresh_hooks`.
"""

import dataclasses
import hashlib
import logging
import pathlib
import shutil
import time
from typing import Any, Iterator, Mapping, Optional, Sequence

import jax
import numpy as np
import tensorflow as tf

from class_jax.runtime.errors import UserError
from class_jax.runtime import stages
from class_jax.models.class_model import CLASSModel
from class_jax.retrieval import index_builder, retrieve
from class_jax.fid import refresh_queries, refresh_rounds
from class_jax.retrieval.corpus_source import CorpusSource, PassageRecord
from class_jax.retrieval.encoder import RetrievalEncoder
from class_jax.retrieval.index_reader import IndexReader
from class_jax.retrieval.loaded_model import LoadedModel
from class_jax.retrieval.model_identity import ModelIdentity, model_identity
from class_jax.tasks import fid_files
from class_jax.tasks import vocab as vocab_lib
from class_jax.trainer import data as data_lib
from class_jax.trainer import hooks
from class_jax.trainer import metrics as metrics_lib

# The stages a refresh trains (their FiD task kind is the stage's name).
TRAINING_KINDS = (stages.Stage.MLQA_PT, stages.Stage.FINETUNE)
# Round settings that must agree for a round on disk to be the one this run would write (or resume into).
_ROUND_SETTINGS = ("every_steps", "batch_size", "num_passages", "seed", "kind", "queries_fingerprint",
                   "corpus_rows", "query_length", "passage_length", "vocabulary_sha256")


def _file_sha256(path: str) -> str:
    with tf.io.gfile.GFile(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@dataclasses.dataclass(frozen=True)
class RoundStats:
    """What one round did, for logs and metrics."""

    encode_corpus_seconds: float = 0.0
    retrieve_seconds: float = 0.0
    write_seconds: float = 0.0
    source_passages_dropped: int = 0
    reused: bool = False


def _current_names(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Round metadata with its recorded kind in today's spelling (rounds written before the rename say "anchor_qa")."""
    metadata = dict(metadata)
    if isinstance(metadata.get("kind"), str):
        try:
            metadata["kind"] = stages.parse(metadata["kind"], warn=False).value
        except ValueError:
            pass  # Not a stage: left as recorded, so that it differs.
    return metadata


class PassageRefresh:
    """The refresh hook function (see the module docstring); `passage_refresh_hooks` wraps it for gin."""

    def __init__(self, *, corpus_dir: str, query_fid_dirs: fid_files.FiDDirs, batch_size: int,
                 task_feature_lengths: Mapping[str, Any], every_steps: int = 1000, run_at_start: bool = True,
                 query_languages: Optional[Sequence[str]] = None, corpus_languages: Optional[Sequence[str]] = None,
                 kind: str = "mlqa_pt", vocab_path: Optional[str] = None, seed: int = 0,
                 encode_batch_size: int = 64, index_dtype: str = "float16",
                 shard_size: int = index_builder.DEFAULT_SHARD_SIZE, num_shards: int = 8, keep_rounds: int = 2,
                 keep_index: bool = False, search_options: Optional[Mapping[str, Any]] = None,
                 tensorboard: bool = True, progress: bool = True):
        """Configures the refresh (nothing is read until the first call).

        Args:
          corpus_dir: the ingested corpus to retrieve from (`class-jax ingest --out`).
          query_fid_dirs: FiD directories holding the training queries (the stage's initial training files; their
            passages are ignored); entries with "{lang}" are expanded over `query_languages`.
          batch_size: the GLOBAL training batch size (queries per step).
          task_feature_lengths: the training task's lengths: query_tokens Lq, passage_tokens (k, Lp), targets.
          every_steps: N, steps between refreshes (and the steps each round covers).
          run_at_start: also refresh at step 0 (the first retrieval with the initial parameters).
          query_languages: languages for "{lang}" in `query_fid_dirs`.
          corpus_languages: corpus languages to index (default: every ingested language).
          kind: the stage the rounds are read as (its FiD task kind): "mlqa_pt" or "finetune" (the old "anchor_qa"
            and "qa" still read, with a FutureWarning).
          vocab_path: SentencePiece model of the tasks (see tasks/vocab.py).
          seed: seed of the per-epoch query permutation.
          encode_batch_size: rows per encoding step over all devices (must split over the batch shards).
          index_dtype: stored vector dtype of the scratch index ("float16" or "float32").
          shard_size: rows per index shard (the unit of resumption of a killed corpus encoding).
          num_shards: FiD shard files per round (at most refresh_rounds.MAX_ROUND_SHARDS).
          keep_rounds: newest complete rounds kept on disk (>= 1).
          keep_index: keep each round's corpus index instead of deleting it once the round is written.
          search_options: options of the device searcher (query_batch_size, chunk_rows, device_dtype).
          tensorboard: also write the refresh scalars to TensorBoard.
          progress: progress bars.

        Raises:
          ValueError: inconsistent settings.
        """
        kind = stages.parse(kind, allowed=TRAINING_KINDS, what="refresh kind")
        if every_steps < 1 or batch_size < 1 or keep_rounds < 1:
            raise ValueError(f"every_steps ({every_steps}), batch_size ({batch_size}) and keep_rounds "
                             f"({keep_rounds}) must be >= 1")
        if not 1 <= num_shards <= refresh_rounds.MAX_ROUND_SHARDS:
            raise ValueError(f"num_shards={num_shards}: must be in [1, {refresh_rounds.MAX_ROUND_SHARDS}] so that "
                             "rounds read back in written order")
        passage_shape = task_feature_lengths["passage_tokens"]
        if isinstance(passage_shape, int) or len(passage_shape) != 2:
            raise ValueError(f"task_feature_lengths['passage_tokens'] must be (k, passage_length), got "
                             f"{passage_shape!r}")
        self.corpus_dir = corpus_dir
        self.query_fid_dirs = query_fid_dirs
        self.query_languages = query_languages
        self.corpus_languages = corpus_languages
        self.batch_size = batch_size
        self.task_feature_lengths = dict(task_feature_lengths)
        self.num_passages, self.passage_length = int(passage_shape[0]), int(passage_shape[1])
        self.query_length = int(task_feature_lengths["query_tokens"])
        self.every_steps = every_steps
        self.run_at_start = run_at_start
        self.kind = kind
        self.vocab_path = vocab_path
        self.seed = seed
        self.encode_batch_size = encode_batch_size
        self.index_dtype = index_dtype
        self.shard_size = shard_size
        self.num_shards = num_shards
        self.keep_rounds = keep_rounds
        self.keep_index = keep_index
        self.search_options = dict(search_options or {})
        self.tensorboard = tensorboard
        self.progress = progress
        self._stream: Optional[refresh_queries.QueryStream] = None
        self._corpus: Optional[CorpusSource] = None
        self._vocabulary: Any = None
        self._vocabulary_sha256 = ""
        self._encoder: Optional[RetrievalEncoder] = None
        self._writer: Optional[metrics_lib.MetricsWriter] = None

    # ------------------------------------------------------------------------------------------------ setup
    def _prepare(self) -> None:
        """Reads the queries, plans the corpus and loads the vocabulary (once)."""
        if self._stream is not None:
            return
        self._vocabulary = vocab_lib.get_vocabulary(self.vocab_path)
        self._vocabulary_sha256 = _file_sha256(vocab_lib.vocabulary_path(self.vocab_path))
        self._corpus = CorpusSource.plan(self.corpus_dir, self.corpus_languages)
        if self._corpus.num_rows < self.num_passages:
            raise UserError(f"{self.corpus_dir}: {self._corpus.num_rows} passages cannot fill k = "
                            f"{self.num_passages} passages per query")
        queries = refresh_queries.load_queries(self.query_fid_dirs, self.query_languages)
        self._stream = refresh_queries.QueryStream(queries, self.seed)
        logging.info("Passage refresh: %d queries, %d corpus passages, every %d steps, k = %d.", len(queries),
                     self._corpus.num_rows, self.every_steps, self.num_passages)

    def settings(self) -> dict[str, Any]:
        """The settings a round records (and a round on disk must match)."""
        self._prepare()
        return {"every_steps": self.every_steps, "batch_size": self.batch_size, "num_passages": self.num_passages,
                "seed": self.seed, "kind": self.kind.value, "queries_fingerprint": self._stream.fingerprint,
                "corpus_rows": self._corpus.num_rows, "query_length": self.query_length,
                "passage_length": self.passage_length, "vocabulary_sha256": self._vocabulary_sha256}

    def _encoder_for(self, ctx: hooks.HookContext) -> RetrievalEncoder:
        """The retrieval encoder, compiled once per run; each round only swaps in the current parameters."""
        if self._encoder is None or self._encoder.model is not ctx.model or (
                self._encoder.partitioner is not ctx.partitioner):
            try:
                self._encoder = RetrievalEncoder(ctx.model, ctx.params, ctx.partitioner, self.encode_batch_size,
                                                 dtype=self.index_dtype)
            except ValueError as e:
                raise UserError(f"refresh encode_batch_size {self.encode_batch_size}: {e}") from e
        self._encoder.params = ctx.params
        return self._encoder

    def _source(self, ctx: hooks.HookContext, step: int) -> refresh_rounds.RoundDataSource:
        return refresh_rounds.RoundDataSource(
            refresh_rounds.round_dir(ctx.model_dir, step), name=f"passage_refresh_step_{step}", kind=self.kind,
            global_batch_size=self.batch_size, task_feature_lengths=self.task_feature_lengths,
            feature_converter=data_lib.feature_converter_for(ctx.model), vocab_path=self.vocab_path)

    # ------------------------------------------------------------------------------------------------ hook
    def __call__(self, ctx: hooks.HookContext) -> Optional[hooks.DataSwitch]:
        """Refreshes at `ctx.step`, or re-establishes the round in force when `ctx.resuming`.

        Raises:
          TypeError: the trained model is not a CLASSModel (it has no retriever to refresh with).
          UserError: bad inputs, or a resumption whose round is missing or was made with other settings.
        """
        if not isinstance(ctx.model, CLASSModel):
            raise TypeError(f"the passage refresh needs a CLASSModel, the run trains a {type(ctx.model).__name__}")
        self._prepare()
        if ctx.resuming:
            return self._reestablish(ctx)
        return self._refresh(ctx)

    def _check_settings(self, recorded: Mapping[str, Any], where: pathlib.Path) -> None:
        recorded = _current_names(recorded)
        differing = [name for name, value in self.settings().items() if recorded.get(name) != value]
        if differing:
            raise UserError(f"{where}: refresh round made with other settings ({', '.join(differing)}); resuming "
                            "would train on other data than the interrupted run. Restore the run's settings or "
                            "start a new MODEL_DIR")

    def _reestablish(self, ctx: hooks.HookContext) -> Optional[hooks.DataSwitch]:
        """The switch in force at `ctx.step` of the interrupted run (None before the first refresh)."""
        found = refresh_rounds.latest_complete_round(ctx.model_dir, ctx.step)
        first_refresh = 0 if self.run_at_start else self.every_steps
        if found is None:
            if ctx.step < first_refresh:
                return None
            raise UserError(f"resuming at step {ctx.step}: no complete refresh round at or before it under "
                            f"{refresh_rounds.refresh_dir(ctx.model_dir)} (deleted?); the data of the "
                            "interrupted run cannot be reproduced")
        step, manifest = found
        directory = refresh_rounds.round_dir(ctx.model_dir, step)
        self._check_settings(manifest["metadata"], directory)
        if ctx.step >= step + self.every_steps:
            raise UserError(f"resuming at step {ctx.step}: the newest complete round, {directory}, covers steps "
                            f"{step}..{step + self.every_steps - 1}; the round of step "
                            f"{step + self.every_steps} is missing")
        logging.info("Passage refresh: resuming at step %d on the round of step %d (%s).", ctx.step, step,
                     directory)
        return hooks.DataSwitch(self._source(ctx, step), start_step=step)

    def _refresh(self, ctx: hooks.HookContext) -> hooks.DataSwitch:
        step = ctx.step
        started = time.perf_counter()
        directory = refresh_rounds.round_dir(ctx.model_dir, step)
        identity = model_identity(ctx.model.config, ctx.params, f"{ctx.model_dir}@step_{step}")
        metadata = {**self.settings(), "step": step, "num_steps": self.every_steps,
                    "retriever_fingerprint": identity.params_fingerprint, "model_config_hash": identity.config_hash}
        existing = refresh_rounds.read_complete_round(directory)
        if existing is not None and _current_names(existing["metadata"]) == metadata:
            logging.info("Passage refresh at step %d: %s is already complete for these parameters; reusing it.",
                         step, directory)
            stats = RoundStats(reused=True)
        else:
            stats = self._build_round(ctx, directory, identity, metadata)
        if jax.process_index() == 0:
            refresh_rounds.prune_rounds(ctx.model_dir, self.keep_rounds, step)
        index_builder.barrier(f"class_jax_refresh_done_{step}")
        seconds = time.perf_counter() - started
        logging.info("Passage refresh at step %d took %.1f s (corpus %.1f s, retrieval %.1f s, writing %.1f s; "
                     "%d own source passages dropped).", step, seconds, stats.encode_corpus_seconds,
                     stats.retrieve_seconds, stats.write_seconds, stats.source_passages_dropped)
        self._write_metrics(ctx.model_dir, step, seconds, stats)
        return hooks.DataSwitch(self._source(ctx, step), start_step=step)

    # ------------------------------------------------------------------------------------------------ round
    def _build_round(self, ctx: hooks.HookContext, directory: pathlib.Path, identity: ModelIdentity,
                     metadata: dict[str, Any]) -> RoundStats:
        """Encodes the corpus, retrieves for the block and writes the round's FiD files."""
        block = self._stream.block(ctx.step, self.every_steps, self.batch_size)
        encoder = self._encoder_for(ctx)
        index_dir = directory / refresh_rounds.INDEX_SUBDIR
        timer = time.perf_counter()
        index_builder.clear_stale_index(index_dir, identity, "class_jax_refresh_index_cleared")
        index_builder.encode_corpus(encoder, self._vocabulary, self._corpus, index_dir, identity,
                                     self._vocabulary_sha256, dtype=self.index_dtype, shard_size=self.shard_size,
                                     passage_max_length=self.passage_length, progress=self.progress)
        encode_seconds = time.perf_counter() - timer

        timer = time.perf_counter()
        index = IndexReader(index_dir)
        loaded = LoadedModel(model=ctx.model, params=ctx.params, config=ctx.model.config, identity=identity,
                             partitioner=ctx.partitioner)
        searcher = retrieve.make_index_searcher(loaded, index, "device", with_ids=False,
                                                query_length=self.query_length, **self.search_options)
        query_vectors = retrieve.encode_queries(encoder, self._vocabulary, [q.question for q in block.queries],
                                                self.query_length)
        # One more than k, so that dropping the query's own source passage still leaves k.
        scores, rows = searcher.search_rows(query_vectors, min(self.num_passages + 1, index.num_rows))
        del searcher  # frees the index rows held on the devices before training resumes
        retrieve_seconds = time.perf_counter() - timer

        timer = time.perf_counter()
        dropped = 0
        if jax.process_index() == 0:
            records = self._corpus.fetch(rows.reshape(-1))
            examples = _round_examples(block, scores, rows, records, self.num_passages)
            counted = _CountingExamples(examples, self.progress, ctx.step)
            fid_files.write_fid_examples(counted, str(directory), self.num_shards, num_passages=self.num_passages,
                                         metadata=metadata, overwrite=True)
            dropped = counted.dropped
            if not self.keep_index:
                shutil.rmtree(index_dir, ignore_errors=True)
        index_builder.barrier(f"class_jax_refresh_written_{ctx.step}")
        return RoundStats(encode_corpus_seconds=encode_seconds, retrieve_seconds=retrieve_seconds,
                          write_seconds=time.perf_counter() - timer, source_passages_dropped=dropped)

    def _write_metrics(self, model_dir: pathlib.Path, step: int, seconds: float, stats: RoundStats) -> None:
        if self._writer is None:
            self._writer = metrics_lib.MetricsWriter(model_dir, tensorboard=self.tensorboard)
        self._writer.write(step, {"seconds": seconds, "encode_corpus_seconds": stats.encode_corpus_seconds,
                                  "retrieve_seconds": stats.retrieve_seconds, "write_seconds": stats.write_seconds,
                                  "source_passages_dropped": stats.source_passages_dropped,
                                  "reused": float(stats.reused)}, prefix="refresh/")


def _round_examples(block: refresh_queries.QueryBlock, scores: np.ndarray, rows: np.ndarray,
                    records: Mapping[int, PassageRecord], k: int) -> Iterator[tuple[fid_files.FiDExample, int]]:
    """(FiD example, 1 if its source passage was dropped) per query of the block, in block order."""
    for query, query_scores, query_rows in zip(block.queries, scores, rows):
        source = query.source_passage_id or ""
        passages = []
        dropped = 0
        for score, row in zip(query_scores, query_rows):
            record = records[int(row)]
            if source and record.passage_id == source:
                dropped = 1
                continue
            passages.append(fid_files.FiDPassage(id=record.passage_id, title=record.title, text=record.text,
                                                 score=float(score)))
        yield dataclasses.replace(query, passages=tuple(passages[:k])), dropped


class _CountingExamples:
    """Iterates the examples for the writer while counting dropped source passages, with a progress bar."""

    def __init__(self, examples: Iterator[tuple[fid_files.FiDExample, int]], progress: bool, step: int):
        self.examples = examples
        self.progress = progress
        self.step = step
        self.dropped = 0

    def __iter__(self) -> Iterator[fid_files.FiDExample]:
        from tqdm import tqdm  # pylint: disable=import-outside-toplevel
        for example, dropped in tqdm(self.examples, desc=f"refresh round {self.step}", unit="query",
                                     disable=not self.progress):
            self.dropped += dropped
            yield example


def passage_refresh_hooks(*, corpus_dir: Optional[str], every_steps: int = 1000, run_at_start: bool = True,
                          **options: Any) -> list[hooks.PeriodicHook]:
    """The refresh as trainer hooks, for gin (REFRESH_HOOKS = @refresh.passage_refresh_hooks()).

    Args:
      corpus_dir: the corpus to retrieve from; None turns the refresh off (with a warning: training then reads
        the stage's initial FiD files throughout, which is not the paper's method).
      every_steps: N, steps between refreshes.
      run_at_start: also refresh at step 0.
      **options: the other `PassageRefresh` settings (query_fid_dirs, batch_size, task_feature_lengths, ...).

    Returns:
      [the periodic refresh hook], or [] when `corpus_dir` is None.
    """
    if corpus_dir is None:
        logging.warning("Passage refresh is OFF (REFRESH_CORPUS_DIR not set): training keeps the initial FiD "
                        "passages throughout instead of re-retrieving them every %d steps.", every_steps)
        return []
    function = PassageRefresh(corpus_dir=corpus_dir, every_steps=every_steps, run_at_start=run_at_start, **options)
    return [hooks.PeriodicHook(function, every_steps=every_steps, run_at_start=run_at_start, name="passage_refresh")]
