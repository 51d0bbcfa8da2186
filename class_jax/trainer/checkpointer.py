"""Training checkpoints (Orbax CheckpointManager), their integrity manifests, and the start-up restore.

Layout of `<model_dir>/checkpoints/`:

    <step>/params/         Orbax PyTree (StandardSave) of the parameters, sharded as in training
    <step>/opt_state/      Orbax PyTree of the optimizer state
    <step>/train_meta/     JSON: {"step": s, "data": {"source_start_step": ..., "batches_consumed": ...}}
    <step>/integrity.json  size and CRC-32 of every file under the three items (see `write_integrity_manifest`)
    <step>/_CHECKPOINT_METADATA

Orbax writes each step into a temporary directory and renames it when every item and process is done, so a
crash mid-save never leaves a directory that lists as a step (tmp leftovers are removed at start-up). The manifest
is computed from the finished files by process 0, in a background thread once Orbax has finalised the step (the
next save, `wait()` or `close()` notices that), and written atomically; a step killed between the two has no
manifest and is restored with a warning, as are steps of runs older than manifests.

Restoring at start-up (`restore_latest`), newest step first:
  1. the files are checked against the manifest and `train_meta` against the step (data position consistent with
     it); a step that fails, or cannot be read at all, is moved aside as `<step>.unreadable-<time>` with a warning
     naming the file, and the previous step is tried;
  2. the shapes, dtypes and tree structure recorded in the step's metadata are compared with the configured
     model's before any array is read: a mismatch is a UserError (a changed config, not a damaged file), and
     nothing is moved;
  3. when steps existed and none was usable, restoring raises a UserError instead of letting training start over.

Restore precedence at start-up (`_restore_or_initialize` in train.py): the run's own latest usable step ->
`initial_checkpoint` (params only, via `load_initial_params`) -> fresh initialisation (only in a run directory
without checkpoints, or with `train.start_fresh`, which first moves the old ones aside, see `move_run_aside`).
"""

import concurrent.futures
import dataclasses
import json
import logging
import os
import pathlib
import time
import zlib
from typing import Any, Optional

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from class_jax.runtime import partitioning
from class_jax.runtime import tree_paths
from class_jax.runtime.errors import UserError
from class_jax.trainer.data import DataPosition
from class_jax.trainer.train_state import StateLayout, TrainState

PyTree = Any

CHECKPOINT_SUBDIR = "checkpoints"
# The best checkpoint by a dev metric (trainer/dev_selection.py): outside CHECKPOINT_SUBDIR, so `keep` never
# deletes it.
BEST_SUBDIR = "best"
PARAMS_ITEM = "params"
OPT_STATE_ITEM = "opt_state"
META_ITEM = "train_meta"
INTEGRITY_FILE = "integrity.json"
SET_ASIDE_MARK = ".unreadable-"
_CHECKSUM_CHUNK = 16 << 20
_MISMATCHES_NAMED = 5


class CorruptCheckpointError(Exception):
    """A checkpoint step whose files fail their integrity check, or cannot be read, or whose train_meta contradicts
    its step; the message names the file."""


def file_crc32(path: pathlib.Path) -> int:
    """CRC-32 (zlib) of a file's bytes, read in large chunks (zlib releases the GIL, so a thread can run it)."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHECKSUM_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _item_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    """The files of a step's items (params, opt_state, train_meta), sorted: what the manifest covers."""
    files = []
    for item in (PARAMS_ITEM, OPT_STATE_ITEM, META_ITEM):
        files.extend(path for path in (step_dir / item).rglob("*") if path.is_file())
    return sorted(files)


def write_integrity_manifest(step_dir: pathlib.Path) -> dict[str, Any]:
    """Writes `<step_dir>/integrity.json` atomically and returns it.

    Format: {"version": 1, "algorithm": "crc32", "files": {"params/d/ab12...": {"size": n, "crc32": "89abcdef"}}},
    one entry per file under params/, opt_state/ and train_meta/ (Orbax's own `_CHECKPOINT_METADATA` is left out:
    it is bookkeeping Orbax may rewrite, not training state).
    """
    files = {}
    for path in _item_files(step_dir):
        files[path.relative_to(step_dir).as_posix()] = {"size": path.stat().st_size,
                                                        "crc32": f"{file_crc32(path):08x}"}
    manifest = {"version": 1, "algorithm": "crc32", "files": files}
    temporary = step_dir / f".{INTEGRITY_FILE}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, step_dir / INTEGRITY_FILE)
    return manifest


