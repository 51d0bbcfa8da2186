"""Benchmark: corpus encoding (passages/s) — class_jax's retrieval encoder vs HF PyTorch mT5, same shapes.

Both sides encode the same random fixed-length passages [batch, length] with random weights, in float32 or, with
`--dtype bfloat16`, in bfloat16 compute over float32 weights (class_jax's `ModelConfig.dtype`; torch.autocast):
  * class_jax: `RetrievalEncoder.encode_local` (the jitted, sharded function `class-jax index` runs): encoder layers
    [0, B), layer B's pre-attention RMSNorm, masked mean pooling, `passage_proj`, RMSNorm; vectors copied to host.
  * HF: `MT5EncoderModel` with B layers (its final RMSNorm stands in for layer B's pre-attention norm), then the
    same masked mean pooling, a bias-free `Linear(d_model, heads * head_dim)` and `MT5LayerNorm`, under
    `torch.inference_mode()`; vectors copied to host.
A third row times the whole `class-jax index` pipeline (corpus streaming, sentencepiece tokenisation in a prefetch
thread, encoding, shard writing) over a generated corpus whose passages fill the same length, to show what the
host-side work costs on top of the encoder.

The two encoders are timed in alternating blocks of back-to-back calls (see `bench_utils.in_blocks`) and the fastest
call of each is reported. MFU = analytic forward FLOPs of B encoder layers (+ the projection) / that time / the best
matmul rate in that dtype measured in the same run (JAX and torch, before and after).

  python bench/encode.py                                   # mT5-small shapes, 32 x 200-token passages
  python bench/encode.py --size base --batch 64 --out bench/results/encode_base.json
  python bench/encode.py --size large --batch 512 --dtype bfloat16 --pipeline_passages 0   # GPU
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

import bench_utils


def _config(size: str, vocab: int, dtype: str = "float32"):
    from class_jax.models.config import ModelConfig
    emb, heads, head_dim, mlp, layers, _ = bench_utils.SIZES[size]
    # The decoder is never run when encoding; one layer keeps initialisation cheap.
    return ModelConfig(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                       num_encoder_layers=layers, num_decoder_layers=1, dropout_rate=0.0, dtype=dtype)


def encode_flops(config, batch: int, length: int) -> float:
    """Forward matmul FLOPs of encoding `batch` passages of `length` tokens for retrieval.

    Args:
      config: the ModelConfig.
      batch: passages.
      length: tokens per passage.

    Returns:
      B encoder layers plus the pooled projection (the embedding lookup and norms are not matmuls).
    """
    inner = config.num_heads * config.head_dim
    layers = config.retriever_layer_index * bench_utils.encoder_layer_flops(
        batch * length, length, config.emb_dim, inner, config.mlp_dim, len(config.mlp_activations))
    return layers + 2.0 * batch * config.emb_dim * config.retrieval_dim


def _random_passages(batch: int, length: int, vocab: int) -> np.ndarray:
    tokens = np.random.RandomState(0).randint(2, vocab, (batch, length)).astype(np.int32)
    tokens[:, -1] = 1  # EOS, as text_inputs.passage_ids ends every passage
    return tokens


def _class_jax_model(size: str, vocab: int, dtype: str):
    import flax.linen as nn
    import jax
    from class_jax.models.class_model import CLASSModel

    config = _config(size, vocab, dtype)
    model = CLASSModel(config)
    shapes = CLASSModel.init_shapes()
    params = jax.jit(lambda r: nn.unbox(model.get_initial_variables(r, shapes)["params"]))(jax.random.PRNGKey(0))
    return config, model, params


def class_jax_runner(size: str, batch: int, length: int, vocab: int,
                     dtype: str = "float32") -> tuple[Callable[[], Any], dict]:
    """`RetrievalEncoder.encode_local` on one fixed batch, and facts about it (FLOPs, output dim)."""
    from class_jax.retrieval.encoder import RetrievalEncoder
    from class_jax.runtime.partitioning import Partitioner

    config, model, params = _class_jax_model(size, vocab, dtype)
    encoder = RetrievalEncoder(model, params, Partitioner(), batch, dtype="float32")
    tokens = _random_passages(batch, length, vocab)

    def run():
        return encoder.encode_local(tokens, is_query=False)["vectors"]

    vectors = run()
    return run, {"flops": encode_flops(config, batch, length), "dim": int(vectors.shape[-1]),
                 "finite": bool(np.isfinite(vectors).all())}


def bench_pipeline(size: str, batch: int, length: int, vocab: int, num_passages: int,
                   dtype: str = "float32") -> dict:
    """Times the whole `class-jax index` build over a generated corpus of `num_passages` passages."""
    import seqio
    import seqio.test_utils
    from class_jax.corpus import corpus_io
    from class_jax.retrieval import index_builder, model_identity
    from class_jax.retrieval.corpus_source import CorpusSource
    from class_jax.retrieval.encoder import RetrievalEncoder
    from class_jax.runtime.partitioning import Partitioner

    config, model, params = _class_jax_model(size, vocab, dtype)
    vocabulary = seqio.SentencePieceVocabulary(
        os.path.join(seqio.test_utils.TEST_DATA_DIR, "sentencepiece", "sentencepiece.model"))
    words = "the river flows past the old city and the mountain where a king once built his castle".split()
    rng = np.random.default_rng(0)
    # Enough words that every passage is cut at `length` tokens, as the fixed-shape rows above are.
    records = [{"id": f"en:{i}:0", "lang": "en", "title": f"Article {i}", "text": " ".join(rng.choice(words, length)),
                "links": []} for i in range(num_passages)]
    with tempfile.TemporaryDirectory() as folder:
        root = pathlib.Path(folder) / "corpus"
        corpus_io.write_jsonl(root / "en" / "passages" / "passages-00000.jsonl.gz", records)
        corpus_io.write_json(root / "en" / "manifest.json", {})
        encoder = RetrievalEncoder(model, params, Partitioner(), batch, dtype="float32")
        identity = model_identity.model_identity(config, params, f"random {size}")
        corpus = CorpusSource.plan(root)
        kwargs = dict(dtype="float32", passage_max_length=length, progress=False)
        # Warm-up build (compilation) on a separate index, then the timed build.
        index_builder.encode_corpus(encoder, vocabulary, corpus, pathlib.Path(folder) / "warm", identity, "-",
                                     shard_size=batch, **kwargs)
        started = time.perf_counter()
        manifest = index_builder.encode_corpus(encoder, vocabulary, corpus, pathlib.Path(folder) / "index",
                                                identity, "-", **kwargs)
        elapsed = time.perf_counter() - started
    return {"passages": num_passages, "seconds": elapsed, "passages_per_s": num_passages / elapsed,
            "count": manifest["count"], "flops": encode_flops(config, num_passages, length)}


def hf_runner(size: str, batch: int, length: int, vocab: int,
              dtype: str = "float32") -> tuple[Callable[[], Any], dict]:
    """HF `MT5EncoderModel` (B layers) + the same pooling and projection on the same batch."""
    import torch
    import transformers
    from transformers.models.mt5.modeling_mt5 import MT5LayerNorm

    config = _config(size, vocab)
    hf_config = transformers.MT5Config(
        vocab_size=vocab, d_model=config.emb_dim, num_heads=config.num_heads, d_kv=config.head_dim,
        d_ff=config.mlp_dim, num_layers=config.retriever_layer_index, dropout_rate=0.0,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    device = bench_utils.torch_device()
    with torch.device(device):  # initialised where it runs
        encoder = transformers.MT5EncoderModel(hf_config).eval()
        projection = torch.nn.Linear(config.emb_dim, config.retrieval_dim, bias=False)
        norm = MT5LayerNorm(config.retrieval_dim)
    input_ids = torch.tensor(_random_passages(batch, length, vocab), dtype=torch.long, device=device)
    mask = (input_ids > 0).long()

    def run():
        with torch.inference_mode(), bench_utils.torch_autocast(device, dtype):
            hidden = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return norm(projection(pooled)).float().cpu().numpy()

    return run, {"dim": int(run().shape[-1]), "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(bench_utils.SIZES), default="small")
    parser.add_argument("--vocab", type=int, default=bench_utils.MT5_VOCAB, help="mT5's vocabulary by default")
    parser.add_argument("--batch", type=int, default=32, help="passages per encoder call")
    parser.add_argument("--length", type=int, default=200, help="tokens per passage (class-jax index's default)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="compute dtype of both encoders (weights stay float32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per block")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per implementation, alternating")
    parser.add_argument("--pipeline_passages", type=int, default=128,
                        help="passages of the `class-jax index` pipeline row (0: skip it)")
    parser.add_argument("--skip_hf", action="store_true", help="no torch/transformers comparison")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "encode.json"))
    args = parser.parse_args(argv)

    first_peak = bench_utils.measure_peak_flops(dtype=args.dtype)
    steps = {}
    bench_utils.progress("building and compiling the class_jax encoder")
    run, ours = class_jax_runner(args.size, args.batch, args.length, args.vocab, args.dtype)
    steps["class_jax"] = run
    result = {"size": args.size, "batch": args.batch, "length": args.length, "vocab": args.vocab,
              "dtype": args.dtype, "class_jax": ours, **bench_utils.machine()}
    if not args.skip_hf:
        bench_utils.progress("building the HF encoder")
        steps["hf"], result["hf"] = hf_runner(args.size, args.batch, args.length, args.vocab, args.dtype)
    bench_utils.progress("timing")
    for name, timing in bench_utils.in_blocks(steps, 1, args.repeats, args.rounds).items():
        result[name].update(timing)
    if "hf" in result:
        result["speedup_vs_hf"] = result["hf"]["min_s"] / ours["min_s"]
    if args.pipeline_passages:
        result["pipeline"] = bench_pipeline(args.size, args.batch, args.length, args.vocab, args.pipeline_passages,
                                            args.dtype)
    peak = bench_utils.best_peak(first_peak, bench_utils.measure_peak_flops(dtype=args.dtype))
    result["peak_flops"] = peak
    top = max(peak.values())
    result["mfu"] = ours["flops"] / ours["min_s"] / top

    rows = [["class_jax `RetrievalEncoder` (JAX)", f"{ours['min_s']:.3f}", f"{args.batch / ours['min_s']:.1f}",
             f"{result.get('speedup_vs_hf', float('nan')):.2f}x", f"{result['mfu']:.1%}"]]
    if "hf" in result:
        hf = result["hf"]
        rows.append(["HF `MT5EncoderModel` (PyTorch)", f"{hf['min_s']:.3f}", f"{args.batch / hf['min_s']:.1f}",
                     "1.00x", f"{ours['flops'] / hf['min_s'] / top:.1%}"])
    if "pipeline" in result:
        pipe = result["pipeline"]
        ratio = pipe["passages_per_s"] * result["hf"]["min_s"] / args.batch if "hf" in result else float("nan")
        rows.append([f"class_jax `class-jax index` pipeline ({pipe['passages']} passages)",
                     f"{pipe['seconds']:.3f}", f"{pipe['passages_per_s']:.1f}", f"{ratio:.2f}x",
                     f"{pipe['flops'] / pipe['seconds'] / top:.1%}"])
    print(f"\nCorpus encoding, mT5-{args.size} shapes (first {_config(args.size, args.vocab).retriever_layer_index} "
          f"layers + pooled projection), {args.batch} passages x {args.length} tokens per call, {args.dtype}, "
          f"{result['jax_device_kind']} ({result['cpus']} CPUs)")
    print("measured matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items())
          + f"; FLOPs per call {ours['flops'] / 1e9:.1f} G\n")
    print(bench_utils.markdown_table(["implementation", "s / call", "passages/s", "vs HF", "MFU"], rows))
    print(f"\nwrote {bench_utils.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    bench_utils.start_process()
    sys.exit(main())
