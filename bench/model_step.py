"""Benchmark: one FiD training step (forward + backward + AdamW update), class_jax vs HF PyTorch mT5.

Both sides run in this process on the same machine, same shapes and precision:
  * class_jax: `CLASSModel.loss_fn` (answer CE + retrieval KL) under one jitted step with buffer donation.
  * HF: `MT5ForConditionalGeneration` used as FiD (encoder over the k pairs of a question, decoder cross-attending
    over their concatenation), loss.backward(), torch.optim.AdamW.step().
`--dtype bfloat16` is mixed precision on both sides: float32 parameters and optimizer state, bfloat16 compute
(class_jax's `ModelConfig.dtype`; torch.autocast on the HF side). `--remat` rematerialises each layer on both sides
(class_jax's `ModelConfig.remat_policy`; HF's gradient checkpointing, which recomputes whole layers like "full").
Throughput is tokens/s over encoder + decoder tokens. MFU = analytic step FLOPs (recomputation not counted) / step
time / measured peak, where the peak is the best matmul rate in the run's dtype measured here (JAX and torch, square
matmuls, before and after). On a GPU the peak device memory of each side is reported too.

By default both models are built first and their steps timed in alternating blocks of back-to-back steps (see
`bench_utils.in_blocks`), so that load from other jobs on a shared machine hits both alike; the fastest step of
each is reported (the median is in the JSON too).
`--sequential` times one side at a time with only its model in memory (for sizes whose two copies do not fit).

  python bench/model_step.py                       # mT5-small shapes, FiD batch 1 x 4 passages
  python bench/model_step.py --size base --sequential --repeats 2 --out bench/results/model_step_base.json
  python bench/model_step.py --size large --dtype bfloat16 --remat full --batch 8 --passages 16   # GPU
  python bench/model_step.py --size large --dtype bfloat16 --remat full --batch 8 --passages 16 --skip_hf \
      --compare_attention_kernel cudnn     # the einsum attention against cuDNN's fused kernel, in one process
"""

import argparse
import dataclasses
import functools
import os
import sys
from typing import Any, Callable

import numpy as np

import bench_utils
import profile_trace

SIZES = bench_utils.SIZES  # (emb, heads, head_dim, mlp, enc layers, dec layers)


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


def class_jax_step(size: str, shapes: Shapes, vocab: int, dtype: str = "float32", remat: str = "none",
                   fused_adamw: bool = True, attention_kernel: str = "einsum"
                   ) -> tuple[Any, Any, Callable[..., Any], dict[str, tuple[int, ...]]]:
    """The class_jax FiD train step, before compilation: (model, optimizer, step function, input shapes).

    The optimizer is the trainer's AdamW (`optimizers.adamw`) as torch.optim.AdamW runs on the HF side: lr 1e-4,
    weight decay 0.01, no gradient clipping; `fused_adamw=False` runs optax's unfused chain instead.
    `attention_kernel` is `ModelConfig.attention_kernel`. The step maps (params, opt_state, batch) to
    (params, opt_state, loss).
    """
    import jax
    import optax
    from class_jax.models.class_model import CLASSModel
    from class_jax.models.config import ModelConfig
    from class_jax.trainer import optimizers

    emb, heads, head_dim, mlp, enc, dec = SIZES[size]
    config = ModelConfig(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                         num_encoder_layers=enc, num_decoder_layers=dec, dropout_rate=0.0, dtype=dtype,
                         remat_policy=remat, attention_kernel=attention_kernel)
    model = CLASSModel(config)
    input_shapes = {"query_tokens": (shapes.batch, shapes.query_len),
                    "passage_tokens": (shapes.batch, shapes.passages, shapes.passage_len),
                    "decoder_input_tokens": (shapes.batch, shapes.answer_len)}
    optimizer = optimizers.adamw(1e-4, weight_decay=0.01, grad_clip_norm=None, fused=fused_adamw).transform

    def train_step(params, opt_state, batch):
        (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, None)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return model, optimizer, train_step, input_shapes


def class_jax_runner(size: str, shapes: Shapes, vocab: int, dtype: str = "float32", remat: str = "none",
                     fused_adamw: bool = True, attention_kernel: str = "einsum", hlo_path: str | None = None
                     ) -> tuple[Callable[[], Any], dict[str, float]]:
    """The jitted, donating class_jax train step on one batch, and facts about it (FLOPs, XLA's count, params).

    The step is `class_jax_step`'s; `hlo_path`, where given, receives the compiled step's HLO.
    """
    import flax.linen as nn
    import jax
    from class_jax.runtime.partitioning import Partitioner

    model, optimizer, train_step, input_shapes = class_jax_step(size, shapes, vocab, dtype, remat, fused_adamw,
                                                                attention_kernel)
    params = nn.unbox(model.get_initial_variables(jax.random.PRNGKey(0), input_shapes)["params"])
    opt_state = optimizer.init(params)
    batch = jax.device_put(_random_batch(shapes, vocab))

    # Compiled once ahead of time (calling the jitted function would compile it a second time: minutes on a GPU),
    # with the trainer's compiler options.
    options = Partitioner().training_compiler_options()
    step = jax.jit(train_step, donate_argnums=(0, 1), compiler_options=options).lower(params, opt_state,
                                                                                        batch).compile()
    if hlo_path:
        bench_utils.write_text(hlo_path, step.as_text())
    state = {"params": params, "opt": opt_state}

    def run():
        state["params"], state["opt"], loss = step(state["params"], state["opt"], batch)
        loss.block_until_ready()

    # XLA's own count of the compiled step, as a cross-check of the analytic formula used for MFU.
    cost = step.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return run, {"flops": model.flops_per_step(input_shapes), "xla_flops": float(cost["flops"]),
                 "params": sum(x.size for x in jax.tree_util.tree_leaves(state["params"]))}


