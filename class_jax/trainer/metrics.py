"""Training metrics: averaging over a log period, throughput and MFU, and writing to stdout / JSONL / TensorBoard.

MFU = model FLOPs per step / (seconds per step x peak FLOP/s per device x devices). The FLOPs come from the model's
`flops_per_step` (analytic, forward + backward), or XLA's cost analysis of the compiled step when the model gives
0. The peak per device is, in order: the `peak_flops_per_device` gin value; the vendor's dense bf16 peak for known
accelerators (table below); otherwise a measured one — the best of a few large bf16 (TPU/GPU) or f32 (CPU) matmuls
on one device, which is what the device actually sustains, so MFU on such devices reads as "fraction of matmul
speed" rather than of a datasheet number. Step time is wall time over the period minus the time spent in
evaluation, hooks and checkpointing, measured after blocking on the last step's metrics.

metrics.jsonl holds one JSON record per line, {"step": s, name: value, ...}, in the order written. A resumed run
first drops the records past its checkpoint's step (they are logged again), rewriting the file atomically; readers
use `read_records`, which also skips a torn line (a kill mid-write) and drops records superseded by a resume in
files written before that rule.
"""

import json
import logging
import os
import pathlib
import time
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

# Dense bf16 peak FLOP/s per JAX device, from the vendors' datasheets (a TPU v2/v3 "device" is one core).
_PEAK_FLOPS_BY_DEVICE_KIND = (
    ("tpu v2", 22.5e12), ("tpu v3", 61.5e12), ("tpu v4", 275e12), ("tpu v5 lite", 197e12), ("tpu v5e", 197e12),
    ("tpu v5p", 459e12), ("tpu v5", 459e12), ("tpu v6", 918e12), ("tpu7x", 2307e12),
    ("h200", 989e12), ("h100", 989e12), ("a100", 312e12), ("l4", 121e12), ("a10g", 70e12), ("v100", 125e12),
)


def known_peak_flops(device_kind: str) -> Optional[float]:
    """The datasheet dense bf16 peak of a device kind, or None when unknown."""
    kind = device_kind.lower()
    for name, flops in _PEAK_FLOPS_BY_DEVICE_KIND:
        if name in kind:
            return flops
    return None


def measure_matmul_flops(size: Optional[int] = None, repeats: int = 3) -> float:
    """Best observed FLOP/s of a square matmul on the first local device (bf16 on accelerators, f32 on CPU).

    Args:
      size: matrix side; None picks 512 on CPU (a fraction of a second) and 8192 elsewhere.
      repeats: timed runs after a warm-up; the fastest counts.
    """
    device = jax.local_devices()[0]
    on_cpu = device.platform == "cpu"
    dtype = jnp.float32 if on_cpu else jnp.bfloat16
    size = size or (512 if on_cpu else 8192)
    a = jax.device_put(jnp.ones((size, size), dtype), device)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def peak_flops_per_device(configured: Optional[float] = None) -> tuple[float, str]:
    """Peak FLOP/s of one device and where the number came from ("configured", "datasheet" or "measured")."""
    if configured:
        return float(configured), "configured"
    known = known_peak_flops(jax.devices()[0].device_kind)
    if known:
        return known, "datasheet"
    return measure_matmul_flops(), "measured"


def count_batch_tokens(batch_spec: Mapping[str, tuple[tuple[int, ...], Any]]) -> int:
    """Token positions processed per step: elements of every integer *_tokens feature (padding included)."""
    total = 0
    for name, (shape, dtype) in batch_spec.items():
        if name.endswith("_tokens") and "target" not in name and np.issubdtype(np.dtype(dtype), np.integer):
            total += int(np.prod(shape))
    return total


class MetricsAccumulator:
    """Collects per-step device metrics without synchronising; averages them at the end of a log period."""

    def __init__(self):
        self._steps: list[Mapping[str, jax.Array]] = []

    def add(self, metrics: Mapping[str, jax.Array]) -> None:
        """Keeps one step's metrics (device arrays; nothing is fetched here)."""
        self._steps.append(metrics)

    def __len__(self) -> int:
        return len(self._steps)

    def summarize(self) -> dict[str, float]:
        """Means over the period ("num_tokens" is summed; "learning_rate" is the last value)."""
        fetched = jax.device_get(self._steps)
        self._steps = []
        if not fetched:
            return {}
        summary = {}
        for name in fetched[0]:
            values = np.asarray([float(m[name]) for m in fetched])
            if name == "num_tokens":
                summary[name] = float(values.sum())
            elif name == "learning_rate":
                summary[name] = float(values[-1])
            else:
                summary[name] = float(values.mean())
        return summary