def verify_integrity_manifest(step_dir: pathlib.Path) -> bool:
    """Checks a step's files against its manifest.

    Returns:
      True when every listed file is there with its size and checksum; False when the step has no manifest.

    Raises:
      CorruptCheckpointError: a file is missing, has another size or checksum, or the manifest is unreadable.
    """
    manifest_path = step_dir / INTEGRITY_FILE
    if not manifest_path.is_file():
        return False
    try:
        files = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptCheckpointError(f"{manifest_path} is unreadable ({type(e).__name__}: {e})") from None
    for name, expected in files.items():
        path = step_dir / name
        if not path.is_file():
            raise CorruptCheckpointError(f"{path} is missing")
        size = path.stat().st_size
        if size != expected["size"]:
            raise CorruptCheckpointError(f"{path} has {size} bytes, {expected['size']} when saved")
        crc = f"{file_crc32(path):08x}"
        if crc != expected["crc32"]:
            raise CorruptCheckpointError(f"{path} fails its checksum (crc32 {crc}, {expected['crc32']} when saved)")
    return True


def check_train_meta(step: int, meta: Any, path: pathlib.Path) -> DataPosition:
    """The data position of a step's train_meta, after checking it against the step.

    The feed's invariant (data.DataFeed): the current source started at `source_start_step` and has delivered one
    batch per step since, so `source_start_step + batches_consumed == step`.

    Raises:
      CorruptCheckpointError: the record names another step, lacks fields, or its data position contradicts it.
    """
    try:
        recorded_step = int(meta["step"])
        position = DataPosition.from_json(meta["data"])
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptCheckpointError(f"{path} is not a train_meta record ({type(e).__name__}: {e})") from None
    if recorded_step != step:
        raise CorruptCheckpointError(f"{path} records step {recorded_step} in the directory of step {step}")
    if (position.source_start_step < 0 or position.batches_consumed < 0
            or position.source_start_step + position.batches_consumed != step):
        raise CorruptCheckpointError(
            f"{path}: data position source_start_step {position.source_start_step} + batches_consumed "
            f"{position.batches_consumed} != step {step}")
    return position


def _leaf_signature(leaf: Any) -> Optional[tuple[tuple[int, ...], str]]:
    """(shape, dtype name) of an abstract array or Orbax array metadata; None for other leaves."""
    shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
    if shape is None or dtype is None:
        return None
    return tuple(int(d) for d in shape), np.dtype(dtype).name


def layout_mismatches(item: str, expected: PyTree, stored: PyTree) -> list[str]:
    """How a checkpoint item's stored metadata differs from the configured abstract tree, one line per leaf.

    Paths are compared '/'-joined, so the dicts Orbax records for optimizer NamedTuples match their attributes.
    """
    want = {name: _leaf_signature(leaf) for name, leaf in tree_paths.flatten_with_paths(expected).items()}
    have = {name: _leaf_signature(leaf) for name, leaf in tree_paths.flatten_with_paths(stored).items()}
    problems = []
    for name, signature in want.items():
        if name not in have:
            problems.append(f"{item}/{name} is configured {_describe(signature)} but not in the checkpoint")
        elif signature is not None and have[name] is not None and signature != have[name]:
            problems.append(f"{item}/{name} is configured {_describe(signature)}, the checkpoint has "
                            f"{_describe(have[name])}")
    problems.extend(f"{item}/{name} ({_describe(have[name])}) is in the checkpoint but not in the configured model"
                    for name in have if name not in want)
    return problems


def _describe(signature: Optional[tuple[tuple[int, ...], str]]) -> str:
    return "a non-array leaf" if signature is None else f"{signature[1]}{list(signature[0])}"


