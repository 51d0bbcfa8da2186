"""Refresh rounds on disk, and the training data source that reads one.

Layout under the run's directory:

    MODEL_DIR/refresh/step_00001000/                 one round: the FiD files training reads from step 1000 on
        fid-00000-of-00004.tfrecord ...              (tasks/fid_files.py; record i = stream position i of the
        fid_manifest.json                            block, so row r of step 1000 + j is record j * B + r)
        index/                                       the corpus index of the round (scratch; removed once the
                                                     round is complete unless kept)

A round is complete exactly when its `fid_manifest.json` exists and checks out (fid_files writes it last, after
renaming every shard into place): a round killed half-way is never read, and the refresh redoes it. The manifest's
metadata records the step, the block, the retriever fingerprint and the settings, so a restarted run can tell
whether a complete round is the one it would write.
"""

import logging
import pathlib
import re
import shutil
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

from class_jax.runtime.errors import UserError
from class_jax.tasks import fid_files
from class_jax.tasks import fid_tasks
from class_jax.trainer.checkpointer import CHECKPOINT_SUBDIR
from class_jax.runtime.partitioning import HostBatchShard

REFRESH_SUBDIR = "refresh"
INDEX_SUBDIR = "index"
# FiDFileDataSource interleaves up to 16 shard files round-robin; with at most that many shards its unshuffled
# output is exactly the written record order, which the step -> rows mapping relies on.
MAX_ROUND_SHARDS = 16
_ROUND_NAME = re.compile(r"^step_(\d{8,})$")


def refresh_dir(model_dir: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(model_dir) / REFRESH_SUBDIR


def round_dir(model_dir: pathlib.Path, step: int) -> pathlib.Path:
    """The directory of the round made at `step`."""
    return refresh_dir(model_dir) / f"step_{step:08d}"


def read_complete_round(path: pathlib.Path) -> Optional[dict[str, Any]]:
    """The manifest of a complete round, or None when the round is missing or half-written."""
    if not (path / fid_files.MANIFEST_NAME).is_file():
        return None
    try:
        return fid_files.read_manifest(str(path))
    except UserError as e:  # a shard truncated after the manifest was written: not usable, redo it
        logging.warning("Refresh round %s is unreadable (%s); treating it as incomplete.", path, e)
        return None


def round_steps(model_dir: pathlib.Path) -> list[int]:
    """Steps of every round directory (complete or not), ascending."""
    root = refresh_dir(model_dir)
    if not root.is_dir():
        return []
    steps = [int(match.group(1)) for match in map(_ROUND_NAME.match, (p.name for p in root.iterdir())) if match]
    return sorted(steps)


def latest_complete_round(model_dir: pathlib.Path, at_most: int) -> Optional[tuple[int, dict[str, Any]]]:
    """(step, manifest) of the newest complete round made at a step <= `at_most`, if any."""
    for step in reversed(round_steps(model_dir)):
        if step <= at_most:
            manifest = read_complete_round(round_dir(model_dir, step))
            if manifest is not None:
                return step, manifest
    return None


def checkpoint_steps(model_dir: pathlib.Path) -> list[int]:
    """Steps of the run's listed training checkpoints (the points a restart may resume from)."""
    root = pathlib.Path(model_dir) / CHECKPOINT_SUBDIR
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())


def rounds_to_keep(steps: Sequence[int], keep_last: int, resume_points: Iterable[int]) -> set[int]:
    """Which rounds pruning keeps: the newest `keep_last`, and for every resume point the round in force there.

    Args:
      steps: steps of the existing complete rounds.
      keep_last: newest rounds kept.
      resume_points: steps a restart may resume at (the retained checkpoints); the round in force at step c is
        the newest round made at a step <= c.

    Returns:
      The steps to keep.
    """
    ordered = sorted(steps)
    keep = set(ordered[-keep_last:]) if keep_last > 0 else set()
    for point in resume_points:
        in_force = [s for s in ordered if s <= point]
        if in_force:
            keep.add(in_force[-1])
    return keep


def prune_rounds(model_dir: pathlib.Path, keep_last: int, current_step: int) -> list[int]:
    """Deletes old rounds no restart can need; half-written rounds older than `current_step` go too.

    Args:
      model_dir: the run's directory.
      keep_last: newest complete rounds to keep (>= 1: the round in force is the newest).
      current_step: the step of the round just completed.

    Returns:
      The steps whose rounds were deleted.
    """
    steps = round_steps(model_dir)
    complete = [s for s in steps if read_complete_round(round_dir(model_dir, s)) is not None]
    keep = rounds_to_keep(complete, keep_last, checkpoint_steps(model_dir))
    removed = []
    for step in steps:
        if step in keep or step >= current_step:
            continue
        shutil.rmtree(round_dir(model_dir, step), ignore_errors=True)
        removed.append(step)
    if removed:
        logging.info("Refresh: removed old rounds %s.", removed)
    return removed


class RoundDataSource:
    """The training batches of one refresh round, in record order (trainer DataSource).

    Batch j is records [j * B, (j + 1) * B) of the round, converted by the FiD task of the round's kind and the
    model's feature converter; every host reads the whole batch and keeps its own rows, so which rows a host feeds
    never depends on how files are split over hosts.
    """

    def __init__(self, fid_dir: pathlib.Path, *, name: str, kind: str, global_batch_size: int,
                 task_feature_lengths: Mapping[str, Any], feature_converter: Any, vocab_path: Optional[str] = None,
                 vocabulary: Any = None):
        """Builds the source.

        Args:
          fid_dir: the round directory.
          name: SeqIO task name for the round (registered; the source keeps its own Task object, so a later
            registration under the same name does not change what it reads).
          kind: FiD task kind, a stage name ("mlqa_pt" or "finetune").
          global_batch_size: rows per step over all hosts.
          task_feature_lengths: the training task feature lengths.
          feature_converter: the model's feature converter.
          vocab_path / vocabulary: the task vocabulary (see tasks/fid_tasks.py).
        """
        self.fid_dir = pathlib.Path(fid_dir)
        self.global_batch_size = global_batch_size
        self.task_feature_lengths = dict(task_feature_lengths)
        self.feature_converter = feature_converter
        self.task = fid_tasks.register_fid_task(name, str(self.fid_dir), kind, vocab_path=vocab_path,
                                                vocabulary=vocabulary, splits=("train",))

    def dataset(self, shard: HostBatchShard, skip_batches: int = 0) -> Any:
        """This host's rows of batches `skip_batches`, `skip_batches + 1`, ... as a tf.data.Dataset."""
        ds = self.task.get_dataset(sequence_length=self.task_feature_lengths, split="train", use_cached=False,
                                   shuffle=False, num_epochs=1)
        ds = self.feature_converter(ds, self.task_feature_lengths)
        ds = ds.batch(self.global_batch_size, drop_remainder=True)
        if skip_batches:
            ds = ds.skip(skip_batches)
        start = shard.index * shard.local_batch_size
        stop = start + shard.local_batch_size
        if (start, stop) != (0, self.global_batch_size):
            ds = ds.map(lambda batch: {name: value[start:stop] for name, value in batch.items()})
        return ds.prefetch(2)

    def make_iterator(self, shard: HostBatchShard, skip_batches: int) -> Iterator[dict[str, np.ndarray]]:
        return self.dataset(shard, skip_batches).as_numpy_iterator()
