"""Dev evaluation inside training, and the best checkpoint by a dev metric (the paper's model selection).

The CLASS authors evaluate every 500 steps (XOR-Retrieve dev R@2kt / R@5kt with the model's own retrieval, or the
reader's XOR-Full dev F1) and keep the checkpoint with the best R@2kt or F1. `DevSelection` is that, as a trainer
hook (`dev_selection_hooks` wraps it for gin; see gin/runs/dev_selection.gin):

  * at every `every_steps` (and once after the last step) it runs its dev evaluators on the current parameters
    (no checkpoint round-trip) and logs their metrics like every metric, as `dev/<evaluator>/<metric>` in
    metrics.jsonl and TensorBoard (plus `dev/best/<evaluator>/<metric>` and `dev/best/step`);
  * when the selected metric (`metric`, e.g. "xor_retrieve/r@2kt", compared by `mode` "max" or "min") beats the
    best so far, it writes MODEL_DIR/best/: the parameters as a params directory (checkpoints/params_io format, so
    `class-jax eval / retrieve / index / export` read it directly) and best.json (step, metric, mode, value and
    every dev metric of that step). The directory is replaced atomically (checkpoints/atomic_dir): a kill leaves
    the old best or the new one, never a mix;
  * best/ lives outside MODEL_DIR/checkpoints, so the rolling checkpoints' `keep` never deletes it, and a resumed
    run reads best.json back before its first evaluation: a worse later evaluation never replaces a better earlier
    one. `train(start_fresh=True)` moves best/ aside with the checkpoints.

Evaluators (the `DevEvaluator` protocol): `SeqioDevEval` runs any SeqIO eval task or mixture through
trainer/evaluate.InferenceEvaluator (e.g. reader F1 / EM on XOR-Full dev);
`class_jax.retrieval.dev_eval.XorRetrieveDevEval` encodes the corpus with the current parameters, retrieves for the
XOR-Retrieve dev questions and scores them with the official-identical scorer.

Bad input fails when the train job starts (hooks.as_hooks calls `DevSelection.check`): a missing task, dev file or
corpus, or a selected metric that none of the evaluators produces, is a one-line UserError before anything is
compiled. Metrics that cannot be known before evaluating (a SeqIO metric function without `metric_names`) are
checked at the first evaluation instead.

Multi-process runs: every process evaluates (the programs are SPMD); process 0 computes the metrics and decides,
and its verdict is broadcast, so every process joins the same parameter gather; process 0 writes best/.
"""

import datetime
import fnmatch
import importlib
import json
import logging
import math
import pathlib
from typing import Any, Mapping, Optional, Protocol, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np

from class_jax.checkpoints import atomic_dir, params_io
from class_jax.models.config import ModelConfig
from class_jax.runtime.errors import UserError
from class_jax.trainer import checkpointer as checkpointer_lib
from class_jax.trainer import data as data_lib
from class_jax.trainer import hooks
from class_jax.trainer import metrics as metrics_lib

PyTree = Any

BEST_FILE = "best.json"
DEV_PREFIX = "dev/"
DEV_SUBDIR = "dev"  # MODEL_DIR/dev/<evaluator>/: what evaluators write (SeqIO inferences, scratch indexes)
MODES = ("max", "min")


class DevEvaluator(Protocol):
    """One dev evaluation. `name` prefixes its metrics: `<name>/<metric>`."""

    name: str

    def check(self) -> None:
        """Reads / validates the inputs (called when the train job starts); raises UserError for bad input."""

    def metric_names(self) -> Optional[Sequence[str]]:
        """The metric names `evaluate` returns, as fnmatch patterns; None when they are known only after evaluating."""

    def evaluate(self, ctx: hooks.HookContext) -> dict[str, float]:
        """Metric name -> value for the parameters of `ctx` (process 0; other processes may return {})."""