def move_run_aside(model_dir: str | pathlib.Path) -> Optional[pathlib.Path]:
    """Renames a run's checkpoints (and metrics.jsonl, best/) to `*.replaced-<time>` so a new run can start there.

    Used by `train(start_fresh=True)`: nothing is deleted. Process 0 renames; the others wait for it.

    Returns:
      The new name of the checkpoint directory, or None when there was nothing to move.
    """
    model_dir = pathlib.Path(model_dir).absolute()
    checkpoints = model_dir / CHECKPOINT_SUBDIR
    suffix = f".replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    moved = None
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        moved = checkpoints.with_name(CHECKPOINT_SUBDIR + suffix)
        if jax.process_index() == 0:
            checkpoints.rename(moved)
            metrics = model_dir / "metrics.jsonl"
            if metrics.exists():
                metrics.rename(model_dir / f"metrics{suffix}.jsonl")
            # The old run's best checkpoint must not compete with the new run's evaluations.
            best = model_dir / BEST_SUBDIR
            if best.exists():
                best.rename(model_dir / f"{BEST_SUBDIR}{suffix}")
            logging.warning("start_fresh: moved the existing checkpoints of %s to %s (and metrics.jsonl alongside).",
                            model_dir, moved)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("class_jax_move_run_aside")
    return moved


