"""Helpers shared by the benchmark scripts: timing, the measured matmul peak, model shapes, tables, JSON.

The scripts run as `python bench/NAME.py`, so this directory is on `sys.path` and they import it as
`bench_utils`.
"""

import json
import os
import pathlib
import platform
import re
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

# (emb, heads, head_dim, mlp, encoder layers, decoder layers) of the mT5 family; retriever layer B = encoder // 2.
SIZES = {
    "tiny": (64, 4, 16, 128, 4, 2),
    "small": (512, 6, 64, 1024, 8, 8),
    "base": (768, 12, 64, 2048, 12, 12),
    "large": (1024, 16, 64, 2816, 24, 24),
}
MT5_VOCAB = 250112


_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """Prints `message` to stderr with the seconds since the benchmark started (where a slow run spends its time:
    model building, compilation, timing)."""
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def timeit(step: Callable[[], Any], warmup: int, repeats: int) -> dict[str, float]:
    """Runs `step` `warmup` times untimed, then `repeats` times timed.

    Args:
      step: the work; it must block until its results are ready.
      warmup: untimed calls (compilation, caches).
      repeats: timed calls.

    Returns:
      {"median_s", "min_s", "all_s"} over the timed calls.
    """
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"median_s": float(np.median(times)), "min_s": float(min(times)), "all_s": times}


def in_blocks(steps: dict[str, Callable[[], Any]], warmup: int, repeats: int, rounds: int = 2,
              pause_s: float = 1.0) -> dict[str, dict[str, float]]:
    """Times several implementations in alternating blocks of back-to-back calls.

    Each round runs, for every implementation in turn, `repeats` timed calls back to back (after `warmup` untimed
    ones in the first round). Alternating blocks lets slow changes of the load from other jobs hit every
    implementation; keeping the calls of a block together keeps each framework's thread pool warm. Before each
    block the process sleeps `pause_s`, because the thread pools of XLA and of torch (OpenMP) spin for a while after
    their work: measured here, a torch step timed right after a JAX step ran several times slower.

    Args:
      steps: name -> the work (it must block until its results are ready).
      warmup: untimed calls of each before its first block (compilation, caches).
      repeats: timed calls per block.
      rounds: blocks per implementation.
      pause_s: idle time before each block.

    Returns:
      name -> {"median_s", "min_s", "all_s"} over all its timed calls. On a shared machine the minimum is the
      better estimate of what the implementation costs by itself.
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(rounds):
        for name, step in steps.items():
            time.sleep(pause_s)
            for _ in range(warmup if round_index == 0 else 0):
                step()
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return {name: {"median_s": float(np.median(values)), "min_s": float(min(values)), "all_s": values}
            for name, values in times.items()}


def measure_peak_flops(size: int | None = None, repeats: int = 5, dtype: str = "float32",
                       precision: str | None = None) -> dict[str, float]:
    """Best square-matmul FLOP/s of JAX (default backend) and, when installed, torch, in `dtype`.

    Random operands (zeros and ones can run faster than real data on GPUs). On a GPU, float32 products run at each
    framework's default precision (JAX's may use TF32; torch's does not), so MFU of float32 runs there is measured
    against the faster of the two.

    Args:
      size: matrix side; None: 8192 on an accelerator (to fill it), 2048 on CPU.
      repeats: timed products (the fastest is kept).
      dtype: "float32" or "bfloat16".
      precision: JAX's `lax.Precision` name for the product (None: the default); with "highest" torch's float32
        products may not use TF32 either.

    Returns:
      {"jax": FLOP/s, "torch": FLOP/s (absent without torch)}.
    """
    import jax
    import jax.numpy as jnp
    if size is None:
        size = 2048 if jax.default_backend() == "cpu" else 8192
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32).astype(dtype)
    matmul = jax.jit(lambda x: jnp.matmul(x, x, precision=precision))
    result = {"jax": 2 * size ** 3 / timeit(lambda: matmul(a).block_until_ready(), 2, repeats)["min_s"]}
    try:
        import torch
    except ImportError:
        return result
    device = torch_device()
    t = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    if precision == "highest":
        torch.backends.cuda.matmul.allow_tf32 = False  # torch's default; said here because the figure relies on it

    def run():
        t @ t
        if device == "cuda":
            torch.cuda.synchronize()

    result["torch"] = 2 * size ** 3 / timeit(run, 2, repeats)["min_s"]
    return result


def measure_copy_bandwidth(megabytes: int | None = None, repeats: int = 10) -> float:
    """Device memory bandwidth in bytes/s: the fastest jitted `x + 1` over a large float32 array, counting the bytes
    read plus the bytes written (the bound that a pass reading an index once is held to).

    Args:
      megabytes: array size; None: 2048 on an accelerator, 256 on CPU.
      repeats: timed passes (the fastest is kept).
    """
    import jax
    import jax.numpy as jnp
    if megabytes is None:
        megabytes = 256 if jax.default_backend() == "cpu" else 2048
    x = jnp.ones((megabytes * (1 << 20) // 4,), jnp.float32)
    step = jax.jit(lambda v: v + 1.0)
    return 2 * x.nbytes / timeit(lambda: step(x).block_until_ready(), 2, repeats)["min_s"]


def jax_peak_memory() -> list[int] | None:
    """Peak bytes in use on each JAX device since the process started, or None where the backend keeps no
    statistics (CPU)."""
    import jax
    stats = [device.memory_stats() for device in jax.local_devices()]
    if not all(stats) or any("peak_bytes_in_use" not in s for s in stats):
        return None
    return [int(s["peak_bytes_in_use"]) for s in stats]


def best_peak(*measurements: dict[str, float]) -> dict[str, float]:
    """Per-framework maximum over several peak measurements (before and after the timed runs).

    On a shared machine a single measurement taken during a burst of other work would understate the peak and
    inflate MFU, so the best one is kept.
    """
    peak: dict[str, float] = {}
    for measurement in measurements:
        for name, value in measurement.items():
            peak[name] = max(peak.get(name, 0.0), value)
    return peak


def torch_device() -> str:
    """"cuda" when torch sees a GPU, else "cpu"."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_autocast(device: str, dtype: str):
    """The torch context that runs a side in `dtype`: bfloat16 autocast over float32 weights, or nothing."""
    import torch
    return torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")