def hf_runner(size: str, shapes: Shapes, vocab: int, dtype: str = "float32",
              remat: str = "none") -> tuple[Callable[[], Any], dict[str, float]]:
    """The HF PyTorch FiD train step on the same batch (autocast for bfloat16, gradient checkpointing for remat)."""
    import torch
    import transformers

    emb, heads, head_dim, mlp, enc, dec = SIZES[size]
    config = transformers.MT5Config(vocab_size=vocab, d_model=emb, num_heads=heads, d_kv=head_dim, d_ff=mlp,
                                    num_layers=enc, num_decoder_layers=dec, dropout_rate=0.0,
                                    feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    device = bench_utils.torch_device()
    with torch.device(device):  # initialised where it runs (a large model's CPU initialisation takes minutes)
        model = transformers.MT5ForConditionalGeneration(config).train()
    if remat != "none":
        # transformers 5.24 renamed it (the old name warns); older releases, such as the GPU host's, have only the old.
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    batch = _random_batch(shapes, vocab)
    pair_len = shapes.query_len + shapes.passage_len
    pairs = np.concatenate([np.repeat(batch["query_tokens"][:, None], shapes.passages, 1),
                            batch["passage_tokens"]], -1).reshape(-1, pair_len)
    input_ids = torch.tensor(pairs, dtype=torch.long, device=device)
    attention = (input_ids > 0).long()
    labels = torch.tensor(batch["decoder_target_tokens"], dtype=torch.long, device=device)

    def run():
        optimizer.zero_grad(set_to_none=True)
        with bench_utils.torch_autocast(device, dtype):
            hidden = model.encoder(input_ids=input_ids, attention_mask=attention).last_hidden_state
            hidden = hidden.reshape(shapes.batch, shapes.passages * pair_len, -1)  # Fusion-in-Decoder
            out = model(encoder_outputs=(hidden,), attention_mask=attention.reshape(shapes.batch, -1),
                        labels=labels)
        out.loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return run, {"threads": torch.get_num_threads()}


def _profile(run: Callable[[], Any], args: argparse.Namespace, result: dict[str, Any]) -> None:
    """With --profile_dir: traces class_jax steps and adds the time per XLA operation to the result."""
    if args.profile_dir:
        bench_utils.progress(f"profiling {args.profile_calls} class_jax steps")
        trace_file = profile_trace.trace(run, args.profile_dir, args.profile_calls)
        result["profile"] = profile_trace.summarize(trace_file, args.profile_calls)
        profile_trace.print_summary(result["profile"])


def _record_peak_memory(result: dict[str, Any]) -> None:
    """Adds each side's peak device memory ([bytes per device]) where the backend reports it (GPU, TPU).

    With several class_jax variants in one process the JAX figure is their common peak."""
    jax_peak = bench_utils.jax_peak_memory()
    for side in result:
        if side.startswith("class_jax") and jax_peak is not None:
            result[side]["peak_memory_bytes"] = jax_peak
    if "hf" in result and result.get("torch_device") == "cuda":
        import torch
        result["hf"]["peak_memory_bytes"] = [torch.cuda.max_memory_allocated()]


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
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="compute dtype of both sides (parameters and optimizer state stay float32)")
    parser.add_argument("--remat", choices=["none", "full", "minimal"], default="none",
                        help="class_jax remat policy; any but none turns on HF gradient checkpointing")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per block")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per implementation, alternating")
    parser.add_argument("--skip_hf", action="store_true", help="no torch/transformers comparison")
    parser.add_argument("--compare_optax_adamw", action="store_true",
                        help="also time the class_jax step with optax's unfused AdamW chain")
    parser.add_argument("--attention_kernel", choices=["einsum", "xla", "cudnn"], default="einsum",
                        help="class_jax's ModelConfig.attention_kernel")
    parser.add_argument("--compare_attention_kernel", choices=["einsum", "xla", "cudnn"], default=None,
                        help="also time the class_jax step with this attention kernel")
    parser.add_argument("--profile_dir", default=None,
                        help="also trace --profile_calls class_jax steps there and report time per XLA operation "
                             "(the compiled HLO, which says what each fusion computes, is written beside it)")
    parser.add_argument("--profile_calls", type=int, default=2)
    parser.add_argument("--sequential", action="store_true",
                        help="time one side at a time, with only its model in memory")
    parser.add_argument("--out", default="bench/results/model_step.json")
    args = parser.parse_args(argv)
    shapes = Shapes(args.batch, args.passages, args.query_len, args.passage_len, args.answer_len)

    peak = bench_utils.measure_peak_flops(dtype=args.dtype)
    hlo_path = os.path.join(args.profile_dir, "class_jax_step.hlo.txt") if args.profile_dir else None
    builders = {"class_jax": functools.partial(class_jax_runner, attention_kernel=args.attention_kernel,
                                               hlo_path=hlo_path)}
    labels = {"class_jax": f"class_jax (JAX, jit + donation), {args.attention_kernel} attention"}
    if args.compare_attention_kernel:
        side = f"class_jax_{args.compare_attention_kernel}_attention"
        builders[side] = functools.partial(class_jax_runner, attention_kernel=args.compare_attention_kernel)
        labels[side] = f"class_jax, {args.compare_attention_kernel} attention"
    labels.update(class_jax_optax_adamw="class_jax, optax's unfused AdamW", hf="HF transformers (PyTorch)")
    if args.compare_optax_adamw:
        builders["class_jax_optax_adamw"] = functools.partial(class_jax_runner, fused_adamw=False)
    if not args.skip_hf:
        builders["hf"] = hf_runner
    builders = {name: functools.partial(build, dtype=args.dtype, remat=args.remat) for name, build in builders.items()}
    result = {"size": args.size, "shapes": dataclasses.asdict(shapes), "tokens_per_step": shapes.tokens,
              "vocab": args.vocab, "dtype": args.dtype, "remat": args.remat, "attention_kernel": args.attention_kernel,
              "timing": "sequential" if args.sequential else f"{args.rounds} alternating blocks",
              **bench_utils.machine()}
    if args.sequential:
        for name, build in builders.items():
            bench_utils.progress(f"building and compiling {name}")
            run, result[name] = build(args.size, shapes, args.vocab)
            result[name].update(bench_utils.timeit(run, 2, args.repeats * args.rounds))
            if name == "class_jax":
                _profile(run, args, result)
            del run
    else:
        steps = {}
        for name, build in builders.items():
            bench_utils.progress(f"building and compiling {name}")
            try:
                steps[name], result[name] = build(args.size, shapes, args.vocab)
            except Exception as error:  # pylint: disable=broad-except
                if not name.endswith("_attention"):
                    raise
                # A fused kernel that refuses these shapes on this device must not cost the other figures.
                result[name] = {"error": f"{type(error).__name__}: {error}"}
                bench_utils.progress(f"{name} failed to build: {result[name]['error'][:300]}")
        bench_utils.progress("timing")
        for name, timing in bench_utils.in_blocks(steps, 2, args.repeats, args.rounds).items():
            result[name].update(timing)
        _profile(steps["class_jax"], args, result)
        del steps
    _record_peak_memory(result)
    ours = result["class_jax"]
    for side in builders:
        if "error" not in result[side]:
            result[side]["step_s"] = result[side]["min_s"]
    if "hf" in result:
        result["speedup_vs_hf"] = result["hf"]["step_s"] / ours["step_s"]
    # The peak is measured before and after the runs and the best kept: on a shared machine a single
    # measurement taken during a burst of other work would understate it and inflate MFU.
    peak = bench_utils.best_peak(peak, bench_utils.measure_peak_flops(dtype=args.dtype))
    best_peak = max(peak.values())
    result["peak_flops"] = peak
    result["mfu"] = ours["flops"] / ours["step_s"] / best_peak

    print(f"FiD train step, mT5-{args.size} shapes, batch {shapes.batch} x {shapes.passages} passages x "
          f"({shapes.query_len}+{shapes.passage_len}) + answer {shapes.answer_len}, {args.dtype}, remat {args.remat}, "
          f"{result['jax_device_kind']} ({os.cpu_count()} CPUs), {result['timing']} timing, fastest of "
          f"{args.repeats * args.rounds}")
    print("measured matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items()))
    print(f"step FLOPs: analytic {ours['flops'] / 1e9:.1f} G (used for MFU), XLA cost analysis "
          f"{ours['xla_flops'] / 1e9:.1f} G\n")
    rows = []
    for side, label in labels.items():
        if side in result and "error" not in result[side]:
            seconds = result[side]["step_s"]
            ratio = f"{result['hf']['step_s'] / seconds:.2f}x" if "hf" in result else "-"
            memory = result[side].get("peak_memory_bytes")
            rows.append([label, f"{seconds:.3f}", f"{shapes.tokens / seconds:.0f}", ratio,
                         f"{ours['flops'] / seconds / best_peak:.1%}",
                         "-" if memory is None else " / ".join(f"{b / 2 ** 30:.1f}" for b in memory)])
    print(bench_utils.markdown_table(["implementation", "step s", "tokens/s", "vs HF", "MFU", "peak GiB per device"],
                                     rows))
    for side in labels:
        if "error" in result.get(side, {}):
            print(f"{labels[side]}: not built ({result[side]['error'][:300]})")
    print(f"wrote {bench_utils.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    bench_utils.start_process()
    sys.exit(main())