def read_records(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file, as the run's final history.

    Lines that are not a JSON record (a torn last line from a kill mid-write) are skipped. When a record's step is
    below the highest step seen before it, the run was resumed there: earlier records at that step or later were
    superseded and are dropped (current writers drop them from the file; older files still hold them).

    Returns:
      The records in file order; [] when the file does not exist.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        return []
    records: list[dict[str, Any]] = []
    highest = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            logging.warning("%s line %d is not a metrics record (torn by a kill?); skipped.", path, number)
            continue
        if highest is not None and step < highest:
            records = [r for r in records if int(r["step"]) < step]
        highest = step if highest is None else max(highest, step)
        records.append(record)
    return records


def truncate_records(path: str | pathlib.Path, last_step: int) -> int:
    """Rewrites a metrics.jsonl file (atomically) without records past `last_step` and torn lines.

    Returns:
      How many lines were dropped.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [json.dumps(record, sort_keys=True) for record in read_records(path) if int(record["step"]) <= last_step]
    dropped = sum(1 for line in lines if line.strip()) - len(kept)
    if dropped:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(temporary, path)
    return dropped


class MetricsWriter:
    """Writes scalars to stdout (logging), `<model_dir>/metrics.jsonl` and TensorBoard; process 0 only."""

    def __init__(self, model_dir: str | pathlib.Path, tensorboard: bool = True, subdir: str = "train",
                 resume_step: Optional[int] = None):
        """Opens the outputs.

        Args:
          model_dir: the run's directory.
          tensorboard: also write TensorBoard events (via clu.metric_writers) under `<model_dir>/<subdir>`.
          subdir: TensorBoard sub-directory (train / eval).
          resume_step: the step training continues from: records past it are dropped from metrics.jsonl first.
        """
        self.enabled = jax.process_index() == 0
        self.jsonl_path = pathlib.Path(model_dir) / "metrics.jsonl"
        self._tensorboard = None
        if self.enabled:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            if resume_step is not None:
                dropped = truncate_records(self.jsonl_path, resume_step)
                if dropped:
                    logging.info("Dropped %d records past step %d from %s (logged again from there).", dropped,
                                 resume_step, self.jsonl_path)
            if tensorboard:
                from clu import metric_writers  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
                self._tensorboard = metric_writers.SummaryWriter(str(pathlib.Path(model_dir) / subdir))

    def write(self, step: int, scalars: Mapping[str, float], prefix: str = "") -> None:
        """Writes one record of scalars at `step`."""
        if not self.enabled or not scalars:
            return
        named = {f"{prefix}{name}": float(value) for name, value in scalars.items()}
        logging.info("step %d: %s", step, "  ".join(f"{k}={_format(v)}" for k, v in sorted(named.items())))
        with self.jsonl_path.open("a") as f:
            f.write(json.dumps({"step": step, **named}, sort_keys=True) + "\n")
        if self._tensorboard is not None:
            self._tensorboard.write_scalars(step, named)
            self._tensorboard.flush()

    def close(self) -> None:
        """Flushes and closes TensorBoard."""
        if self._tensorboard is not None:
            self._tensorboard.close()


def _format(value: float) -> str:
    return f"{value:.6g}"


def throughput_metrics(steps: int, train_seconds: float, flops_per_step: float, tokens_per_step: int,
                       examples_per_step: int, peak_flops: float, num_devices: int) -> dict[str, float]:
    """Step time, tokens/s, examples/s and MFU over a period of `steps` steps."""
    if steps <= 0 or train_seconds <= 0:
        return {}
    step_time = train_seconds / steps
    metrics = {"perf/step_time_s": step_time, "perf/tokens_per_s": tokens_per_step / step_time,
               "perf/examples_per_s": examples_per_step / step_time,
               "perf/tokens_per_s_per_device": tokens_per_step / step_time / num_devices}
    if flops_per_step > 0 and peak_flops > 0:
        metrics["perf/mfu"] = flops_per_step / (step_time * peak_flops * num_devices)
        metrics["perf/tflops_per_s_per_device"] = flops_per_step / step_time / num_devices / 1e12
    return metrics


class PeriodTimer:
    """Wall time of a log period, minus time spent outside training steps (eval, hooks, checkpoints)."""

    def __init__(self):
        self._start = time.perf_counter()
        self._excluded = 0.0

    def exclude(self, seconds: float) -> None:
        """Subtracts time spent outside training steps from the current period."""
        self._excluded += seconds

    def lap(self) -> float:
        """Training seconds since the last lap, and restart."""
        now = time.perf_counter()
        seconds = now - self._start - self._excluded
        self._start, self._excluded = now, 0.0
        return max(seconds, 0.0)


def flatten_eval_metrics(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """{task: {metric: value}} -> {"task/metric": float}, keeping numeric scalars only."""
    flat = {}
    for task, metrics in results.items():
        for metric, value in (metrics or {}).items():
            value = getattr(value, "value", value)
            if np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number):
                flat[f"{task}/{metric}"] = float(value)
    return flat
