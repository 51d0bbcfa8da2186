"""`class-jax index`: encode an ingested corpus into a retrieval index (resumable; multi-host).

    class-jax index --checkpoint ckpt/ --corpus wiki/ --langs en --out index/ [--batch_size 512] [--dtype float16]

Rerunning the same command after a kill resumes it (completed shards are kept); rerunning it with a different
model, vocabulary, dtype, shard size or corpus into the same --out is refused.
"""

import argparse
import logging
from typing import Any, Optional

from class_jax.errors import UserError
from class_jax.retrieval import corpus_encoder, index_format, index_reader, loading, text_inputs
from class_jax.retrieval.corpus_source import CorpusSource
from class_jax.retrieval.encoder import RetrievalEncoder
from class_jax.trainer.partitioning import Partitioner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the command's flags."""
    loading.add_common_arguments(parser)
    parser.add_argument("--corpus", required=True, help="corpus root written by `class-jax ingest`")
    parser.add_argument("--langs", nargs="+", default=None,
                        help="languages to index, in this row order (default: every ingested language)")
    parser.add_argument("--out", required=True, help="index directory (a started build there is resumed)")
    parser.add_argument("--batch_size", type=int, default=256,
                        help="passages per step over all devices (must split evenly over them)")
    parser.add_argument("--dtype", default="float16", choices=index_format.VECTOR_DTYPES,
                        help="stored vector dtype (float16 halves the index; scores are float32 either way)")
    parser.add_argument("--shard_size", type=int, default=corpus_encoder.DEFAULT_SHARD_SIZE,
                        help="passages per index shard (the unit of resumption)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")


def build_index(checkpoint: str, vocabulary_path: Optional[str], corpus: CorpusSource, out: str,
                partitioner: Partitioner, *, batch_size: int = 256, dtype: str = "float16",
                shard_size: int = corpus_encoder.DEFAULT_SHARD_SIZE,
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
    vocabulary, vocabulary_sha256 = loading.load_vocabulary(vocabulary_path, checkpoint)
    loaded = loading.load_model(checkpoint, partitioner, vocabulary)
    try:
        encoder = RetrievalEncoder(loaded.model, loaded.params, partitioner, batch_size, dtype=dtype)
    except ValueError as e:
        raise UserError(f"--batch_size {batch_size}: {e}") from e
    return corpus_encoder.encode_corpus(encoder, vocabulary, corpus, out, loaded.identity, vocabulary_sha256,
                                        dtype=dtype, shard_size=shard_size, passage_max_length=passage_max_length,
                                        progress=progress)


def run(args: argparse.Namespace) -> int:
    """Builds the index and prints a one-line summary.

    Raises:
      UserError: bad corpus, checkpoint, vocabulary, or an incompatible build in --out.
    """
    partitioner = loading.start(args)
    manifest = build_index(args.checkpoint, args.vocab, CorpusSource.plan(args.corpus, args.langs), args.out,
                           partitioner, batch_size=args.batch_size, dtype=args.dtype, shard_size=args.shard_size,
                           progress=not args.no_progress)
    logging.info("Index %s: %s.", args.out, index_reader.describe(manifest))
    print(f"{index_format.index_dir_path(args.out)}: {index_reader.describe(manifest)}")
    return 0
