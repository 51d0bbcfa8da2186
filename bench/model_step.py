"""Benchmark: one FiD training step (forward + backward + AdamW update), class_jax vs HF PyTorch mT5.

Both sides run in this process on the same machine, same shapes, float32:
  * class_jax: `CLASSModel.loss_fn` (answer CE + retrieval KL) under one jitted step with buffer donation.
  * HF: `MT5ForConditionalGeneration` used as FiD (encoder over the k pairs of a question, decoder cross-attending
    over their concatenation), loss.backward(), torch.optim.AdamW.step().
Throughput is tokens/s over encoder + decoder tokens. MFU = analytic step FLOPs / step time / measured peak, where
the peak is the best float32 matmul rate measured here (JAX and torch, square matmuls).

  python bench/model_step.py                       # mT5-small shapes, FiD batch 1 x 4 passages
  python bench/model_step.py --size base --passages 8 --out bench/results/model_step_base.json
"""

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

SIZES = {  # (emb, heads, head_dim, mlp, enc layers, dec layers)
    "tiny": (64, 4, 16, 128, 4, 2),
    "small": (512, 6, 64, 1024, 8, 8),
    "base": (768, 12, 64, 2048, 12, 12),
    "large": (1024, 16, 64, 2816, 24, 24),
}


@dataclasses.dataclass
class Shapes:
    batch: int
    passages: int
    query_len: int
    passage_len: int
    answer_len: int

    @property
    def tokens(self) -> int:
        return self.batch * (self.passages * (self.query_len + self.passage_len) + self.answer_len)