class SeqioDevEval:
    """A SeqIO eval task or mixture (its own metric fns) as a dev evaluator, through evaluate.InferenceEvaluator."""

    def __init__(self, dataset_cfg: data_lib.DatasetConfig, name: Optional[str] = None):
        """Configures the evaluation (nothing is read until `check`).

        Args:
          dataset_cfg: the eval data: task or mixture, split, lengths, global batch size (as for `eval`).
          name: prefix of its metrics (default: the task name), e.g. "xor_full" for `dev/xor_full/f1`.
        """
        self.dataset_cfg = dataset_cfg
        self.name = name or dataset_cfg.mixture_or_task_name
        self._evaluator: Any = None

    def _tasks(self) -> list[Any]:
        import seqio  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
        if self.dataset_cfg.module:
            importlib.import_module(self.dataset_cfg.module)
        task_name = self.dataset_cfg.mixture_or_task_name
        try:
            found = seqio.get_mixture_or_task(task_name)
        except (KeyError, ValueError):
            raise UserError(f"dev evaluation {self.name!r}: no SeqIO task or mixture {task_name!r} is registered "
                            "(is the gin file that registers it included?)") from None
        return list(found.tasks) if isinstance(found, seqio.Mixture) else [found]

    def check(self) -> None:
        """The task exists, offers the split, its files are readable and it has metric fns.

        Raises:
          UserError: naming the task and what is wrong.
        """
        split = self.dataset_cfg.split
        for task in self._tasks():
            where = f"dev evaluation {self.name!r}: task {task.name!r}"
            if split not in task.splits:
                raise UserError(f"{where} has no split {split!r} (it has {sorted(task.splits)})")
            try:
                task.source.list_shards(split)
            except UserError as e:
                raise UserError(f"{where}: {e}") from e
            except Exception as e:  # pylint: disable=broad-except  (sources raise anything for missing files)
                raise UserError(f"{where}: cannot list its {split!r} files: {e}".splitlines()[0]) from e
            if not task.metric_fns:
                raise UserError(f"{where} has no metric fns: it cannot be scored")

    def metric_names(self) -> Optional[Sequence[str]]:
        """From the metric fns' `metric_names` (evaluation/metrics.py); `<task>/<name>` for a mixture."""
        tasks = self._tasks()
        names = []
        for task in tasks:
            for fn in task.metric_fns:
                declared = getattr(fn, "metric_names", None) or getattr(getattr(fn, "func", None), "metric_names",
                                                                        None)
                if declared is None:
                    return None
                names.extend(declared if len(tasks) == 1 else [f"{task.name}/{n}" for n in declared])
        return names

    def evaluate(self, ctx: hooks.HookContext) -> dict[str, float]:
        """Decodes / scores the dev split with the current parameters; `<metric>` (one task) or `<task>/<metric>`."""
        if self._evaluator is None:
            from class_jax.trainer import evaluate  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
            self._evaluator = evaluate.InferenceEvaluator(ctx.model, self.dataset_cfg, ctx.partitioner,
                                                          log_dir=ctx.model_dir / DEV_SUBDIR / self.name)
        results = self._evaluator.evaluate(ctx.params, ctx.step)
        flat = metrics_lib.flatten_eval_metrics(results)
        if len(results) == 1:
            # One task: its metrics unprefixed ("f1"), so that the selection reads "<evaluator>/f1".
            task = next(iter(results))
            return {name[len(task) + 1:]: value for name, value in flat.items()}
        return flat


def _agree(value: float) -> float:
    """Process 0's value on every process."""
    if jax.process_count() == 1:
        return value
    return float(multihost_utils.broadcast_one_to_all(np.asarray(value, np.float64)))


