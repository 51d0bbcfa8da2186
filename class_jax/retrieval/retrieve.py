"""Retrieval with a loaded model and an index: encode the questions, build a searcher, search."""

from typing import Any, Optional, Sequence

import numpy as np

from class_jax.models import retrievers
from class_jax.runtime.errors import UserError
from class_jax.retrieval import loaded_model, search
from class_jax.tasks import text_inputs
from class_jax.retrieval.encoder import RetrievalEncoder
from class_jax.retrieval.index_reader import IndexReader
from class_jax.retrieval.loaded_model import LoadedModel
from class_jax.runtime.partitioning import Partitioner

PyTree = Any


def encode_queries(encoder: RetrievalEncoder, vocabulary: text_inputs.Vocabulary, questions: Sequence[str],
                   max_length: int = text_inputs.QUERY_MAX_LENGTH) -> PyTree:
    """Query-side retrieval representations of every question (the same on every process).

    Questions are normalised first (`text_inputs.normalize_query`) when the model's config says it was trained on
    normalised queries (`ModelConfig.normalize_queries`, set by the import of a released checkpoint).

    Returns:
      pooled: [n, dim] float32; token mode: {"tokens": [n, max_length, head_dim], "valid": [n, max_length]}.
    """
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(questions), encoder.batch_size):
        tokens = text_inputs.query_batch(vocabulary, questions[start:start + encoder.batch_size], max_length,
                                         normalize=encoder.model.config.normalize_queries)
        parts.append(encoder.encode_global(tokens, is_query=True))
    merged = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return retrievers.get_retriever(encoder.model.config).queries_from_index_rows(merged)


def row_reader(index: IndexReader):
    """index rows [start, stop) as the searchers read them."""
    names = tuple(retrievers.retriever_for(index.retrieval_mode).index_arrays)
    return lambda start, stop: {name: index.read_rows(name, start, stop) for name in names}


def resolve_backend(index: IndexReader, backend: str) -> str:
    """The search backend that `backend` ("auto", "device" or "faiss") stands for with this index."""
    kind = retrievers.retriever_for(index.retrieval_mode)
    return search.resolve_backend(backend, token_mode=not kind.inner_product_index)


def make_index_searcher(loaded: LoadedModel, index: IndexReader, backend: str, with_ids: bool = True,
                        query_length: int = text_inputs.QUERY_MAX_LENGTH, **options: Any) -> search.Searcher:
    """A searcher over a whole index, for the model that built it.

    Args:
      loaded: the model (token mode needs it for the position bias).
      index: the index.
      backend: "auto", "device" or "faiss" (`search.resolve_backend`).
      with_ids: load the passage ids (needed by `Searcher.search`).
      query_length: token mode: the query slot length (passage positions start after it).
      **options: backend options (query_batch_size, chunk_rows, device_dtype; num_threads).

    Raises:
      UserError: faiss asked for a token-mode index.
    """
    ids = index.ids() if with_ids else None
    read = row_reader(index)
    backend = resolve_backend(index, backend)
    kind = retrievers.retriever_for(index.retrieval_mode)
    if not kind.inner_product_index:
        if backend != "device":
            raise UserError(f"{index.path} is a {kind.name}-mode index: only --backend device searches it")
        config = loaded.config
        passage_length = index.array_shape(next(iter(kind.index_arrays)))[1]

        def relative_bias(query_positions: np.ndarray, key_positions: np.ndarray) -> Any:
            return loaded.model.module.apply({"params": loaded.params}, query_positions, key_positions,
                                             method="relative_bias")

        bias = kind.position_bias(config, relative_bias, query_length, passage_length, offset=query_length)
        options["scorer"] = kind.index_scorer(config, None if bias is None else np.asarray(bias))
    return search.make_searcher(backend, read, index.num_rows, index.spec.dim, mesh=loaded.partitioner.mesh,
                                ids=ids, **options)


def check_vocabulary(index: IndexReader, vocabulary_sha256: str, vocabulary_path: Optional[str]) -> None:
    """Refuses a vocabulary other than the index's (the queries would be tokenised differently).

    Raises:
      UserError: the vocabulary file differs from the one the index was built with.
    """
    if vocabulary_sha256 != index.spec.vocabulary_sha256:
        raise UserError(f"{vocabulary_path or 'the checkpoint vocabulary'} is not the vocabulary {index.path} was "
                        "built with (sha256 differs)")


def load_model_for_index(index: IndexReader, checkpoint: str, vocabulary_path: Optional[str],
                         partitioner: Partitioner) -> tuple[Any, LoadedModel]:
    """Loads the vocabulary and model that built `index`, refusing any other.

    Args:
      index: the opened index.
      checkpoint: a params directory.
      vocabulary_path: a SentencePiece model, or None for the checkpoint's own.
      partitioner: where the parameters are placed.

    Returns:
      (vocabulary, loaded model).

    Raises:
      UserError: the vocabulary or the model differs from the index's.
    """
    vocabulary, vocabulary_sha256 = loaded_model.load_vocabulary(vocabulary_path, checkpoint)
    check_vocabulary(index, vocabulary_sha256, vocabulary_path)
    loaded = loaded_model.load_model(checkpoint, partitioner, vocabulary)
    index.check_model(loaded.identity)
    return vocabulary, loaded


class IndexRetriever:
    """A class_jax checkpoint + the index it built, as a retriever of (passage ids, scores), best first."""

    def __init__(self, index_dir: str, checkpoint: str, vocabulary_path: Optional[str], partitioner: Partitioner,
                 batch_size: int = 64, backend: str = "auto",
                 query_length: int = text_inputs.QUERY_MAX_LENGTH):
        """Loads the model and opens a searcher over the index.

        Args:
          index_dir: written by `class-jax index`.
          checkpoint: the params directory that built it.
          vocabulary_path: a SentencePiece model, or None for the checkpoint's own.
          partitioner: where the parameters are placed.
          batch_size: questions encoded per step over all devices.
          backend: "auto", "device" or "faiss" (`search.resolve_backend`).
          query_length: query tokens kept (the length the model was trained with).

        Raises:
          UserError: the model or vocabulary differs from the index's, or a batch that does not split over the
            devices.
        """
        from class_jax.retrieval.encoder import RetrievalEncoder  # pylint: disable=import-outside-toplevel
        from class_jax.retrieval.index_reader import IndexReader  # pylint: disable=import-outside-toplevel

        index = IndexReader(index_dir)
        self.vocabulary, self.loaded = load_model_for_index(index, checkpoint, vocabulary_path, partitioner)
        try:
            self.encoder = RetrievalEncoder(self.loaded.model, self.loaded.params, partitioner, batch_size)
        except ValueError as e:
            raise UserError(f"batch size {batch_size}: {e}") from e
        self.query_length = query_length
        self.searcher = make_index_searcher(self.loaded, index, backend, query_length=query_length)

    def top_k(self, queries: Sequence[str], k: int) -> list[tuple[list[str], list[float]]]:
        """The k best passages of each query: [(passage ids, scores)], best first."""
        vectors = encode_queries(self.encoder, self.vocabulary, list(queries), self.query_length)
        scores, ids = self.searcher.search(vectors, k)
        return [([str(i) for i in row_ids], [float(s) for s in row_scores])
                for row_ids, row_scores in zip(np.asarray(ids), np.asarray(scores))]