def _timeit(step, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_peak_flops(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best float32 matmul FLOP/s of JAX and torch on this machine."""
    import jax
    import jax.numpy as jnp
    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    jax_time = _timeit(lambda: matmul(a).block_until_ready(), 2, repeats)
    result = {"jax": 2 * size ** 3 / jax_time}
    try:
        import torch
        t = torch.ones(size, size)
        result["torch"] = 2 * size ** 3 / _timeit(lambda: t @ t, 2, repeats)
    except ImportError:
        pass
    return result


def bench_class_jax(size: str, shapes: Shapes, vocab: int, repeats: int) -> dict[str, float]:
    import flax.linen as nn
    import jax
    import optax
    from class_jax.models.class_model import CLASSModel
    from class_jax.models.config import ModelConfig

    emb, heads, head_dim, mlp, enc, dec = SIZES[size]
    config = ModelConfig(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                         num_encoder_layers=enc, num_decoder_layers=dec, dropout_rate=0.0)
    model = CLASSModel(config)
    input_shapes = {"query_tokens": (shapes.batch, shapes.query_len),
                    "passage_tokens": (shapes.batch, shapes.passages, shapes.passage_len),
                    "decoder_input_tokens": (shapes.batch, shapes.answer_len)}
    params = nn.unbox(model.get_initial_variables(jax.random.PRNGKey(0), input_shapes)["params"])
    optimizer = optax.adamw(1e-4, weight_decay=0.01)
    opt_state = optimizer.init(params)
    batch = _random_batch(shapes, vocab)

    def train_step(params, opt_state, batch):
        (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, None)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.jit(train_step, donate_argnums=(0, 1))
    state = {"params": params, "opt": opt_state}

    def run():
        state["params"], state["opt"], loss = step(state["params"], state["opt"], batch)
        loss.block_until_ready()

    # XLA's own count of the compiled step, as a cross-check of the analytic formula used for MFU.
    cost = step.lower(params, opt_state, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    seconds = _timeit(run, 2, repeats)
    return {"step_s": seconds, "flops": model.flops_per_step(input_shapes), "xla_flops": float(cost["flops"]),
            "params": sum(x.size for x in jax.tree_util.tree_leaves(state["params"]))}


def bench_hf(size: str, shapes: Shapes, vocab: int, repeats: int) -> dict[str, float]:
    import torch
    import transformers

    emb, heads, head_dim, mlp, enc, dec = SIZES[size]
    config = transformers.MT5Config(vocab_size=vocab, d_model=emb, num_heads=heads, d_kv=head_dim, d_ff=mlp,
                                    num_layers=enc, num_decoder_layers=dec, dropout_rate=0.0,
                                    feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    model = transformers.MT5ForConditionalGeneration(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    batch = _random_batch(shapes, vocab)
    pair_len = shapes.query_len + shapes.passage_len
    pairs = np.concatenate([np.repeat(batch["query_tokens"][:, None], shapes.passages, 1),
                            batch["passage_tokens"]], -1).reshape(-1, pair_len)
    input_ids = torch.tensor(pairs, dtype=torch.long)
    attention = (input_ids > 0).long()
    labels = torch.tensor(batch["decoder_target_tokens"], dtype=torch.long)

    def run():
        optimizer.zero_grad(set_to_none=True)
        hidden = model.encoder(input_ids=input_ids, attention_mask=attention).last_hidden_state
        hidden = hidden.reshape(shapes.batch, shapes.passages * pair_len, -1)  # Fusion-in-Decoder
        out = model(encoder_outputs=(hidden,), attention_mask=attention.reshape(shapes.batch, -1), labels=labels)
        out.loss.backward()
        optimizer.step()

    return {"step_s": _timeit(run, 2, repeats), "threads": torch.get_num_threads()}


def _random_batch(shapes: Shapes, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(0)
    targets = rng.randint(2, vocab, (shapes.batch, shapes.answer_len)).astype(np.int32)
    return {
        "query_tokens": rng.randint(2, vocab, (shapes.batch, shapes.query_len)).astype(np.int32),
        "passage_tokens": rng.randint(2, vocab, (shapes.batch, shapes.passages, shapes.passage_len)).astype(np.int32),
        "decoder_target_tokens": targets,
        "decoder_input_tokens": np.concatenate([np.zeros((shapes.batch, 1), np.int32), targets[:, :-1]], 1),
        "decoder_loss_weights": np.ones((shapes.batch, shapes.answer_len), np.float32),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--vocab", type=int, default=250112, help="mT5's vocabulary by default")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--passages", type=int, default=4)
    parser.add_argument("--query_len", type=int, default=50)
    parser.add_argument("--passage_len", type=int, default=200)
    parser.add_argument("--answer_len", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip_hf", action="store_true", help="no torch/transformers comparison")
    parser.add_argument("--out", default="bench/results/model_step.json")
    args = parser.parse_args(argv)
    shapes = Shapes(args.batch, args.passages, args.query_len, args.passage_len, args.answer_len)

    peak = measure_peak_flops()
    ours = bench_class_jax(args.size, shapes, args.vocab, args.repeats)
    rows = [("class_jax (JAX)", ours["step_s"])]
    result = {"size": args.size, "shapes": dataclasses.asdict(shapes), "tokens_per_step": shapes.tokens,
              "vocab": args.vocab, "peak_flops": peak, "class_jax": ours, "machine": platform.platform(),
              "cpus": os.cpu_count()}
    if not args.skip_hf:
        hf = bench_hf(args.size, shapes, args.vocab, args.repeats)
        rows.append(("HF transformers (PyTorch)", hf["step_s"]))
        result["hf"] = hf
        result["speedup_vs_hf"] = hf["step_s"] / ours["step_s"]
    # The peak is measured before and after the runs and the best kept: on a shared machine a single
    # measurement taken during a burst of other work would understate it and inflate MFU.
    for name, value in measure_peak_flops().items():
        peak[name] = max(peak.get(name, 0.0), value)
    best_peak = max(peak.values())
    result["peak_flops"] = peak
    result["mfu"] = ours["flops"] / ours["step_s"] / best_peak

    print(f"FiD train step, mT5-{args.size} shapes, batch {shapes.batch} x {shapes.passages} passages x "
          f"({shapes.query_len}+{shapes.passage_len}) + answer {shapes.answer_len}, float32, {os.cpu_count()} CPUs")
    print("measured matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items()))
    print(f"step FLOPs: analytic {ours['flops'] / 1e9:.1f} G (used for MFU), XLA cost analysis "
          f"{ours['xla_flops'] / 1e9:.1f} G")
    print(f"{'implementation':<28}{'step s':>10}{'tokens/s':>12}{'vs HF':>8}{'MFU':>8}")
    hf_time = result.get("hf", {}).get("step_s")
    for name, seconds in rows:
        ratio = f"{hf_time / seconds:.2f}x" if hf_time else "-"
        mfu = f"{ours['flops'] / seconds / best_peak:.1%}" if name.startswith("class_jax") else "-"
        print(f"{name:<28}{seconds:>10.3f}{shapes.tokens / seconds:>12.0f}{ratio:>8}{mfu:>8}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
