"""Where a compiled step spends its time: a JAX profiler trace of a few calls, summed per XLA operation.

Used by `model_step.py --profile_dir`. It reads the trace with `jax.profiler.ProfileData`, so it needs neither
TensorFlow nor TensorBoard (GPU hosts often have neither). What it sums:
  * on GPUs and TPUs, the "XLA Ops" line of each device plane where the trace has one, else its "Stream" lines
    (kernels, named by the HLO operation that launched them where a `hlo_op` stat says so): device time per
    operation, and per `hlo_category` where the trace names one (convolution, non-fusion elementwise, ...);
  * on the CPU, the XLA thread-pool lines: thread time per operation (two threads running at once count twice),
    without the executor's own wrapper and wait events.
Ops are named as in the compiled HLO (`Compiled.as_text()`), which says what each fusion computes.
"""

import collections
import pathlib
from typing import Any, Callable

# CPU events that wrap or wait for the operations rather than being one.
_CPU_WRAPPERS = ("ThunkExecutor::", "SlinkyThreadPool::", "ThreadpoolListener::", "end: ")


def trace(step: Callable[[], Any], trace_dir: str, calls: int) -> pathlib.Path:
    """Runs `step` `calls` times under the JAX profiler (it must block until its work is done).

    Returns:
      The written `.xplane.pb` file.

    Raises:
      FileNotFoundError: the profiler wrote no trace.
    """
    import jax
    with jax.profiler.trace(trace_dir):
        for _ in range(calls):
            step()
    files = sorted(pathlib.Path(trace_dir).glob("**/*.xplane.pb"), key=lambda path: path.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"{trace_dir}: the profiler wrote no .xplane.pb file")
    return files[-1]


def _op_lines(plane) -> list:
    lines = list(plane.lines)
    if plane.name.startswith("/device:"):
        ops = [line for line in lines if line.name == "XLA Ops"]
        return ops or [line for line in lines if line.name.startswith("Stream")]
    if plane.name == "/host:CPU":
        return [line for line in lines if line.name.startswith("tf_XLA")]
    return []


def summarize(xplane_file: pathlib.Path, calls: int, top: int = 30) -> dict[str, Any]:
    """Per-call seconds of each operation in a trace, largest first.

    Args:
      xplane_file: a trace written by `trace`.
      calls: how many calls it holds (totals are divided by this).
      top: operations kept per plane.

    Returns:
      {plane name: {"op_seconds_per_call": total, "ops": [[name, seconds per call, occurrences per call], ...],
       "categories": {hlo_category: seconds per call}}} for each plane with operations.
    """
    from jax.profiler import ProfileData
    data = ProfileData.from_file(str(xplane_file))
    summary = {}
    for plane in data.planes:
        seconds, counts, categories = collections.Counter(), collections.Counter(), collections.Counter()
        for line in _op_lines(plane):
            for event in line.events:
                if event.name.startswith(_CPU_WRAPPERS):
                    continue
                stats = dict(event.stats)
                name = str(stats.get("hlo_op", event.name))
                duration = event.duration_ns / 1e9 / calls
                seconds[name] += duration
                counts[name] += 1
                category = stats.get("hlo_category")
                if category:
                    categories[str(category)] += duration
        if seconds:
            summary[plane.name] = {
                "op_seconds_per_call": sum(seconds.values()),
                "ops": [[name, value, counts[name] / calls] for name, value in seconds.most_common(top)],
                "categories": dict(categories.most_common()),
            }
    return summary


def print_summary(summary: dict[str, Any], top: int = 15) -> None:
    """Prints each plane's largest operations and categories."""
    for plane, info in summary.items():
        print(f"\nprofile, {plane}: {info['op_seconds_per_call'] * 1e3:.1f} ms of operations per call")
        for name, seconds, count in info["ops"][:top]:
            print(f"  {seconds * 1e3:9.2f} ms  x{count:<5g} {name[:100]}")
        for category, seconds in info["categories"].items():
            print(f"  category {category}: {seconds * 1e3:.2f} ms")
