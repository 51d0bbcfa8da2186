"""Benchmark: exact top-k search (JAX device path vs faiss IndexFlatIP) and corpus encoding throughput.

Search: N x D float32 random index vectors, Q random queries, top-k; both backends in this process on the same
vectors, one after the other (so only one copy of the index is alive at a time). Reported: queries/s (median of
`--repeats` timed calls after one warm-up call that also compiles), the JAX/faiss ratio, and how many of the top-k
rows the two backends agree on (random float data has no exact ties, so they should agree on all of them).
For the JAX path also the two floors of one call over the whole index, from rates measured in the same run:
reading the index once at the measured memory bandwidth (a jitted elementwise pass, bytes read + written), and
the exact float32 scoring products at the measured HIGHEST-precision float32 matmul rate; the share of each floor
in the measured time says how close the search runs to what the device allows. `--device_dtype float16` keeps the
index on device as `class-jax index` writes it (half the bytes; scores are still float32). `--chunk_rows auto 32768`
times the device search once per chunk size (rows scored per step; "auto" is the searcher's own default).

Encoding: the real `class-jax index` pipeline (corpus streaming, tokenisation, jitted sharded encoding through the
first B layers, shard writing) with a randomly initialised model of the chosen size, over a generated corpus.

  python bench/search.py                                   # 100k and 1M x 768, 256 queries, k=100; mT5-small encoding
  python bench/search.py --sizes 100000 --encode_size tiny --out bench/results/search_quick.json
  python bench/search.py --skip_faiss --encode_passages 0 --device_dtype float16 --queries 32   # GPU, no faiss
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

import bench_utils

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


def bench_search(num_rows: int, dim: int, num_queries: int, k: int, repeats: int, skip_faiss: bool = False,
                 device_dtype: str | None = None, chunk_rows: int | None = None) -> dict:
    import jax
    from class_jax.retrieval import search
    from class_jax.runtime.partitioning import Partitioner

    read = _vector_reader(dim, seed=num_rows)
    queries = np.random.default_rng(1).standard_normal((num_queries, dim), dtype=np.float32)
    result = {"rows": num_rows, "dim": dim, "queries": num_queries, "k": k}

    started = time.perf_counter()
    device = search.DeviceSearcher(read, num_rows, Partitioner().mesh, query_batch_size=num_queries,
                                   device_dtype=device_dtype, chunk_rows=chunk_rows)
    jax.block_until_ready(device.rows)
    result.update(jax_load_s=time.perf_counter() - started, chunk_rows=device.chunk_rows,
                  chunks_per_device=device.rows_per_shard // device.chunk_rows)
    result["index_bytes"] = sum(int(x.nbytes) for x in device.rows.values())
    jax_time, jax_rows = _time_search(device, queries, k, repeats)
    result.update(jax_qps=num_queries / jax_time, jax_s=jax_time)
    del device
    if skip_faiss:
        return result

    started = time.perf_counter()
    faiss_searcher = search.FaissSearcher(read, num_rows, dim)
    result["faiss_load_s"] = time.perf_counter() - started
    faiss_time, faiss_rows = _time_search(faiss_searcher, queries, k, repeats)
    del faiss_searcher

    result.update(faiss_qps=num_queries / faiss_time, jax_over_faiss=faiss_time / jax_time,
                  topk_agreement=float(np.mean(jax_rows == faiss_rows)))
    return result


def add_floors(result: dict, bandwidth: float, float32_flops: float) -> None:
    """Adds the memory and compute floors of one search call over the whole index and their share of its time."""
    memory_s = result["index_bytes"] / bandwidth
    compute_s = 2.0 * result["queries"] * result["rows"] * result["dim"] / float32_flops
    result.update(memory_floor_s=memory_s, compute_floor_s=compute_s,
                  of_memory_bound=memory_s / result["jax_s"], of_roofline=max(memory_s, compute_s) / result["jax_s"])


def bench_encoding(size: str, num_passages: int, batch_size: int) -> dict:
    import flax.linen as nn
    import jax
    from class_jax.corpus import corpus_io
    from class_jax.models.class_model import CLASSModel
    from class_jax.models.config import ModelConfig
    from class_jax.retrieval import index_builder, model_identity
    from class_jax.retrieval.corpus_source import CorpusSource
    from class_jax.retrieval.encoder import RetrievalEncoder
    from class_jax.runtime.partitioning import Partitioner
    import seqio
    import seqio.test_utils

    emb, heads, head_dim, mlp, layers, _ = bench_utils.SIZES[size]
    # The embedding table's size does not change the encoding cost; a 32k vocabulary keeps memory low.
    config = ModelConfig(vocab_size=32128, emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                         num_encoder_layers=layers, num_decoder_layers=1, dropout_rate=0.0)
    model = CLASSModel(config)
    shapes = CLASSModel.init_shapes()
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
        index_builder.encode_corpus(encoder, vocabulary, corpus, pathlib.Path(folder) / "warm", identity, "-",
                                     shard_size=batch_size, progress=False)
        started = time.perf_counter()
        index_builder.encode_corpus(encoder, vocabulary, corpus, pathlib.Path(folder) / "index", identity, "-",
                                     progress=False)
        elapsed = time.perf_counter() - started
    return {"model": size, "passages": num_passages, "batch_size": batch_size, "seconds": elapsed,
            "passages_per_s": num_passages / elapsed, "devices": jax.device_count()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encode_size", choices=sorted(bench_utils.SIZES), default="small")
    parser.add_argument("--encode_passages", type=int, default=256, help="0: no encoding benchmark")
    parser.add_argument("--encode_batch_size", type=int, default=32)
    parser.add_argument("--skip_faiss", action="store_true", help="time the JAX path alone (no faiss installed)")
    parser.add_argument("--device_dtype", choices=["float32", "float16"], default=None,
                        help="dtype of the index on device (default: float32, as generated)")
    parser.add_argument("--chunk_rows", nargs="+", default=["auto"],
                        help="rows per device search step, one run each: 'auto' (the searcher's default) or a number")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "search.json"))
    args = parser.parse_args(argv)
    chunk_options = [None if value == "auto" else int(value) for value in args.chunk_rows]

    results = {**bench_utils.machine(), "device_dtype": args.device_dtype or "float32", "search": [],
               "encoding": None}
    bandwidth = bench_utils.measure_copy_bandwidth()
    float32_flops = max(bench_utils.measure_peak_flops(precision="highest").values())
    results.update(memory_bandwidth=bandwidth, float32_highest_flops=float32_flops)
    for num_rows in args.sizes:
        for index, chunk_rows in enumerate(chunk_options):  # faiss has no chunks: timed with the first option
            row = bench_search(num_rows, args.dim, args.queries, args.k, args.repeats, args.skip_faiss or index > 0,
                               args.device_dtype, chunk_rows)
            add_floors(row, bandwidth, float32_flops)
            results["search"].append(row)
            print(json.dumps(row), file=sys.stderr)
    if args.encode_passages:
        results["encoding"] = bench_encoding(args.encode_size, args.encode_passages, args.encode_batch_size)

    print(f"\nExact top-{args.k} search, {args.queries} queries, {results['device_dtype']} index x {args.dim} "
          f"({results['jax_device_kind']}, {results['jax_devices']} device(s), {results['cpus']} CPUs); "
          f"measured: memory {bandwidth / 1e9:.0f} GB/s, float32 HIGHEST matmul {float32_flops / 1e12:.2f} TFLOP/s")
    rows = [[row["rows"], f"{row['chunk_rows']} x {row['chunks_per_device']}", f"{row['jax_qps']:.1f}", f"{row['faiss_qps']:.1f}" if "faiss_qps" in row else "-",
             f"{row['jax_over_faiss']:.2f}" if "faiss_qps" in row else "-",
             f"{row['topk_agreement']:.4f}" if "faiss_qps" in row else "-",
             f"{row['jax_s'] * 1e3:.2f}", f"{row['memory_floor_s'] * 1e3:.2f}", f"{row['compute_floor_s'] * 1e3:.2f}",
             f"{row['of_memory_bound']:.0%}", f"{row['of_roofline']:.0%}"] for row in results["search"]]
    print(bench_utils.markdown_table(["rows", "chunk rows x steps", "JAX q/s", "faiss q/s", "JAX/faiss", "agree", "JAX ms/call",
                                      "memory floor ms", "compute floor ms", "of memory bound", "of roofline"],
                                     rows))
    encoding = results["encoding"]
    if encoding:
        print(f"\nCorpus encoding (mT5-{encoding['model']} shapes, first B layers, float16 vectors): "
              f"{encoding['passages_per_s']:.1f} passages/s over {encoding['passages']} passages")
    print(f"\nwrote {bench_utils.write_json(args.out, results)}")
    return 0


if __name__ == "__main__":
    bench_utils.start_process()
    sys.exit(main())