def _agree(value: int) -> int:
    """Process 0's value on every process (one verdict on files only process 0 reads)."""
    if jax.process_count() == 1:
        return value
    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int32)))


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
        # Steps saved whose integrity manifest is not written yet, and the thread that writes manifests (process 0).
        self._without_manifest: list[int] = []
        self._manifest_writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="class_jax_manifest")
        self._manifest_jobs: list[concurrent.futures.Future] = []

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
        started = self.manager.save(step, force=force, args=ocp.args.Composite(**{
            PARAMS_ITEM: ocp.args.StandardSave(state.params),
            OPT_STATE_ITEM: ocp.args.StandardSave(state.opt_state),
            META_ITEM: ocp.args.JsonSave(meta),
        }))
        if started:
            self._without_manifest.append(step)
            # Orbax's save returns once earlier saves are finalised (and, when synchronous, this one too).
            self._start_manifests(self._without_manifest if not self.config.async_save else
                                  [s for s in self._without_manifest if s != step])
        return started

    def _start_manifests(self, steps: list[int]) -> None:
        """Queues the manifests of finalised steps on the background writer (process 0 writes; others forget)."""
        for step in list(steps):
            self._without_manifest.remove(step)
            if jax.process_index() == 0:
                self._manifest_jobs.append(self._manifest_writer.submit(self._write_manifest, step))
        self._manifest_jobs = [job for job in self._manifest_jobs if not job.done() or job.exception()]

    def _write_manifest(self, step: int) -> None:
        step_dir = self.directory / str(step)
        try:
            start = time.perf_counter()
            manifest = write_integrity_manifest(step_dir)
            logging.info("Checkpoint step %d: integrity manifest of %d files in %.2f s.", step,
                         len(manifest["files"]), time.perf_counter() - start)
        except FileNotFoundError:  # deleted by the retention policy meanwhile
            logging.info("Checkpoint step %d was removed before its integrity manifest was written.", step)

    def wait(self) -> None:
        """Blocks until background saves and their integrity manifests are on disk."""
        self.manager.wait_until_finished()
        self._start_manifests(self._without_manifest)
        jobs, self._manifest_jobs = self._manifest_jobs, []
        for job in jobs:
            job.result()

    def close(self) -> None:
        """Waits for background saves and manifests, then releases the manager."""
        try:
            self.wait()
        finally:
            self._manifest_writer.shutdown(wait=True)
            self.manager.close()

    def restore(self, step: int, layout: StateLayout) -> RestoredState:
        """Reads one step into the layout's shardings (raises whatever Orbax raises on unreadable data).

        Raises:
          CorruptCheckpointError: the step's train_meta contradicts its step.
        """
        restored = self.manager.restore(step, args=ocp.args.Composite(**{
            PARAMS_ITEM: ocp.args.StandardRestore(layout.abstract_state.params),
            OPT_STATE_ITEM: ocp.args.StandardRestore(layout.abstract_state.opt_state),
            META_ITEM: ocp.args.JsonRestore(),
        }))
        position = check_train_meta(step, restored[META_ITEM], self.directory / str(step) / META_ITEM)
        step_array = partitioning.global_array_from_host(np.asarray(step, np.int32), layout.shardings.step)
        state = TrainState(step=step_array, params=restored[PARAMS_ITEM], opt_state=restored[OPT_STATE_ITEM])
        return RestoredState(state=state, data_position=position, step=step)

    def verify(self, step: int) -> bool:
        """Checks one step's files against its integrity manifest (process 0 reads; every process gets its verdict).

        Returns:
          True when verified, False when the step has no manifest (older runs, or a kill right after the save).

        Raises:
          CorruptCheckpointError: a file fails the check (the message names it).
        """
        verdict, problem = 1, ""
        if jax.process_index() == 0:
            try:
                verdict = int(verify_integrity_manifest(self.directory / str(step)))
            except CorruptCheckpointError as e:
                verdict, problem = -1, str(e)
        verdict = _agree(verdict)
        if verdict < 0:
            raise CorruptCheckpointError(problem or f"step {step} fails its integrity check (see process 0's log)")
        return bool(verdict)

    def check_layout(self, step: int, layout: StateLayout) -> None:
        """Compares a step's recorded shapes, dtypes and tree structure with the layout, reading no array data.

        Raises:
          UserError: the step does not fit the configured model (names the first mismatched parameters).
          CorruptCheckpointError: the step's metadata cannot be read.
        """
        try:
            metadata = self.manager.item_metadata(step)
            stored = {item: metadata[item] for item in (PARAMS_ITEM, OPT_STATE_ITEM)}
        except Exception as e:  # pylint: disable=broad-except  (Orbax/tensorstore raise many error types)
            raise CorruptCheckpointError(f"{self.directory / str(step)}: metadata unreadable ({type(e).__name__}: "
                                         f"{str(e).splitlines()[0][:300] if str(e) else ''})") from None
        problems = []
        for item, expected in ((PARAMS_ITEM, layout.abstract_state.params),
                               (OPT_STATE_ITEM, layout.abstract_state.opt_state)):
            if stored[item] is None:
                raise CorruptCheckpointError(f"{self.directory / str(step) / item}: no metadata")
            problems.extend(layout_mismatches(item, expected, stored[item]))
        if problems:
            more = f" (and {len(problems) - _MISMATCHES_NAMED} more)" if len(problems) > _MISMATCHES_NAMED else ""
            raise UserError(
                f"checkpoint step {step} in {self.directory} does not fit the configured model: "
                f"{'; '.join(problems[:_MISMATCHES_NAMED])}{more}. Restore the configuration the run was trained "
                f"with, or use another model_dir (train.start_fresh = True moves these checkpoints aside)")

    def set_aside_steps(self) -> list[pathlib.Path]:
        """Step directories moved aside as unreadable by earlier restores."""
        if not self.directory.is_dir():
            return []
        return sorted(path for path in self.directory.iterdir() if SET_ASIDE_MARK in path.name)

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
        """The newest usable step (see the module docstring); damaged newer ones are warned about and moved aside.

        Returns:
          The restored state, or None when the directory holds no step and none was set aside before.

        Raises:
          UserError: a step does not fit the configured model (nothing is moved), or no step is usable.
        """
        steps = self.all_steps()
        for step in reversed(steps):
            try:
                verified = self.verify(step)
                self.check_layout(step, layout)
                if not verified:
                    logging.warning("Checkpoint step %d in %s has no %s (saved by an older version, or the run "
                                    "stopped right after saving); restoring it unverified.", step, self.directory,
                                    INTEGRITY_FILE)
                try:
                    return self.restore(step, layout)
                except CorruptCheckpointError:
                    raise
                except Exception as e:  # pylint: disable=broad-except  (Orbax/tensorstore raise many error types)
                    if verified:  # intact files that do not read: a bug or an environment problem, not damage
                        raise
                    message = str(e).splitlines()[0][:300] if str(e) else ""
                    raise CorruptCheckpointError(f"{self.directory / str(step)} is unreadable "
                                                 f"({type(e).__name__}: {message})") from e
            except CorruptCheckpointError as e:
                logging.warning("Checkpoint step %d is damaged or unreadable: %s; moving it aside as "
                                "%d%s<time> and falling back to the previous step.", step, e, step, SET_ASIDE_MARK)
                self._set_aside(step)
        set_aside = self.set_aside_steps()
        if steps or set_aside:
            raise UserError(
                f"no usable checkpoint in {self.directory}: "
                f"{', '.join(path.name for path in set_aside)} failed their checks (see the warnings); refusing to "
                f"train from scratch over them. Set train.start_fresh = True (--gin.START_FRESH=True) to move them "
                f"aside and start afresh, or use another model_dir")
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