def start_process() -> None:
    """Starts a benchmark process as `class-jax` starts: re-executed with huge-page malloc (`class_jax.runtime.host_malloc`),
    so that the figures are those users get. Both sides of a comparison run in the process and share it;
    CLASS_JAX_HUGE_PAGE_MALLOC=0 measures without it."""
    from class_jax.runtime import host_malloc  # pylint: disable=import-outside-toplevel
    host_malloc.reexec_with_huge_page_malloc()


def cpu_model() -> dict[str, Any]:
    """The host CPU's model name and the vector extensions that decide its matmul rate (Linux; empty elsewhere).

    The hosts these benchmarks run on change between sessions, and the same code is 1.3x or 1.7x the peer depending
    on the CPU, so each result records which one it came from.
    """
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    name = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"cpu_model": name.group(1).strip() if name else platform.processor(),
            "cpu_vector_flags": [flag for flag in wanted if flags and flag in flags.group(1).split()]}


def machine() -> dict[str, Any]:
    """Where the run happened: platform, CPUs, load, glibc tunables, JAX backend and devices, torch threads."""
    info = {"machine": platform.platform(), **cpu_model(), "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
    try:
        import jax
        info.update(jax_backend=jax.default_backend(), jax_devices=jax.device_count(),
                    jax_device_kind=jax.devices()[0].device_kind)
    except ImportError:
        pass
    try:
        import torch
        info.update(torch_threads=torch.get_num_threads(), torch_device=torch_device())
    except ImportError:
        pass
    return info


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; cells are printed with str()."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str, result: dict[str, Any]) -> pathlib.Path:
    """Writes `result` as indented JSON (creating folders) and returns the path."""
    return write_text(path, json.dumps(result, indent=2) + "\n")


def write_text(path: str, text: str) -> pathlib.Path:
    """Writes `text` to `path` (creating folders) and returns the path."""
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def encoder_layer_flops(tokens: int, length: int, emb: int, inner: int, mlp: int, mlp_branches: int = 2) -> float:
    """Forward matmul FLOPs of one pre-norm T5 encoder layer over `tokens` tokens in sequences of `length`.

    Args:
      tokens: total tokens (sequences x length).
      length: sequence length (for the QK^T and PV products).
      emb: d_model.
      inner: heads x head_dim.
      mlp: d_ff.
      mlp_branches: input branches of the (gated) MLP.

    Returns:
      2 x multiply-adds of the Q/K/V/O projections, the attention products and the MLP.
    """
    dense = 2 * tokens * (4 * emb * inner + (mlp_branches + 1) * emb * mlp)
    attention = 2 * 2 * tokens * length * inner
    return float(dense + attention)
