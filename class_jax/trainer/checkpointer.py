"""Training checkpoints (Orbax CheckpointManager) and the start-up restore precedence.

Layout of `<model_dir>/checkpoints/`:

    <step>/params/       Orbax PyTree (StandardSave) of the parameters, sharded as in training
    <step>/opt_state/    Orbax PyTree of the optimizer state
    <step>/train_meta/   JSON: {"step": s, "data": {"source_start_step": ..., "batches_consumed": ...}}
    <step>/_CHECKPOINT_METADATA

Orbax writes each step into a temporary directory and renames it when every item and process is done, so a
crash mid-save never leaves a directory that lists as a step (tmp leftovers are removed at start-up). A step that
lists but cannot be read (truncated files on a broken disk or copy) is skipped with a warning, moved aside as
`<step>.unreadable-<time>` so the run can save that step again, and the previous step is used.

Restore precedence at start-up (`restore_or_initialize` in train.py): the run's own latest readable step ->
`initial_checkpoint` (params only, via `load_initial_params`) -> fresh initialisation.
"""

import dataclasses
import json
import logging
import pathlib
import time
from typing import Any, Optional

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from class_jax.runtime import partitioning
from class_jax.trainer.data import DataPosition
from class_jax.trainer.train_state import StateLayout, TrainState

PyTree = Any

CHECKPOINT_SUBDIR = "checkpoints"
PARAMS_ITEM = "params"
OPT_STATE_ITEM = "opt_state"
META_ITEM = "train_meta"


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """When to save and what to keep.

    Attributes:
      save_every_steps: save when the step is a multiple of this (and always at the end and on preemption).
      keep: newest checkpoints to keep (None: all).
      keep_period: also keep every checkpoint whose step is a multiple of this forever (None: no).
      async_save: write in a background thread while training continues.
    """

    save_every_steps: int = 1000
    keep: Optional[int] = 3
    keep_period: Optional[int] = None
    async_save: bool = True


@dataclasses.dataclass(frozen=True)
class RestoredState:
    """A train state read back from a checkpoint, with the data position saved alongside it."""

    state: TrainState
    data_position: DataPosition
    step: int


class TrainCheckpointer:
    """Saves and restores train states under `<model_dir>/checkpoints`."""

    def __init__(self, model_dir: str | pathlib.Path, config: CheckpointConfig = CheckpointConfig(),
                 read_only: bool = False):
        """Opens (and creates) the checkpoint directory.

        Args:
          model_dir: the run's directory.
          config: save policy.
          read_only: open for restoring only (evaluation, export).
        """
        self.config = config
        self.directory = pathlib.Path(model_dir).absolute() / CHECKPOINT_SUBDIR
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=config.save_every_steps, max_to_keep=config.keep, keep_period=config.keep_period,
            enable_async_checkpointing=config.async_save, cleanup_tmp_directories=not read_only,
            create=not read_only, read_only=read_only)
        # Handlers named up front let metadata reads (item_metadata) work before any save or restore.
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
            PARAMS_ITEM: ocp.StandardCheckpointHandler(),
            OPT_STATE_ITEM: ocp.StandardCheckpointHandler(),
            META_ITEM: ocp.JsonCheckpointHandler(),
        })

    def all_steps(self) -> list[int]:
        """Finalised steps on disk, oldest first."""
        return sorted(self.manager.all_steps())

    def latest_step(self) -> Optional[int]:
        """The newest finalised step, or None."""
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_position: DataPosition, force: bool = False) -> bool:
        """Saves the state if the policy says so (or `force`); asynchronous unless configured otherwise.

        Must be called by every process, every step: the policy decision is made here, on the host's step count
        (`state.step` is not read, which would wait for the step to finish and stall the dispatch pipeline).

        Args:
          step: the state's step.
          state: the train state.
          data_position: where the training data stands.
          force: save even off the save period.

        Returns:
          Whether a save was started.
        """
        if not (force or self.manager.should_save(step)) or step in self.manager.all_steps():
            return False
        meta = {"step": step, "data": data_position.to_json()}
        return self.manager.save(step, force=force, args=ocp.args.Composite(**{
            PARAMS_ITEM: ocp.args.StandardSave(state.params),
            OPT_STATE_ITEM: ocp.args.StandardSave(state.opt_state),
            META_ITEM: ocp.args.JsonSave(meta),
        }))

    def wait(self) -> None:
        """Blocks until background saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for background saves, then releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()

    def restore(self, step: int, layout: StateLayout) -> RestoredState:
        """Reads one step into the layout's shardings (raises whatever Orbax raises on unreadable data)."""
        restored = self.manager.restore(step, args=ocp.args.Composite(**{
            PARAMS_ITEM: ocp.args.StandardRestore(layout.abstract_state.params),
            OPT_STATE_ITEM: ocp.args.StandardRestore(layout.abstract_state.opt_state),
            META_ITEM: ocp.args.JsonRestore(),
        }))
        meta = restored[META_ITEM]
        if int(meta["step"]) != step:
            raise ValueError(f"checkpoint {self.directory / str(step)} records step {meta['step']}")
        step_array = partitioning.global_array_from_host(np.asarray(step, np.int32), layout.shardings.step)
        state = TrainState(step=step_array, params=restored[PARAMS_ITEM], opt_state=restored[OPT_STATE_ITEM])
        return RestoredState(state=state, data_position=DataPosition.from_json(meta["data"]), step=step)

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON record of one step: {"step": ..., "data": {...}}."""
        return dict(self.manager.restore(step, args=ocp.args.Composite(**{META_ITEM: ocp.args.JsonRestore()}))[
            META_ITEM])

    def restore_params(self, step: int, abstract_params: PyTree) -> PyTree:
        """Reads only the parameters of one step (evaluation, inference, export)."""
        restored = self.manager.restore(step, args=ocp.args.Composite(**{
            PARAMS_ITEM: ocp.args.StandardRestore(abstract_params)}))
        return restored[PARAMS_ITEM]

    def restore_latest(self, layout: StateLayout) -> Optional[RestoredState]:
        """The newest readable step; unreadable newer ones are warned about and moved aside.

        Returns:
          The restored state, or None when no step is readable.
        """
        for step in reversed(self.all_steps()):
            try:
                return self.restore(step, layout)
            except Exception as e:  # pylint: disable=broad-except  (Orbax/tensorstore raise many error types)
                logging.warning("Checkpoint step %d in %s is unreadable (%s: %s); falling back to the previous "
                                "step.", step, self.directory, type(e).__name__, str(e).splitlines()[0][:300])
                self._set_aside(step)
        return None

    def _set_aside(self, step: int) -> None:
        """Renames an unreadable step directory so it is neither listed nor blocks saving that step again."""
        if jax.process_index() == 0:
            source = self.directory / str(step)
            if source.exists():
                source.rename(self.directory / f"{step}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"class_jax_set_aside_{step}")
        self.manager.reload()


def find_step_to_restore(checkpointer: TrainCheckpointer, step: Optional[int]) -> int:
    """The requested step, or the latest one.

    Raises:
      FileNotFoundError: no checkpoint (or not that step) under the directory.
    """
    steps = checkpointer.all_steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoint under {checkpointer.directory}")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise FileNotFoundError(f"no step {step} under {checkpointer.directory} (have {steps})")
    return step


def write_json_report(path: pathlib.Path, report: dict[str, Any]) -> None:
    """Writes a JSON report from process 0 only."""
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

