"""Evaluation with `seqio.Evaluator`: the tasks' own metric fns over the model's predictions and scores.

`InferenceEvaluator` binds a seqio.Evaluator (the task's validation data, converted by the model's feature
converter and cached in memory) to a `Predictor` (the jitted, partitioned predict / score functions); the train
loop holds one per eval dataset, and `evaluate(...)` is the gin-configured job behind `class-jax eval`.

`register_in_memory_task` registers a SeqIO task over a Python list of examples, for tests and quick checks.
"""

import importlib
import logging
import pathlib
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
import seqio
import tensorflow as tf

from class_jax.models.base import BaseModel
from class_jax.trainer import data as data_lib
from class_jax.trainer import metrics as metrics_lib
from class_jax.trainer import param_sources
from class_jax.trainer import train_state
from class_jax.runtime.partitioning import Partitioner
from class_jax.trainer.predictor import Predictor

PyTree = Any


class InferenceEvaluator:
    """Runs a SeqIO evaluation of given parameters."""

    def __init__(self, model: BaseModel, dataset_cfg: data_lib.DatasetConfig, partitioner: Partitioner,
                 log_dir: Optional[str | pathlib.Path] = None):
        """Builds (and caches) the evaluation datasets.

        Args:
          model: the model.
          dataset_cfg: the eval data; `batch_size` is the global prediction batch, `split` the eval split,
            `task_feature_lengths` the sequence lengths (shuffle / seed are ignored: evaluation reads in order).
          partitioner: mesh and rules.
          log_dir: where seqio's JSONLogger writes inferences and metrics (process 0); None: no files.
        """
        if dataset_cfg.module:
            importlib.import_module(dataset_cfg.module)
        loggers = (seqio.JSONLogger,) if log_dir is not None and jax.process_index() == 0 else ()
        if loggers:
            pathlib.Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.name = dataset_cfg.mixture_or_task_name
        self.evaluator = seqio.Evaluator(
            mixture_or_task_name=dataset_cfg.mixture_or_task_name,
            feature_converter=data_lib.feature_converter_for(model, pack=False),
            eval_split=dataset_cfg.split,
            use_cached=dataset_cfg.use_cached,
            seed=dataset_cfg.seed,
            sequence_length=dict(dataset_cfg.task_feature_lengths),
            logger_cls=loggers,
            log_dir=str(log_dir) if loggers else None,
            async_compute_metrics=False,
        )
        self.predictor = Predictor(model, partitioner, dataset_cfg.batch_size)

    def model_input_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """Feature -> shape of a batch of the (first task's) model features."""
        ds = next(iter(self.evaluator.cached_model_datasets.values()))
        spec = ds.element_spec[1] if isinstance(ds.element_spec, tuple) else ds.element_spec
        return {name: (batch_size,) + tuple(s.shape) for name, s in spec.items()}

    def evaluate(self, params: PyTree, step: Optional[int] = None) -> dict[str, dict[str, Any]]:
        """Predicts / scores every eval task and computes its metrics.

        Returns:
          task name -> metric name -> value.
        """

        def split_indices(ds: tf.data.Dataset) -> tuple[list[int], list[dict[str, np.ndarray]]]:
            indices, examples = [], []
            for index, example in ds.as_numpy_iterator():
                indices.append(int(index))
                examples.append(example)
            return indices, examples

        def predict_fn(ds: tf.data.Dataset) -> list[tuple[int, list[int]]]:
            indices, examples = split_indices(ds)
            return [(i, tokens.tolist()) for i, tokens in zip(indices, self.predictor.predict(params, examples))]

        def score_fn(ds: tf.data.Dataset) -> list[tuple[int, float]]:
            indices, examples = split_indices(ds)
            return [(i, float(score)) for i, score in zip(indices, self.predictor.score(params, examples))]

        # Every process decodes (the batches are global); process 0 alone computes and logs the metrics.
        future, _ = self.evaluator.evaluate(compute_metrics=jax.process_index() == 0, step=step,
                                            predict_fn=predict_fn, score_fn=score_fn)
        return future.result() or {}


def evaluate(*,
             model: BaseModel,
             dataset_cfg: data_lib.DatasetConfig | Sequence[data_lib.DatasetConfig],
             partitioner: Partitioner,
             checkpoint_path: str,
             output_dir: str,
             step: Optional[int] = None,
             tensorboard: bool = True) -> dict[str, dict[str, Any]]:
    """Evaluates a checkpoint on one or more SeqIO eval datasets (the job behind `class-jax eval`).

    Args:
      model: the model.
      dataset_cfg: eval dataset(s).
      partitioner: mesh and rules.
      checkpoint_path: a run directory (its latest step, or `step`) or a params_io directory.
      output_dir: where inferences, metrics.jsonl and TensorBoard events go.
      step: which step of a run directory (None: latest).
      tensorboard: also write TensorBoard scalars.

    Returns:
      task name -> metric name -> value.
    """
    configs = [dataset_cfg] if isinstance(dataset_cfg, data_lib.DatasetConfig) else list(dataset_cfg)
    output = pathlib.Path(output_dir)
    model = param_sources.adopt_checkpoint_settings(model, checkpoint_path)  # e.g. a released reader's pair layout
    evaluators = [InferenceEvaluator(model, config, partitioner, log_dir=output) for config in configs]
    abstract, _ = train_state.build_param_layout(model, partitioner,
                                                 evaluators[0].model_input_shapes(configs[0].batch_size))
    params, source = param_sources.load_params_for_inference(checkpoint_path, abstract, step)
    read_step = step if step is not None else source.step
    logging.info("Evaluating parameters from %s", source.description)
    results: dict[str, dict[str, Any]] = {}
    for evaluator in evaluators:
        results.update(evaluator.evaluate(params, read_step))
    writer = metrics_lib.MetricsWriter(output, tensorboard=tensorboard, subdir="eval")
    writer.write(read_step or 0, metrics_lib.flatten_eval_metrics(results), prefix="eval/")
    writer.close()
    return results


def register_in_memory_task(name: str, examples: Sequence[Mapping[str, Any]],
                            output_features: Mapping[str, seqio.Feature],
                            metric_fns: Sequence[Callable[..., Mapping[str, Any]]] = (),
                            splits: Sequence[str] = ("train", "validation"),
                            preprocessors: Sequence[Callable[..., Any]] = ()) -> seqio.Task:
    """Registers (replacing any same-named task) a SeqIO task whose every split is `examples`.

    Args:
      name: task name.
      examples: dicts of str / int / float values (text features are tokenized by the default preprocessors).
      output_features: seqio output features (vocabulary per feature).
      metric_fns: seqio metric fns `(targets, predictions)` / `(targets, scores)`.
      splits: the split names offered.
      preprocessors: run before tokenisation (tokenize, append EOS are added after them).

    Returns:
      The task.
    """
    keys = list(examples[0])
    columns = {key: [e[key] for e in examples] for key in keys}

    def dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None) -> tf.data.Dataset:
        del split, shuffle_files, seed
        return tf.data.Dataset.from_tensor_slices(columns)

    seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(dataset_fn, splits=list(splits)),
        preprocessors=[*preprocessors, seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features=dict(output_features),
        metric_fns=list(metric_fns),
    )
