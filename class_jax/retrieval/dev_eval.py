"""XOR-Retrieve dev R@2kt / R@5kt with the model's own retrieval, as a dev evaluator of trainer/dev_selection.py.

At each evaluation, inside the training process and with the CURRENT parameters (the passage refresh's machinery,
class_jax/fid/refresh.py, without its data switch):

  1. encodes the corpus into a scratch index under MODEL_DIR/dev/<name>/index (index_builder.encode_corpus:
     sharded over the devices, split over hosts, resumable when the evaluation is killed half-way);
  2. encodes the dev questions and retrieves the top k passages of each (retrieve.make_index_searcher);
  3. scores them with the official-identical scorer (evaluation/xor_retrieve.score_xor_retrieve) exactly as
     `class-jax eval-xor-retrieve` scores the file `class-jax retrieve` writes: same passage texts in rank order,
     same query languages, same question order.

With the same settings (index dtype, k, backend, query and passage lengths) the figures equal those of
`class-jax index` + `retrieve` + `eval-xor-retrieve` run on a params directory holding the same parameters.

Metrics, lower-case: "r@2kt", "r@5kt", "r@2kt_<lang>", ..., and the corrected variant "corrected_r@2kt", ...
"""

import hashlib
import logging
import pathlib
import shutil
import time
from typing import Any, Optional, Sequence

import jax

from class_jax.evaluation import files, xor_retrieve
from class_jax.evaluation.records import GoldQuestion, RetrievalPrediction
from class_jax.models.class_model import CLASSModel
from class_jax.retrieval import index_builder, index_format, predictions, retrieve
from class_jax.retrieval.corpus_source import CorpusSource
from class_jax.retrieval.encoder import RetrievalEncoder
from class_jax.retrieval.index_reader import IndexReader
from class_jax.retrieval.loaded_model import LoadedModel
from class_jax.retrieval.model_identity import model_identity
from class_jax.runtime.errors import UserError
from class_jax.tasks import text_inputs
from class_jax.trainer import dev_selection, hooks


