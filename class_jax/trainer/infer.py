"""`class-jax infer`: decode a SeqIO split with a checkpoint and write the predictions as JSON lines.

One file per task, `<output_dir>/<task>-<split>.jsonl`, one line per example in the split's order:

    {"index": 0, "prediction": "...", "targets": "...", "inputs": "...", ...}

"prediction" is the decoded output (the task's postprocessor applied when `postprocess` is on); every
`*_pretokenized` text feature of the example is copied without its suffix (e.g. "targets", "inputs"), so the
file can be scored on its own. Every process decodes; process 0 writes.
"""

import importlib
import json
import logging
import pathlib
from typing import Any, Optional

import jax
import numpy as np
import seqio

from class_jax.models.base import BaseModel
from class_jax.trainer import data as data_lib
from class_jax.trainer import param_sources
from class_jax.trainer import train_state
from class_jax.runtime.partitioning import Partitioner
from class_jax.trainer.predictor import Predictor

PRETOKENIZED_SUFFIX = "_pretokenized"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.dtype.kind in "OSU" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def infer(*,
          model: BaseModel,
          dataset_cfg: data_lib.DatasetConfig,
          partitioner: Partitioner,
          checkpoint_path: str,
          output_dir: str,
          step: Optional[int] = None,
          target_feature: str = "targets",
          postprocess: bool = True,
          max_examples: Optional[int] = None) -> list[pathlib.Path]:
    """Decodes every example of the dataset's split and writes JSONL files.

    Args:
      model: the model.
      dataset_cfg: task or mixture, split, feature lengths and (global) batch size; read in order, once.
      partitioner: mesh and rules.
      checkpoint_path: a run directory (its latest step, or `step`) or a params_io directory.
      output_dir: where the files go.
      step: which step of a run directory (None: latest).
      target_feature: the output feature whose vocabulary decodes the predictions.
      postprocess: apply the task's postprocessor to the decoded text.
      max_examples: stop after this many examples per task (None: all).

    Returns:
      The files written (on process 0; the same list elsewhere, unwritten).
    """
    if dataset_cfg.module:
        importlib.import_module(dataset_cfg.module)
    model = param_sources.adopt_checkpoint_settings(model, checkpoint_path)  # e.g. a released reader's pair layout
    converter = data_lib.feature_converter_for(model, pack=False)
    lengths = dict(dataset_cfg.task_feature_lengths)
    tasks = seqio.get_subtasks(seqio.get_mixture_or_task(dataset_cfg.mixture_or_task_name))
    predictor = Predictor(model, partitioner, dataset_cfg.batch_size)
    out_dir = pathlib.Path(output_dir)
    params = None
    written = []
    for task in tasks:
        raw = task.get_dataset(sequence_length=lengths, split=dataset_cfg.split, shuffle=False, num_epochs=1,
                               use_cached=dataset_cfg.use_cached)
        if max_examples is not None:
            raw = raw.take(max_examples)
        model_ds = converter(raw, lengths)
        examples = list(model_ds.as_numpy_iterator())
        if not examples:
            logging.warning("Task %s has no %s examples; skipped.", task.name, dataset_cfg.split)
            continue
        if params is None:
            shapes = {name: (dataset_cfg.batch_size,) + np.shape(value) for name, value in examples[0].items()}
            abstract, _ = train_state.build_param_layout(model, partitioner, shapes)
            params, source = param_sources.load_params_for_inference(checkpoint_path, abstract, step)
            logging.info("Decoding with parameters from %s.", source.description)
        predictions = predictor.predict(params, examples)
        vocabulary = task.output_features[target_feature].vocabulary
        path = out_dir / f"{task.name}-{dataset_cfg.split}.jsonl"
        written.append(path)
        if jax.process_index() != 0:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for index, (example, tokens) in enumerate(zip(raw.as_numpy_iterator(), predictions)):
                text = vocabulary.decode([int(t) for t in tokens])
                if postprocess:
                    text = task.postprocess_fn(text, example=example, is_target=False)
                record = {"index": index, "prediction": _jsonable(text)}
                record.update({name[:-len(PRETOKENIZED_SUFFIX)]: _jsonable(value) for name, value in example.items()
                               if name.endswith(PRETOKENIZED_SUFFIX)})
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        logging.info("Wrote %d predictions to %s.", len(predictions), path)
    return written
