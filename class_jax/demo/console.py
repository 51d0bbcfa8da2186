"""What the demo shows while it runs: one line per step, and a progress bar while a stage trains.

Libraries log to DIR/demo.log instead of the terminal (TensorFlow, Beam, absl and seqio are chatty). The training
bar follows the run's metrics.jsonl from a thread, so the trainer needs no demo-specific hook.
"""

import contextlib
import json
import logging
import os
import pathlib
import sys
import threading
from typing import Iterator

LOG_FILE = "demo.log"


def _import_native_libraries_quietly() -> None:
    """Imports TensorFlow and JAX with file descriptor 2 closed to their C++ start-up chatter (CUDA probes)."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        import jax  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_libraries(workdir: pathlib.Path) -> None:
    """Sends every library's logging to DIR/demo.log (INFO) and keeps the terminal for the demo's own lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _import_native_libraries_quietly()
    workdir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(workdir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
        absl_logging.get_absl_handler().setLevel(logging.CRITICAL)  # absl's own stderr handler
        absl_logging.use_python_logging(quiet=True)
    except ImportError:
        pass
    import warnings  # pylint: disable=import-outside-toplevel
    logging.captureWarnings(True)  # into the log file
    warnings.simplefilter("default")


def step_line(index: int, total: int, title: str, status: str) -> None:
    """Prints `[ 3/19] title ... status`."""
    print(f"[{index:>2}/{total}] {title} ... {status}", flush=True)


@contextlib.contextmanager
def training_bar(run_dir: pathlib.Path, total_steps: int, title: str) -> Iterator[None]:
    """A tqdm bar of a training run's logged steps and loss, fed from its metrics.jsonl while the block runs."""
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel

    stop = threading.Event()
    bar = tqdm(total=total_steps, desc=f"      {title}", unit="step", file=sys.stdout, leave=False,
               dynamic_ncols=True)
    path = run_dir / "metrics.jsonl"

    def follow() -> None:
        offset = 0
        while not stop.wait(0.5):
            if not path.is_file():
                continue
            if path.stat().st_size < offset:  # a resumed run rewrote the file without its superseded records
                offset = 0
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]  # a line being written is read next time
            offset += len(complete)
            for line in complete.decode("utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # torn by an earlier kill
                    continue
                if "loss" in record:
                    bar.n = min(int(record["step"]), total_steps)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
                    bar.refresh()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()
