"""Benchmark: the per-device memory estimate (class_jax/trainer/memory_estimate.py) against XLA, and at paper shape.

1. Small shapes on this host: the train step is compiled and XLA's buffer assignment (`memory_analysis()`:
   arguments + outputs - aliased + temporaries) compared with the estimate.
2. mT5-large / mT5-XL at the paper's shape (64 queries x 100 passages x (50 + 200) tokens, answers 50), bfloat16,
   full remat: the estimate alone (`jax.eval_shape`, nothing allocated), for several device counts (simulated with
   --xla_force_host_platform_device_count, so the shardings are real) and microbatch counts.

  XLA_FLAGS=--xla_force_host_platform_device_count=64 python bench/memory_estimate.py
"""

import argparse
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=64")

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from class_jax.models.class_model import CLASSModel  # pylint: disable=wrong-import-position
from class_jax.models.config import ModelConfig  # pylint: disable=wrong-import-position
from class_jax.runtime.partitioning import Partitioner  # pylint: disable=wrong-import-position
from class_jax.trainer import memory_estimate, optimizers, train_state, train_step  # pylint: disable=C0413

SIZES = {"tiny": (64, 4, 16, 128, 2, 2), "large": (1024, 16, 64, 2816, 24, 24), "xl": (2048, 32, 64, 5120, 24, 24)}
FSDP = [("batch", ("data", "fsdp")), ("embed", "fsdp")]
FSDP_TP = FSDP[:1] + [("heads", "model"), ("mlp", "model"), ("joined_kv", "model"), ("vocab", "model"),
                      ("embed", "fsdp")]


def spec(batch, k, query_len, passage_len, answer_len):
    return {"query_tokens": ((batch, query_len), np.int32), "passage_tokens": ((batch, k, passage_len), np.int32),
            "decoder_input_tokens": ((batch, answer_len), np.int32),
            "decoder_target_tokens": ((batch, answer_len), np.int32),
            "decoder_loss_weights": ((batch, answer_len), np.int32)}


def build(size, vocab, dtype, remat, dropout, batch_spec, partitioner):
    emb, heads, head_dim, mlp, enc, dec = SIZES[size]
    model = CLASSModel(ModelConfig(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                                   num_encoder_layers=enc, num_decoder_layers=dec, dropout_rate=dropout, dtype=dtype,
                                   remat_policy=remat))
    optimizer = optimizers.adamw(1e-4, weight_decay=0.01, grad_clip_norm=1.0)
    shapes = {n: s for n, (s, _) in batch_spec.items()}
    types = {n: t for n, (_, t) in batch_spec.items()}
    layout = train_state.build_state_layout(model, optimizer.transform, partitioner, shapes, types)
    return model, optimizer, shapes, types, layout


def small(args):
    print("| shape (per device) | remat | dropout | XLA MiB | estimate MiB | error |\n|---|---|---|---|---|---|")
    n = jax.device_count()
    for rows, k, remat, dropout in [(2, 8, "none", 0.1), (2, 8, "none", 0.0), (1, 16, "none", 0.1),
                                    (2, 8, "full", 0.1)]:
        batch_spec = spec(rows * n, k, 16, 48, 8)
        partitioner = Partitioner()
        model, optimizer, shapes, types, layout = build("tiny", 512, "float32", remat, dropout, batch_spec,
                                                        partitioner)
        compiled = train_step.compile_train_step(train_step.make_train_step(model, optimizer), partitioner, layout,
                                                 batch_spec, np.zeros((2,), np.uint32))
        m = compiled.memory_analysis()
        xla = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
        est = memory_estimate.estimate(model, layout.abstract_state, partitioner, shapes, 1, 1 << 40, types)
        print(f"| tiny, vocab 512, {rows} x {k} x (16+48), answer 8 | {remat} | {dropout} | {xla / 2**20:.1f} | "
              f"{est.total / 2**20:.1f} | {est.total / xla - 1:+.1%} |", flush=True)


def paper(args):
    print("| model | devices | sharding | microbatches | params | opt state | grads | activations | total GiB |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for size, rules, mesh_shape, microbatches in [
            ("large", FSDP, (1, 1, 1), 64), ("large", FSDP, (1, 1, 1), 16), ("large", FSDP, (1, 8, 1), 1),
            ("large", FSDP, (1, 8, 1), 8), ("large", FSDP, (1, 64, 1), 1),
            ("xl", FSDP_TP, (1, 32, 2), 2), ("xl", FSDP_TP, (1, 8, 2), 16)]:
        devices = int(np.prod(mesh_shape))
        partitioner = Partitioner(mesh_shape=mesh_shape, logical_axis_rules=rules,
                                  devices=jax.devices()[:devices]) if devices < jax.device_count() else \
            Partitioner(mesh_shape=mesh_shape, logical_axis_rules=rules)
        model, _, shapes, types, layout = build(size, 250112, "bfloat16", "full", 0.1, spec(64, 100, 50, 200, 50),
                                                partitioner)
        est = memory_estimate.estimate(model, layout.abstract_state, partitioner, shapes, microbatches, 80 * 10**9,
                                       types)
        g = 2 ** 30
        print(f"| mT5-{size} | {devices} | {'FSDP' if rules is FSDP else 'FSDP x TP2'} | {microbatches} | "
              f"{est.params / g:.2f} | {est.opt_state / g:.2f} | {est.grads / g:.2f} | {est.activations / g:.2f} "
              f"({est.rows_per_device} rows) | {est.total / g:.2f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=["small", "paper", "both"], default="both")
    parsed = parser.parse_args()
    if parsed.part in ("paper", "both"):
        paper(parsed)
    if parsed.part in ("small", "both"):
        small(parsed)
    sys.exit(0)