class XorRetrieveDevEval:
    """The XOR-Retrieve dev evaluator (see the module docstring)."""

    def __init__(self, *, dev_file: str, corpus_dir: str, corpus_languages: Optional[Sequence[str]] = None,
                 vocab_path: Optional[str] = None, name: str = "xor_retrieve", k: int = 100,
                 token_budgets: Sequence[int] = xor_retrieve.OFFICIAL_TOKEN_BUDGETS,
                 query_length: int = text_inputs.QUERY_MAX_LENGTH,
                 passage_length: int = text_inputs.PASSAGE_MAX_LENGTH, encode_batch_size: int = 256,
                 query_batch_size: int = 64, index_dtype: str = "float16",
                 shard_size: int = index_builder.DEFAULT_SHARD_SIZE, backend: str = "device",
                 search_options: Optional[dict[str, Any]] = None, scorer_workers: int = 1, keep_index: bool = False,
                 progress: bool = False):
        """Configures the evaluation (nothing is read until `check`).

        Args:
          dev_file: the XOR-Retrieve dev questions with gold answers (JSON Lines with id, question, lang, answers;
            xor_dev_retrieve_eng_span_v1_1.jsonl).
          corpus_dir: the ingested corpus to retrieve from (`class-jax ingest --out`).
          corpus_languages: corpus languages to index, in row order (default: every ingested language).
          vocab_path: SentencePiece model of the tasks (see tasks/vocab.py).
          name: prefix of the metrics (`dev/<name>/r@2kt`) and folder under MODEL_DIR/dev.
          k: passages retrieved per question (`class-jax retrieve --k`; 100 passages exceed 5,000 tokens).
          token_budgets: the scorer's budgets (official: 2,000 and 5,000 tokens).
          query_length: query tokens (the retrieve command's length by default).
          passage_length: passage tokens, EOS included (the index command's length by default).
          encode_batch_size: passages per encoding step over all devices (`class-jax index --batch_size`).
          query_batch_size: questions per encoding step over all devices (`class-jax retrieve --batch_size`).
          index_dtype: stored vector dtype of the scratch index ("float16", as `class-jax index` by default).
          shard_size: rows per index shard (the unit of resumption of a killed encoding).
          backend: "device" (sharded JAX search), "faiss" or "auto", as `class-jax retrieve --backend`.
          search_options: backend options (query_batch_size, chunk_rows, device_dtype; num_threads).
          scorer_workers: processes that tokenise passages for the scorer.
          keep_index: keep the scratch index after each evaluation (it is replaced at the next one).
          progress: progress bars.

        Raises:
          UserError: a k, budget or batch size below 1, or an unknown index dtype.
        """
        if k < 1 or encode_batch_size < 1 or query_batch_size < 1 or not token_budgets or min(token_budgets) < 1:
            raise UserError(f"XOR-Retrieve dev evaluation: k ({k}), batch sizes ({encode_batch_size}, "
                            f"{query_batch_size}) and token budgets ({list(token_budgets)}) must be >= 1")
        if index_dtype not in index_format.VECTOR_DTYPES:
            raise UserError(f"XOR-Retrieve dev evaluation: index_dtype {index_dtype!r} must be one of "
                            f"{', '.join(index_format.VECTOR_DTYPES)}")
        self.dev_file = dev_file
        self.corpus_dir = corpus_dir
        self.corpus_languages = corpus_languages
        self.vocab_path = vocab_path
        self.name = name
        self.k = k
        self.token_budgets = tuple(token_budgets)
        self.query_length = query_length
        self.passage_length = passage_length
        self.encode_batch_size = encode_batch_size
        self.query_batch_size = query_batch_size
        self.index_dtype = index_dtype
        self.shard_size = shard_size
        self.backend = backend
        self.search_options = dict(search_options or {})
        self.scorer_workers = scorer_workers
        self.keep_index = keep_index
        self.progress = progress
        self._queries: Optional[list[predictions.Query]] = None
        self._gold: list[GoldQuestion] = []
        self._corpus: Optional[CorpusSource] = None
        self._vocabulary: Any = None
        self._vocabulary_sha256 = ""
        self._encoders: dict[tuple[str, int], RetrievalEncoder] = {}

    # ------------------------------------------------------------------------------------------------ start-up
    def check(self) -> None:
        """Reads the dev file, plans the corpus and loads the vocabulary (once).

        Raises:
          UserError: a missing or malformed dev file, corpus or vocabulary, or k above the corpus size.
        """
        if self._queries is not None:
            return
        from class_jax.tasks import vocab as vocab_lib  # pylint: disable=import-outside-toplevel  (imports seqio)
        where = f"XOR-Retrieve dev evaluation {self.name!r}"
        if not pathlib.Path(self.dev_file).is_file():
            raise UserError(f"{where}: dev file {self.dev_file} does not exist")
        queries = predictions.load_queries(self.dev_file)
        self._gold = files.load_gold_questions(self.dev_file)
        self._corpus = CorpusSource.plan(self.corpus_dir, self.corpus_languages)
        if self.k > self._corpus.num_rows:
            raise UserError(f"{where}: k = {self.k} exceeds the {self._corpus.num_rows} passages of "
                            f"{self.corpus_dir}")
        self._vocabulary = vocab_lib.get_vocabulary(self.vocab_path)
        vocabulary_file = pathlib.Path(vocab_lib.vocabulary_path(self.vocab_path))
        if not vocabulary_file.is_file():
            raise UserError(f"{where}: vocabulary {vocabulary_file} does not exist")
        self._vocabulary_sha256 = hashlib.sha256(vocabulary_file.read_bytes()).hexdigest()
        self._queries = queries
        logging.info("%s: %d questions, %d corpus passages, k = %d.", where, len(queries), self._corpus.num_rows,
                     self.k)

    def metric_names(self) -> list[str]:
        """r@<n>kt, r@<n>kt_<lang> and their corrected_ variants, for each token budget."""
        names = []
        for prefix in ("", "corrected_"):
            for budget in self.token_budgets:
                name = prefix + _budget_name(budget)
                names.extend([name, f"{name}_*"])
        return names

    # ------------------------------------------------------------------------------------------------ evaluation
    def _encoder(self, ctx: hooks.HookContext, dtype: str, batch_size: int) -> RetrievalEncoder:
        """A retrieval encoder compiled once per run; each evaluation only swaps in the current parameters."""
        key = (dtype, batch_size)
        encoder = self._encoders.get(key)
        if encoder is None or encoder.model is not ctx.model or encoder.partitioner is not ctx.partitioner:
            try:
                encoder = RetrievalEncoder(ctx.model, ctx.params, ctx.partitioner, batch_size, dtype=dtype)
            except ValueError as e:
                raise UserError(f"XOR-Retrieve dev evaluation batch size {batch_size}: {e}") from e
            self._encoders[key] = encoder
        encoder.params = ctx.params
        return encoder

    def evaluate(self, ctx: hooks.HookContext) -> dict[str, float]:
        """R@kt of the current parameters' own retrieval (process 0; the others return {}).

        Raises:
          TypeError: the trained model is not a CLASSModel (it has no retriever).
        """
        if not isinstance(ctx.model, CLASSModel):
            raise TypeError(f"the XOR-Retrieve dev evaluation needs a CLASSModel, the run trains a "
                            f"{type(ctx.model).__name__}")
        self.check()
        started = time.perf_counter()
        identity = model_identity(ctx.model.config, ctx.params, f"{ctx.model_dir}@step_{ctx.step}")
        index_dir = ctx.model_dir / dev_selection.DEV_SUBDIR / self.name / "index"
        index_builder.clear_stale_index(index_dir, identity, "class_jax_dev_index_cleared")
        # As `class-jax index`: the passage vectors come out of the encoder in the stored dtype.
        index_builder.encode_corpus(self._encoder(ctx, self.index_dtype, self.encode_batch_size), self._vocabulary,
                                    self._corpus, index_dir, identity, self._vocabulary_sha256,
                                    dtype=self.index_dtype, shard_size=self.shard_size,
                                    passage_max_length=self.passage_length, progress=self.progress)
        encode_seconds = time.perf_counter() - started

        index = IndexReader(index_dir)
        loaded = LoadedModel(model=ctx.model, params=ctx.params, config=ctx.model.config, identity=identity,
                             partitioner=ctx.partitioner)
        # As `class-jax retrieve`: float32 query vectors.
        query_vectors = retrieve.encode_queries(self._encoder(ctx, "float32", self.query_batch_size),
                                                self._vocabulary, [q.question for q in self._queries],
                                                self.query_length)
        backend = retrieve.resolve_backend(index, self.backend)
        metrics: dict[str, float] = {}
        # faiss runs on process 0 only; the device search is an SPMD program every process joins.
        if backend == "device" or jax.process_index() == 0:
            searcher = retrieve.make_index_searcher(loaded, index, backend, with_ids=False,
                                                    query_length=self.query_length, **self.search_options)
            _, rows = searcher.search_rows(query_vectors, self.k)
            del searcher  # frees the index rows held on the devices before training resumes
            if jax.process_index() == 0:
                metrics = self._score(rows)
        index_builder.barrier(f"class_jax_dev_{self.name}_{ctx.step}")
        if jax.process_index() == 0 and not self.keep_index:
            shutil.rmtree(index_dir, ignore_errors=True)
        logging.info("XOR-Retrieve dev evaluation at step %d took %.1f s (corpus encoding %.1f s).", ctx.step,
                     time.perf_counter() - started, encode_seconds)
        return metrics

    def _score(self, rows: Any) -> dict[str, float]:
        """Scores the retrieved rows as `eval-xor-retrieve` scores the prediction file of `retrieve`."""
        records = self._corpus.fetch(rows.reshape(-1))
        retrieved = [RetrievalPrediction(id=query.id, lang=query.lang,
                                         passages=tuple(records[int(row)].text for row in query_rows), index=i)
                     for i, (query, query_rows) in enumerate(zip(self._queries, rows))]
        result = xor_retrieve.score_xor_retrieve(self._gold, retrieved, token_budgets=self.token_budgets,
                                                 gold_source=self.dev_file, prediction_source="dev retrieval",
                                                 workers=self.scorer_workers)
        metrics: dict[str, float] = {}
        for prefix in ("", "corrected_"):
            for budget in result.budgets:
                name = prefix + _budget_name(budget.max_tokens)
                macro = budget.macro if not prefix else budget.corrected_macro
                per_language = budget.per_language if not prefix else budget.corrected_per_language
                metrics[name] = float("nan") if macro is None else float(macro)
                metrics.update({f"{name}_{lang}": recall.recall for lang, recall in per_language.items()})
        return metrics


def _budget_name(max_tokens: int) -> str:
    """"r@2kt" for 2,000 tokens (the scorer's budget names, lower-case)."""
    return f"r@{max_tokens // 1000}kt" if max_tokens % 1000 == 0 else f"r@{max_tokens}t"
