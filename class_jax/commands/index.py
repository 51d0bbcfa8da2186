"""`class-jax index`: encode an ingested corpus into a retrieval index (resumable; multi-host).

    class-jax index --checkpoint ckpt/ --corpus wiki/ --langs en --out index/ [--batch_size 512] [--dtype float16]

Rerunning the same command after a kill resumes it (completed shards are kept); rerunning it with a different
model, vocabulary, dtype, shard size or corpus into the same --out is refused.
"""

import argparse
import logging

from class_jax.commands import common
from class_jax.retrieval import index_builder, index_format, index_reader
from class_jax.retrieval.corpus_source import CorpusSource


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the command's flags."""
    common.add_model_arguments(parser)
    parser.add_argument("--corpus", required=True, help="corpus root written by `class-jax ingest`")
    parser.add_argument("--langs", nargs="+", default=None,
                        help="languages to index, in this row order (default: every ingested language)")
    parser.add_argument("--out", required=True, help="index directory (a started build there is resumed)")
    parser.add_argument("--batch_size", type=int, default=256,
                        help="passages per step over all devices (must split evenly over them)")
    parser.add_argument("--dtype", default="float16", choices=index_format.VECTOR_DTYPES,
                        help="stored vector dtype (float16 halves the index; scores are float32 either way)")
    parser.add_argument("--shard_size", type=int, default=index_builder.DEFAULT_SHARD_SIZE,
                        help="passages per index shard (the unit of resumption)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Builds the index and prints a one-line summary.

    Raises:
      UserError: bad corpus, checkpoint, vocabulary, or an incompatible build in --out.
    """
    partitioner = common.start_model_command(args)
    manifest = index_builder.build_index(args.checkpoint, args.vocab, CorpusSource.plan(args.corpus, args.langs), args.out,
                           partitioner, batch_size=args.batch_size, dtype=args.dtype, shard_size=args.shard_size,
                           progress=not args.no_progress)
    logging.info("Index %s: %s.", args.out, index_reader.describe(manifest))
    print(f"{index_format.index_dir_path(args.out)}: {index_reader.describe(manifest)}")
    return 0