def _host_params(params: PyTree) -> PyTree:
    """The full parameters as host arrays (gathered from every process in a multi-process run)."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(params, tiled=True)
    return jax.device_get(params)


def _is_better(value: float, best: Optional[float], mode: str) -> bool:
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


class DevSelection:
    """The dev-evaluation hook (see the module docstring)."""

    def __init__(self, evaluators: Sequence[DevEvaluator], metric: str, mode: str = "max",
                 vocab_path: Optional[str] = None, tensorboard: bool = True, keep_best: bool = True):
        """Configures the evaluation and the selection (nothing is read until `check`).

        Args:
          evaluators: the dev evaluators; their names must differ.
          metric: the metric the best checkpoint is chosen by, `<evaluator name>/<metric>` (a leading "dev/" is
            accepted), e.g. "xor_retrieve/r@2kt" or "xor_full/f1".
          mode: "max" (higher is better) or "min".
          vocab_path: a SentencePiece model copied into best/ (as params directories carry it), when it is a local
            file; None uses the tasks' default vocabulary (tasks/vocab.py).
          tensorboard: also write the dev scalars to TensorBoard (MODEL_DIR/dev).
          keep_best: write best/ (False: only evaluate and log).

        Raises:
          UserError: no evaluator, repeated evaluator names, or a bad mode.
        """
        self.evaluators = list(evaluators)
        if not self.evaluators:
            raise UserError("dev selection: no dev evaluators configured")
        names = [e.name for e in self.evaluators]
        if len(set(names)) != len(names):
            raise UserError(f"dev selection: evaluator names must differ, got {names}")
        if mode not in MODES:
            raise UserError(f"dev selection: mode {mode!r} must be one of {', '.join(MODES)}")
        self.metric = metric[len(DEV_PREFIX):] if metric.startswith(DEV_PREFIX) else metric
        self.mode = mode
        self.vocab_path = vocab_path
        self.tensorboard = tensorboard
        self.keep_best = keep_best
        self._best: Optional[dict[str, Any]] = None
        self._loaded_from: Optional[pathlib.Path] = None
        self._writer: Optional[metrics_lib.MetricsWriter] = None

    # ------------------------------------------------------------------------------------------------ start-up
    def check(self) -> None:
        """Checks every evaluator's inputs and that the selected metric will exist (at train start).

        Raises:
          UserError: bad evaluator input, or a metric none of the evaluators produces.
        """
        for evaluator in self.evaluators:
            evaluator.check()
        evaluator_name, _, metric_name = self.metric.partition("/")
        by_name = {e.name: e for e in self.evaluators}
        if evaluator_name not in by_name or not metric_name:
            raise UserError(f"dev selection metric {self.metric!r}: expected <evaluator>/<metric> with an evaluator "
                            f"among {sorted(by_name)}")
        known = by_name[evaluator_name].metric_names()
        if known is None:
            logging.warning("Dev selection: %r cannot be checked before the first evaluation (the evaluator does "
                            "not declare its metric names).", self.metric)
        elif not any(fnmatch.fnmatchcase(metric_name, pattern) for pattern in known):
            raise UserError(f"dev selection metric {self.metric!r}: {evaluator_name!r} produces "
                            f"{', '.join(known)}; not {metric_name!r}")

    # ------------------------------------------------------------------------------------------------ hook
    def __call__(self, ctx: hooks.HookContext) -> None:
        """Evaluates at `ctx.step` and updates best/ (on resumption: only reads the best so far back)."""
        self._load_best(ctx.model_dir)
        if ctx.resuming:
            return None
        metrics: dict[str, float] = {}
        for evaluator in self.evaluators:
            metrics.update({f"{evaluator.name}/{name}": float(value)
                            for name, value in evaluator.evaluate(ctx).items()})
        value = math.nan
        if jax.process_index() == 0:
            if self.metric not in metrics:
                raise UserError(f"dev selection metric {self.metric!r} is not among the dev metrics at step "
                                f"{ctx.step}: {', '.join(sorted(metrics))}")
            value = metrics[self.metric]
        best_value = None if self._best is None else self._best["value"]
        improved = _agree(float(_is_better(value, best_value, self.mode)))
        if improved and self.keep_best:
            self._write_best(ctx, value, metrics)
        if jax.process_index() == 0:
            logged = dict(metrics)
            if self._best is not None:
                logged[f"best/{self.metric}"] = self._best["value"]
                logged["best/step"] = self._best["step"]
            self._log(ctx.model_dir, ctx.step, logged)
            logging.info("Dev selection at step %d: %s = %.6g (best %s at step %s)%s.", ctx.step, self.metric, value,
                         None if self._best is None else f"{self._best['value']:.6g}",
                         None if self._best is None else self._best["step"], "; new best" if improved else "")
        return None

    def _load_best(self, model_dir: pathlib.Path) -> None:
        """Reads MODEL_DIR/best/best.json (once per model_dir): the value later evaluations must beat."""
        if self._loaded_from == model_dir:
            return
        self._loaded_from = model_dir
        self._best = read_best(model_dir)
        if self._best is None:
            return
        if self._best.get("metric") != self.metric or self._best.get("mode") != self.mode:
            raise UserError(f"{best_dir(model_dir) / BEST_FILE}: the best checkpoint was chosen by "
                            f"{self._best.get('metric')!r} ({self._best.get('mode')}), this run selects by "
                            f"{self.metric!r} ({self.mode}); restore the setting or move best/ aside")
        logging.info("Dev selection: the best so far is step %d with %s = %.6g (%s).", self._best["step"],
                     self.metric, self._best["value"], best_dir(model_dir))

    def _write_best(self, ctx: hooks.HookContext, value: float, metrics: Mapping[str, float]) -> None:
        """Replaces best/ atomically with the current parameters and best.json (process 0 writes)."""
        params = _host_params(ctx.params)
        record = {"step": ctx.step, "metric": self.metric, "mode": self.mode, "value": value,
                  "metrics": {f"{DEV_PREFIX}{name}": v for name, v in sorted(metrics.items())},
                  "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        if jax.process_index() == 0:
            write_best(ctx.model_dir, params, getattr(ctx.model, "config", None), record,
                       spiece_model=self._spiece_model())
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"class_jax_dev_best_{ctx.step}")
        self._best = record

    def _spiece_model(self) -> Optional[pathlib.Path]:
        from class_jax.tasks import vocab as vocab_lib  # pylint: disable=import-outside-toplevel  (imports seqio)
        path = pathlib.Path(vocab_lib.vocabulary_path(self.vocab_path))
        return path if path.is_file() else None

    def _log(self, model_dir: pathlib.Path, step: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            self._writer = metrics_lib.MetricsWriter(model_dir, tensorboard=self.tensorboard, subdir=DEV_SUBDIR)
        self._writer.write(step, scalars, prefix=DEV_PREFIX)


def best_dir(model_dir: str | pathlib.Path) -> pathlib.Path:
    """MODEL_DIR/best."""
    return pathlib.Path(model_dir).absolute() / checkpointer_lib.BEST_SUBDIR


def read_best(model_dir: str | pathlib.Path) -> Optional[dict[str, Any]]:
    """The best.json record of a run, or None when it has no best checkpoint yet.

    Raises:
      UserError: best.json exists but is not a valid record.
    """
    path = best_dir(model_dir) / BEST_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        int(record["step"]), float(record["value"])  # pylint: disable=expression-not-assigned
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a best-checkpoint record ({e}); move best/ aside") from None
    return record


def write_best(model_dir: str | pathlib.Path, params: PyTree, config: Any, record: Mapping[str, Any], *,
               spiece_model: Optional[pathlib.Path] = None) -> pathlib.Path:
    """Replaces MODEL_DIR/best atomically with `params` and best.json (a single-process write).

    A CLASS model's parameters (`config` a ModelConfig) are written as a params directory; any other model's as an
    Orbax params/ tree without model_config.json (what the trainer tests' tiny model has).

    Returns:
      The best directory.
    """
    directory = best_dir(model_dir)
    with atomic_dir.staged_directory(directory, overwrite=True) as staging:
        if isinstance(config, ModelConfig):
            # save_params writes its own staged copy and renames it onto `staging` (empty, so replaced).
            params_io.save_params(staging, params, config, spiece_model=spiece_model, overwrite=True)
        else:
            import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
            from flax.core import meta  # pylint: disable=import-outside-toplevel
            tree = jax.tree_util.tree_map(np.asarray, meta.unbox(params))
            with ocp.StandardCheckpointer() as checkpointer:
                checkpointer.save(staging / params_io.PARAMS_DIR, tree)
                checkpointer.wait_until_finished()
        (staging / BEST_FILE).write_text(json.dumps(dict(record), indent=2, sort_keys=True) + "\n",
                                         encoding="utf-8")
    logging.info("Dev selection: wrote the best checkpoint (step %d, %s = %.6g) to %s.", record["step"],
                 record["metric"], record["value"], directory)
    return directory


def dev_selection_hooks(*, evaluators: Sequence[DevEvaluator], metric: str, mode: str = "max",
                        every_steps: int = 500, run_at_start: bool = False, vocab_path: Optional[str] = None,
                        tensorboard: bool = True, keep_best: bool = True) -> list[hooks.PeriodicHook]:
    """The dev evaluation as trainer hooks, for gin (`train.eval_hooks`; see gin/runs/dev_selection.gin).

    Args:
      evaluators: the dev evaluators (SeqioDevEval, retrieval.dev_eval.XorRetrieveDevEval, ...).
      metric: `<evaluator>/<metric>` the best checkpoint is chosen by.
      mode: "max" or "min".
      every_steps: steps between evaluations (paper: 500); the last step is always evaluated.
      run_at_start: also evaluate at step 0 (the initial parameters).
      vocab_path: SentencePiece model copied into best/.
      tensorboard: also write TensorBoard scalars.
      keep_best: write MODEL_DIR/best.

    Returns:
      [the dev-selection hook] (it runs after the run's `hooks` at the same step, e.g. after a passage refresh).
    """
    selection = DevSelection(evaluators, metric, mode, vocab_path=vocab_path, tensorboard=tensorboard,
                             keep_best=keep_best)
    return [hooks.PeriodicHook(selection, every_steps=every_steps, run_at_start=run_at_start, name="dev_selection",
                               run_at_end=True)]

