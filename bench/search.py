"""Benchmark: exact top-k search (JAX device path vs faiss IndexFlatIP) and corpus encoding throughput.

Search: N x D float32 random index vectors, Q random queries, top-k; both backends in this process on the same
vectors, one after the other (so only one copy of the index is alive at a time). Reported: queries/s (median of
`--repeats` timed calls after one warm-up call that also compiles), the JAX/faiss ratio, and how many of the top-k
rows the two backends agree on (random float data has no exact ties, so they should agree on all of them).

Encoding: the real `class-jax index` pipeline (corpus streaming, tokenisation, jitted sharded encoding through the
first B layers, shard writing) with a randomly initialised model of the chosen size, over a generated corpus.

  python bench/search.py                                   # 100k and 1M x 768, 256 queries, k=100; mT5-small encoding
  python bench/search.py --sizes 100000 --encode_size tiny --out bench/results/search_quick.json
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

import bench_utils

SIZES = {  # (emb, heads, head_dim, mlp, encoder layers); B = layers // 2
    "tiny": (64, 4, 16, 128, 4),
    "small": (512, 6, 64, 1024, 8),
    "base": (768, 12, 64, 2048, 12),
    "large": (1024, 16, 64, 2816, 24),
}
BLOCK_ROWS = 1 << 16


def _vector_reader(dim: int, seed: int):
    """Deterministic random rows generated block by block, so no full host copy of the index is needed."""

    def block(index: int) -> np.ndarray:
        return np.random.default_rng([seed, index]).standard_normal((BLOCK_ROWS, dim), dtype=np.float32)

    def read(start: int, stop: int) -> dict[str, np.ndarray]:
        parts = []
        for index in range(start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS + 1):
            lo = max(start, index * BLOCK_ROWS) - index * BLOCK_ROWS
            hi = min(stop, (index + 1) * BLOCK_ROWS) - index * BLOCK_ROWS
            parts.append(block(index)[lo:hi])
        return {"vectors": np.concatenate(parts)}

    return read


def _time_search(searcher, queries: np.ndarray, k: int, repeats: int) -> tuple[float, np.ndarray]:
    _, rows = searcher.search_rows(queries, k)  # warm-up (and compilation for JAX)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        searcher.search_rows(queries, k)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), rows


def bench_search(num_rows: int, dim: int, num_queries: int, k: int, repeats: int) -> dict:
    import jax
    from class_jax.retrieval import search
    from class_jax.trainer.partitioning import Partitioner

    read = _vector_reader(dim, seed=num_rows)
    queries = np.random.default_rng(1).standard_normal((num_queries, dim), dtype=np.float32)
    result = {"rows": num_rows, "dim": dim, "queries": num_queries, "k": k}

    started = time.perf_counter()
    device = search.DeviceSearcher(read, num_rows, Partitioner().mesh, query_batch_size=num_queries)
    jax.block_until_ready(device.rows)
    result["jax_load_s"] = time.perf_counter() - started
    jax_time, jax_rows = _time_search(device, queries, k, repeats)
    del device

    started = time.perf_counter()
    faiss_searcher = search.FaissSearcher(read, num_rows, dim)
    result["faiss_load_s"] = time.perf_counter() - started
    faiss_time, faiss_rows = _time_search(faiss_searcher, queries, k, repeats)
    del faiss_searcher

    result.update(jax_qps=num_queries / jax_time, faiss_qps=num_queries / faiss_time,
                  jax_over_faiss=faiss_time / jax_time,
                  topk_agreement=float(np.mean(jax_rows == faiss_rows)))
    return result


def bench_encoding(size: str, num_passages: int, batch_size: int) -> dict:
    import flax.linen as nn
    import jax
    from class_jax.data import corpus_io
    from class_jax.models.class_model import CLASSModel
    from class_jax.models.config import ModelConfig
    from class_jax.retrieval import corpus_encoder, model_identity
    from class_jax.retrieval.corpus_source import CorpusSource
    from class_jax.retrieval.encoder import RetrievalEncoder
    from class_jax.trainer.partitioning import Partitioner
    import seqio
    import seqio.test_utils

    emb, heads, head_dim, mlp, layers = SIZES[size]
    # The embedding table's size does not change the encoding cost; a 32k vocabulary keeps memory low.
    config = ModelConfig(vocab_size=32128, emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                         num_encoder_layers=layers, num_decoder_layers=1, dropout_rate=0.0)
    model = CLASSModel(config)
    shapes = {"query_tokens": (1, 4), "passage_tokens": (1, 1, 4), "decoder_input_tokens": (1, 2)}
    params = jax.jit(lambda r: nn.unbox(model.get_initial_variables(r, shapes)["params"]))(jax.random.PRNGKey(0))
    vocabulary = seqio.SentencePieceVocabulary(
        os.path.join(seqio.test_utils.TEST_DATA_DIR, "sentencepiece", "sentencepiece.model"))
    words = "the river flows past the old city and the mountain where a king once built his castle".split()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        root = pathlib.Path(folder) / "corpus"
        records = [{"id": f"en:{i}:0", "lang": "en", "title": f"Article {i}",
                    "text": " ".join(rng.choice(words, 100)), "links": []} for i in range(num_passages)]
        corpus_io.write_jsonl(root / "en" / "passages" / "passages-00000.jsonl.gz", records)
        corpus_io.write_json(root / "en" / "manifest.json", {})
        partitioner = Partitioner()
        encoder = RetrievalEncoder(model, params, partitioner, batch_size, dtype="float16")
        identity = model_identity.model_identity(config, params, f"random {size}")
        corpus = CorpusSource.plan(root)
        # Warm-up build (compilation) on a separate index, then the timed build.
        corpus_encoder.encode_corpus(encoder, vocabulary, corpus, pathlib.Path(folder) / "warm", identity, "-",
                                     shard_size=batch_size, progress=False)
        started = time.perf_counter()
        corpus_encoder.encode_corpus(encoder, vocabulary, corpus, pathlib.Path(folder) / "index", identity, "-",
                                     progress=False)
        elapsed = time.perf_counter() - started
    return {"model": size, "passages": num_passages, "batch_size": batch_size, "seconds": elapsed,
            "passages_per_s": num_passages / elapsed, "devices": jax.device_count()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encode_size", choices=sorted(SIZES), default="small")
    parser.add_argument("--encode_passages", type=int, default=256)
    parser.add_argument("--encode_batch_size", type=int, default=32)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "search.json"))
    args = parser.parse_args()

    import jax
    results = {"machine": platform.platform(), "cpus": os.cpu_count(), "jax_backend": jax.default_backend(),
               "devices": jax.device_count(), "search": [], "encoding": None}
    for num_rows in args.sizes:
        results["search"].append(bench_search(num_rows, args.dim, args.queries, args.k, args.repeats))
        print(json.dumps(results["search"][-1]), file=sys.stderr)
    results["encoding"] = bench_encoding(args.encode_size, args.encode_passages, args.encode_batch_size)

    print(f"\nExact top-{args.k} search, {args.queries} queries, float32 x {args.dim} "
          f"({results['jax_backend']}, {results['devices']} device(s), {results['cpus']} CPUs)")
    print(f"{'rows':>10} {'JAX q/s':>10} {'faiss q/s':>10} {'JAX/faiss':>10} {'agree':>7}")
    for row in results["search"]:
        print(f"{row['rows']:>10} {row['jax_qps']:>10.1f} {row['faiss_qps']:>10.1f} {row['jax_over_faiss']:>10.2f} "
              f"{row['topk_agreement']:>7.4f}")
    encoding = results["encoding"]
    print(f"\nCorpus encoding (mT5-{encoding['model']} shapes, first B layers, float16 vectors): "
          f"{encoding['passages_per_s']:.1f} passages/s over {encoding['passages']} passages")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    bench_utils.start_process()
    sys.exit(main())
