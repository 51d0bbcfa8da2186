"""`class-jax retrieve`: top-k passages for XOR-TyDi questions, in the XOR-Retrieve prediction format.

    class-jax retrieve --checkpoint ckpt/ --index index/ --queries xor_dev_retrieve_eng_span_v1_1.jsonl \\
        --out pred.json [--k 100] [--backend auto|device|faiss]

Writes pred.json (`[{"id", "lang", "ctxs": [passage text, ...]}]`, what `class-jax eval-xor-retrieve` and the
official script score) and pred.details.jsonl (passage ids, scores, titles).
"""

import argparse
import logging
import time

import jax

from class_jax.commands import common
from class_jax.runtime.errors import UserError
from class_jax.retrieval import predictions, retrieve
from class_jax.retrieval.encoder import RetrievalEncoder
from class_jax.retrieval.index_reader import IndexReader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the command's flags."""
    common.add_model_arguments(parser)
    parser.add_argument("--index", required=True, help="index directory written by `class-jax index`")
    parser.add_argument("--queries", required=True, help="JSON Lines with id, question, lang (XOR-TyDi files)")
    parser.add_argument("--out", required=True, help="XOR-Retrieve prediction file to write (JSON)")
    parser.add_argument("--details_out", default=None,
                        help="JSON Lines with passage ids and scores (default: OUT without .json + .details.jsonl)")
    parser.add_argument("--k", type=int, default=100, help="passages per question")
    parser.add_argument("--backend", choices=("auto", "device", "faiss"), default="auto",
                        help="exact search sharded over the JAX devices, or with faiss IndexFlatIP on the CPU of "
                             "process 0; auto (default): faiss for pooled indexes in a single-process CPU run, where "
                             "it is the faster one (bench/RESULTS.md), the devices otherwise")
    parser.add_argument("--corpus", default=None, help="corpus root, if it moved since indexing")
    parser.add_argument("--batch_size", type=int, default=64, help="questions encoded per step over all devices")
    parser.add_argument("--query_batch_size", type=int, default=256, help="questions per device search call")
    parser.add_argument("--verify_checksums", action="store_true", help="check every index file's sha256 first")


def run(args: argparse.Namespace) -> int:
    """Retrieves and writes the prediction files (process 0).

    Raises:
      UserError: bad files, a model or vocabulary other than the index's, or k out of range.
    """
    partitioner = common.start_model_command(args)
    index = IndexReader(args.index, verify_checksums=args.verify_checksums)
    if not 1 <= args.k <= index.num_rows:
        raise UserError(f"--k {args.k}: must be between 1 and the index's {index.num_rows} passages")
    queries = predictions.load_queries(args.queries)
    vocabulary, loaded = retrieve.load_model_for_index(index, args.checkpoint, args.vocab, partitioner)

    started = time.perf_counter()
    try:
        encoder = RetrievalEncoder(loaded.model, loaded.params, partitioner, args.batch_size)
    except ValueError as e:
        raise UserError(f"--batch_size {args.batch_size}: {e}") from e
    query_vectors = retrieve.encode_queries(encoder, vocabulary, [q.question for q in queries])
    backend = retrieve.resolve_backend(index, args.backend)
    # faiss runs on one process only; the device search is an SPMD program every process joins.
    if backend == "faiss" and jax.process_index() != 0:
        return 0
    options = {"query_batch_size": args.query_batch_size} if backend == "device" else {}
    searcher = retrieve.make_index_searcher(loaded, index, backend, **options)
    scores, rows = searcher.search_rows(query_vectors, args.k)
    logging.info("Retrieved %d x %d passages (%s backend) in %.1f s.", len(queries), args.k, backend,
                 time.perf_counter() - started)
    if jax.process_index() != 0:
        return 0
    passage_ids = searcher.ids.lookup(rows)
    records = index.corpus(args.corpus).fetch(rows.reshape(-1))
    details = args.details_out or predictions.details_path_for(args.out)
    predictions.write_predictions(args.out, details, queries, scores, passage_ids, rows, records)
    print(f"{args.out}: {len(queries)} questions x {args.k} passages ({backend}); details in {details}")
    return 0
