"""What the checkpoint integrity manifest costs: an mT5-small train state (gin/models/mt5_small.gin's shapes, AdamW)
saved and restored through `TrainCheckpointer`, with and without the checksums, in the same run.

  * save: Orbax's synchronous save of the step; then the manifest (CRC-32 of every file of params/, opt_state/,
    train_meta/), which training normally overlaps with the next steps in a background thread. The table gives
    both, and the time `wait()` blocks for the manifest right after the save (the worst case, at the last step).
  * restore: Orbax's read of the step into the layout (`restore`), against what start-up does (`restore_latest`:
    verify the manifest, compare the metadata with the layout, then the same read).

The state is random float32 (so the files are as incompressible as trained weights). Files are read back from
the page cache (the machine has the memory), so the checksum figures are CPU cost, not disk bandwidth.

  python bench/checkpoint_integrity.py --repeats 3 --out bench/results/checkpoint_integrity.json
"""

import argparse
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

import bench_utils


def _state(size: str):
    """(layout, TrainState) of an mT5-small CLASS model with AdamW, filled with random float32 values."""
    import jax
    from class_jax.models.class_model import CLASSModel
    from class_jax.models.config import ModelConfig
    from class_jax.runtime.partitioning import Partitioner
    from class_jax.trainer import optimizers, train_state

    emb, heads, head_dim, mlp, enc, dec = bench_utils.SIZES[size]
    model = CLASSModel(ModelConfig(vocab_size=bench_utils.MT5_VOCAB, emb_dim=emb, num_heads=heads, head_dim=head_dim,
                                   mlp_dim=mlp, num_encoder_layers=enc, num_decoder_layers=dec))
    optimizer = optimizers.adamw(1e-4, weight_decay=0.01)
    partitioner = Partitioner((-1, 1, 1))
    layout = train_state.build_state_layout(model, optimizer.transform, partitioner, CLASSModel.init_shapes())
    rng = np.random.default_rng(0)

    def fill(abstract):
        if abstract.dtype == np.float32 and abstract.shape:
            value = rng.standard_normal(abstract.shape, dtype=np.float32)
        else:
            value = np.zeros(abstract.shape, abstract.dtype)
        return jax.device_put(value, abstract.sharding)

    state = jax.tree_util.tree_map(fill, layout.abstract_state)
    return layout, state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", choices=sorted(bench_utils.SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temporary folder)")
    parser.add_argument("--out", default="bench/results/checkpoint_integrity.json")
    args = parser.parse_args(argv)
    bench_utils.start_process()

    from class_jax.trainer import checkpointer as checkpoints
    from class_jax.trainer.data import DataPosition

    bench_utils.progress(f"building the {args.size} state")
    layout, state = _state(args.size)
    workdir = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="ckpt_integrity_"))
    ck = checkpoints.TrainCheckpointer(workdir, checkpoints.CheckpointConfig(save_every_steps=1, keep=2,
                                                                             async_save=False))
    times: dict[str, list[float]] = {name: [] for name in (
        "orbax_save_s", "wait_for_manifest_s", "manifest_s", "orbax_restore_s", "verified_restore_s", "verify_s")}
    nbytes = 0
    for step in range(1, args.repeats + 1):
        bench_utils.progress(f"save {step}")
        start = time.perf_counter()
        ck.save(step, state, DataPosition(0, step), force=True)
        saved = time.perf_counter()
        ck.wait()
        times["orbax_save_s"].append(saved - start)
        times["wait_for_manifest_s"].append(time.perf_counter() - saved)
        step_dir = ck.directory / str(step)
        nbytes = sum(path.stat().st_size for path in step_dir.rglob("*") if path.is_file())
        start = time.perf_counter()
        checkpoints.write_integrity_manifest(step_dir)  # again, timed alone: the background thread's work
        times["manifest_s"].append(time.perf_counter() - start)

        bench_utils.progress(f"restore {step}")
        for name, run in (("orbax_restore_s", lambda: ck.restore(step, layout)),
                          ("verified_restore_s", lambda: ck.restore_latest(layout))):
            start = time.perf_counter()
            restored = run()
            import jax
            jax.block_until_ready(restored.state)
            times[name].append(time.perf_counter() - start)
            del restored
        start = time.perf_counter()
        ck.verify(step)
        times["verify_s"].append(time.perf_counter() - start)
    ck.close()
    if not args.dir:
        shutil.rmtree(workdir, ignore_errors=True)

    best = {name: float(min(values)) for name, values in times.items()}
    result = {"size": args.size, "checkpoint_bytes": nbytes, "repeats": args.repeats, "times": times, "best": best,
              "save_overhead_if_blocking": best["manifest_s"] / best["orbax_save_s"],
              "restore_overhead": best["verified_restore_s"] / best["orbax_restore_s"] - 1.0,
              "checksum_gb_per_s": nbytes / best["manifest_s"] / 1e9, "machine": bench_utils.machine()}
    rows = [
        ["save (Orbax, synchronous)", f"{best['orbax_save_s']:.2f}", ""],
        ["manifest (CRC-32 of every file; background thread)", f"{best['manifest_s']:.2f}",
         f"+{100 * result['save_overhead_if_blocking']:.0f}% if it blocked"],
        ["wait() right after the save (worst case)", f"{best['wait_for_manifest_s']:.2f}", ""],
        ["restore (Orbax read only)", f"{best['orbax_restore_s']:.2f}", ""],
        ["restore_latest (verify + metadata check + read)", f"{best['verified_restore_s']:.2f}",
         f"+{100 * result['restore_overhead']:.0f}%"],
        ["verify alone", f"{best['verify_s']:.2f}", f"{result['checksum_gb_per_s']:.2f} GB/s"],
    ]
    print(f"{args.size}: checkpoint of {nbytes / 1e9:.2f} GB (params + AdamW state), best of {args.repeats}")
    print(bench_utils.markdown_table(["operation", "seconds", "overhead"], rows))
    print(f"wrote {bench_utils.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
