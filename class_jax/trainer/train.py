"""The training job (T5X's `train`), configured in gin and run by `class-jax train`.

    from __gin__ import dynamic_registration
    import class_jax.trainer.train as train_script
    train_script.train:
      model = %MODEL
      train_dataset_cfg = @train/data.DatasetConfig()
      partitioner = @partitioning.Partitioner()
      ...

One loop iteration at step s: run the hooks due at s (they may switch the data) -> train on batch s -> log every
`log_period` steps -> evaluate every `eval_period` steps -> checkpoint per the policy -> stop here (after saving)
if SIGTERM/SIGINT arrived. A run restarted with the same command resumes from its latest checkpoint and repeats
the uninterrupted run exactly (deterministic data position, per-step dropout keys); records of metrics.jsonl past
the resumed step (logged before the interruption, logged again now) are dropped first.

The signal handlers are installed before any start-up work: SIGTERM/SIGINT during start-up (building the data,
restoring, compiling) stops the job there, with a warning and `TrainResult.preempted` (exit code 0 from the CLI),
since there is nothing new to save.
"""

import dataclasses
import functools
import logging
import pathlib
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from class_jax.models.base import BaseModel
from class_jax.trainer import checkpointer as checkpointer_lib
from class_jax.trainer import data as data_lib
from class_jax.runtime import gin_utils
from class_jax.trainer import hooks as hooks_lib
from class_jax.trainer import memory_estimate
from class_jax.trainer import metrics as metrics_lib
from class_jax.runtime import partitioning
from class_jax.trainer import param_sources
from class_jax.trainer import train_state as train_state_lib
from class_jax.trainer import teacher_checkpoint
from class_jax.trainer import train_checks
from class_jax.trainer import train_step as train_step_lib
from class_jax.trainer.optimizers import Optimizer
from class_jax.runtime.partitioning import Partitioner
from class_jax.runtime.preemption import PreemptionWatcher, StartupInterrupted

PyTree = Any


@dataclasses.dataclass
class TrainResult:
    """How a training run ended.

    Attributes:
      state: the final train state (sharded); None when stopped during start-up.
      step: the step reached.
      preempted: stopped early by SIGTERM / SIGINT (after saving a checkpoint at `step`, or during start-up).
      last_metrics: the last logged training metrics.
      eval_results: the last evaluation results (task -> metric -> value).
    """

    state: Optional[train_state_lib.TrainState]
    step: int
    preempted: bool
    last_metrics: dict[str, float]
    eval_results: dict[str, Any]


def _make_rng(seed: int, purpose: int, partitioner: Partitioner) -> jax.Array:
    """A raw uint32 PRNG key derived from the seed, replicated over the mesh (identical on every process)."""
    key = np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(seed), purpose)))
    return partitioning.global_array_from_host(key, partitioner.replicated)


def _restore_or_initialize(model: BaseModel, optimizer: Optimizer, partitioner: Partitioner,
                           layout: train_state_lib.StateLayout, checkpointer: checkpointer_lib.TrainCheckpointer,
                           seed: int, initial_checkpoint: Optional[str],
                           name_mapping: param_sources.NameMapping, model_dir: pathlib.Path,
                           input_types: dict[str, Any]) -> tuple[train_state_lib.TrainState, data_lib.DataPosition]:
    """The run's own latest usable checkpoint -> the initial checkpoint (params) -> a fresh initialisation.

    Raises:
      UserError: the run's checkpoints do not fit the model, or none is usable (see checkpointer.restore_latest).
    """
    restored = checkpointer.restore_latest(layout)
    if restored is not None:
        logging.info("Resuming from %s step %d.", checkpointer.directory, restored.step)
        return restored.state, restored.data_position
    init_rng = jax.random.fold_in(jax.random.key(seed), 0)
    state = train_state_lib.init_train_state(model, optimizer.transform, partitioner, layout, init_rng, input_types)
    if initial_checkpoint:
        params, report = param_sources.load_initial_params(
            initial_checkpoint, state.params, layout.shardings.params, name_mapping,
            model_config=getattr(model, "config", None))
        report.log()
        checkpointer_lib.write_json_report(model_dir / "initial_checkpoint_report.json", report.to_json())
        state = train_state_lib.reinit_opt_state(optimizer.transform, partitioner, layout, params)
    else:
        logging.info("Training from scratch (seed %d).", seed)
    return state, data_lib.DataPosition()


def train(*,
          model: BaseModel,
          train_dataset_cfg: data_lib.DatasetConfig | data_lib.DataSource,
          partitioner: Partitioner,
          model_dir: str,
          total_steps: int,
          optimizer: Optimizer,
          checkpoint_cfg: checkpointer_lib.CheckpointConfig = checkpointer_lib.CheckpointConfig(),
          eval_dataset_cfgs: Sequence[data_lib.DatasetConfig] = (),
          eval_period: Optional[int] = None,
          log_period: int = 100,
          random_seed: int = 0,
          initial_checkpoint: Optional[str] = None,
          initial_checkpoint_name_mapping: param_sources.NameMapping = (),
          num_microbatches: int = 1,
          microbatch_weighting: str = "num_tokens",
          hooks: Sequence[hooks_lib.PeriodicHook] = (),
          eval_hooks: Sequence[hooks_lib.PeriodicHook] = (),
          peak_flops_per_device: Optional[float] = None,
          tensorboard: bool = True,
          stop_check_period: int = 10,
          start_fresh: bool = False,
          dry_run: bool = False,
          check_memory: bool = True,
          device_memory_bytes: Optional[int] = None,
          teacher: Optional[teacher_checkpoint.Teacher] = None) -> TrainResult:
    """Trains `model` to `total_steps`, resuming from `model_dir` when it holds checkpoints.

    Args:
      model: the model (BaseModel).
      train_dataset_cfg: a SeqIO DatasetConfig (batch_size is global) or any DataSource.
      partitioner: mesh and logical-axis rules.
      model_dir: the run's directory (checkpoints, metrics.jsonl, TensorBoard, gin configs, eval outputs).
      total_steps: train until the state's step reaches this.
      optimizer: from class_jax.trainer.optimizers (adamw / adafactor).
      checkpoint_cfg: save period and retention.
      eval_dataset_cfgs: SeqIO eval datasets, evaluated with seqio.Evaluator every `eval_period` and at the end.
      eval_period: steps between evaluations (None: only at the end, when eval datasets are given).
      log_period: steps between metric records.
      random_seed: seeds parameter initialisation and dropout.
      initial_checkpoint: params_io directory or another run's directory to warm-start from when this run has no
        checkpoint of its own.
      initial_checkpoint_name_mapping: (target regex, source template or None) rules for the warm start.
      num_microbatches: gradient-accumulation steps per batch.
      microbatch_weighting: "num_tokens" or "uniform" (see train_step).
      hooks: periodic hooks (retrieval refresh, ...).
      eval_hooks: periodic hooks run after `hooks` at the same step, e.g. the dev evaluation and best checkpoint of
        gin/runs/dev_selection.gin (a separate argument so that a gin file can add them without replacing `hooks`).
      peak_flops_per_device: for MFU; None looks it up or measures it (see metrics).
      tensorboard: also write TensorBoard events.
      stop_check_period: with several processes, steps between the (collective) checks for SIGTERM / SIGINT;
        a single process checks after every step.
      start_fresh: move the model_dir's checkpoints and metrics.jsonl aside (`*.replaced-<time>`) and train from
        the start. Without it a model_dir whose checkpoints do not fit the model, or are all damaged, is an error.
        For one invocation only: a restart with it set starts over again.
      dry_run: print the per-device memory estimate (memory_estimate.py) and return without reading data,
        allocating or compiling.
      check_memory: refuse (UserError) a configuration whose memory estimate exceeds the device's memory; False
        only warns.
      device_memory_bytes: the device memory the estimate is checked against (None: the device's `bytes_limit`,
        the host RAM on CPU); e.g. 80e9 to size an H100 run from a dry run on a CPU host.
      teacher: stage 1's frozen neural teacher (teacher_checkpoint.Teacher), scoring every global batch on the fly;
        None for stages without one (and stage 1 with BM25 scores from the FiD files).

    Returns:
      How the run ended.

    Raises:
      config_checks.InvalidValue: a number or path of the wrong type or range (a UserError naming the gin
        parameter and its allowed range; see train_checks), before anything starts.
      ValueError: inconsistent configuration or a data source that runs dry.
      UserError: the model_dir's checkpoints do not fit the configured model, or none of them is usable.
    """
    train_checks.check_train_arguments(
        train, model_dir=model_dir, total_steps=total_steps, checkpoint_cfg=checkpoint_cfg, eval_period=eval_period,
        log_period=log_period, random_seed=random_seed, num_microbatches=num_microbatches,
        microbatch_weighting=microbatch_weighting, peak_flops_per_device=peak_flops_per_device,
        stop_check_period=stop_check_period, train_dataset_cfg=train_dataset_cfg, partitioner=partitioner)
    # Installed before any start-up work, so that a SIGTERM while the memory is estimated, the data built, the
    # checkpoint restored or the step compiled stops the job cleanly instead of killing it with Python's default
    # handler.
    with PreemptionWatcher(stop_check_period) as watcher:
        return _train(watcher, memory_check=functools.partial(
                          memory_estimate.check_at_start, model, optimizer, partitioner, train_dataset_cfg,
                          num_microbatches, device_memory_bytes, refuse=check_memory and not dry_run,
                          required=dry_run),
                      dry_run=dry_run, model=model, train_dataset_cfg=train_dataset_cfg, partitioner=partitioner,
                      model_dir=model_dir, total_steps=total_steps, optimizer=optimizer, checkpoint_cfg=checkpoint_cfg,
                      eval_dataset_cfgs=eval_dataset_cfgs, eval_period=eval_period, log_period=log_period,
                      random_seed=random_seed, initial_checkpoint=initial_checkpoint,
                      initial_checkpoint_name_mapping=initial_checkpoint_name_mapping,
                      num_microbatches=num_microbatches, microbatch_weighting=microbatch_weighting,
                      hooks=[*(hooks or ()), *(eval_hooks or ())],
                      peak_flops_per_device=peak_flops_per_device, tensorboard=tensorboard, start_fresh=start_fresh,
                      teacher=teacher)


def _train(watcher: PreemptionWatcher, *, memory_check: Callable[[], Any], dry_run: bool, model: BaseModel,
           train_dataset_cfg: data_lib.DatasetConfig | data_lib.DataSource, partitioner: Partitioner, model_dir: str,
           total_steps: int, optimizer: Optimizer, checkpoint_cfg: checkpointer_lib.CheckpointConfig,
           eval_dataset_cfgs: Sequence[data_lib.DatasetConfig], eval_period: Optional[int], log_period: int,
           random_seed: int, initial_checkpoint: Optional[str],
           initial_checkpoint_name_mapping: param_sources.NameMapping, num_microbatches: int,
           microbatch_weighting: str, hooks: Sequence[hooks_lib.PeriodicHook], peak_flops_per_device: Optional[float],
           tensorboard: bool, start_fresh: bool, teacher: Optional[teacher_checkpoint.Teacher]) -> TrainResult:
    """`train` under an installed watcher; until the loop starts, a signal interrupts at once (StartupInterrupted).

    `memory_check` prints the per-device memory estimate (and refuses what cannot fit); a dry run stops after it.
    """
    model_dir_path = pathlib.Path(model_dir).absolute()
    step = 0
    checkpointer: Optional[checkpointer_lib.TrainCheckpointer] = None
    writer: Optional[metrics_lib.MetricsWriter] = None
    try:
        watcher.interrupt_on_signal(True)
        memory_check()
        if dry_run:
            return TrainResult(state=None, step=0, preempted=False, last_metrics={}, eval_results={})
        model_dir_path.mkdir(parents=True, exist_ok=True)
        hook_list = hooks_lib.as_hooks(hooks)
        source = data_lib.as_data_source(train_dataset_cfg, model)
        global_batch_size = source.global_batch_size
        shard = partitioner.host_batch_shard(global_batch_size)
        batch_spec = data_lib.peek_batch_spec(source, shard)
        input_shapes = {name: shape for name, (shape, _) in batch_spec.items()}
        input_types = {name: dtype for name, (_, dtype) in batch_spec.items()}
        layout = train_state_lib.build_state_layout(model, optimizer.transform, partitioner, input_shapes,
                                                    input_types)

        if start_fresh:
            checkpointer_lib.move_run_aside(model_dir_path)
        checkpointer = checkpointer_lib.TrainCheckpointer(model_dir_path, checkpoint_cfg)
        state, position = _restore_or_initialize(model, optimizer, partitioner, layout, checkpointer, random_seed,
                                                 initial_checkpoint, initial_checkpoint_name_mapping, model_dir_path,
                                                 input_types)
        step = int(jax.device_get(state.step))
        # Only now: a configuration its checkpoints refused must not replace the run's config.gin.
        gin_utils.write_config(model_dir_path / "config.gin")
        if step >= total_steps:
            logging.info("The run in %s is already at step %d (total_steps %d); nothing to train.", model_dir_path,
                         step, total_steps)
            return TrainResult(state=state, step=step, preempted=False, last_metrics={}, eval_results={})

        dropout_rng = _make_rng(random_seed, 1, partitioner)
        frozen: tuple[PyTree, ...] = ()  # the teacher's parameters: an argument of the step, not part of its state
        teacher_model = None
        if teacher is not None:
            loaded = teacher_checkpoint.load_teacher(teacher, partitioner, model_dir_path, resuming=step > 0)
            teacher_model, frozen = loaded.model, (loaded.params,)
        step_fn = train_step_lib.make_train_step(model, optimizer, num_microbatches, microbatch_weighting,
                                                 teacher=teacher_model)
        compile_start = time.perf_counter()
        compiled_step = train_step_lib.compile_train_step(step_fn, partitioner, layout, batch_spec, dropout_rng,
                                                          *frozen)
        logging.info("Compiled the train step in %.1f s.", time.perf_counter() - compile_start)
        flops_per_step = model.flops_per_step(input_shapes) or train_step_lib.compiled_flops(compiled_step)
        peak_flops, peak_source = metrics_lib.peak_flops_per_device(peak_flops_per_device)
        logging.info("MFU basis: %.4g model FLOPs/step, peak %.4g FLOP/s per device (%s), %d devices.",
                     flops_per_step, peak_flops, peak_source, jax.device_count())
        tokens_per_step = metrics_lib.count_batch_tokens(batch_spec)

        evaluators = _make_evaluators(model, eval_dataset_cfgs, partitioner, model_dir_path)
        # Records past `step` were logged by the interrupted run after its last checkpoint; they are logged again.
        writer = metrics_lib.MetricsWriter(model_dir_path, tensorboard=tensorboard, resume_step=step)
        accumulator = metrics_lib.MetricsAccumulator()
        feed = data_lib.DataFeed(source, shard, position)
        result = TrainResult(state=state, step=step, preempted=False, last_metrics={}, eval_results={})

        def run_hooks(resuming: bool) -> None:
            context = hooks_lib.HookContext(step=step, params=state.params, model=model, partitioner=partitioner,
                                            model_dir=model_dir_path, resuming=resuming)
            switch = hooks_lib.run_hooks(hook_list, context)
            if switch is not None:
                feed.switch(switch.source, switch.start_step, step)
                logging.info("Step %d: training data switched (source from step %d).", step, switch.start_step)

        start_step = step
        if hook_list:
            # A resumed run re-establishes the hooks' state (and data) as it was at the checkpoint's step.
            run_hooks(resuming=start_step > 0)
            if start_step > 0 and feed.position.source_start_step != position.source_start_step:
                logging.warning("The hooks re-established data that started at step %d; the checkpoint recorded %d.",
                                feed.position.source_start_step, position.source_start_step)
        # From here a signal only sets the flag: the loop saves at the next step boundary and stops.
        watcher.interrupt_on_signal(False)
        timer = metrics_lib.PeriodTimer()
        while step < total_steps:
            if hook_list and step > start_step:
                outside = time.perf_counter()
                run_hooks(resuming=False)
                timer.exclude(time.perf_counter() - outside)
            batch = partitioner.shard_batch(feed.next_batch(), global_batch_size)
            state, step_metrics = compiled_step(state, batch, dropout_rng, *frozen)
            step += 1
            accumulator.add(step_metrics)
            if step == start_step + 1:
                gin_utils.write_operative_config(model_dir_path / "operative_config.gin")

            if step % log_period == 0 or step == total_steps:
                steps_in_period = len(accumulator)
                summary = accumulator.summarize()
                summary.update(metrics_lib.throughput_metrics(
                    steps_in_period, timer.lap(), flops_per_step, tokens_per_step, global_batch_size,
                    peak_flops, jax.device_count()))
                writer.write(step, summary)
                result.last_metrics = summary

            outside = time.perf_counter()
            if evaluators and (eval_period and step % eval_period == 0 or step == total_steps):
                result.eval_results = _run_evaluators(evaluators, state.params, step, writer)
            checkpointer.save(step, state, feed.position, force=step == total_steps)
            if step < total_steps and watcher.should_stop(step):
                checkpointer.save(step, state, feed.position, force=True)
                checkpointer.wait()
                logging.warning("Stopped at step %d after %s; checkpoint saved.", step,
                                watcher.signal_name or "a stop request")
                result.preempted = True
                break
            timer.exclude(time.perf_counter() - outside)
        checkpointer.wait()
        if hook_list and not result.preempted and step == total_steps:
            # The loop ends before the hooks of the last step; a dev evaluation still wants the final parameters.
            hooks_lib.run_final_hooks(hook_list, hooks_lib.HookContext(
                step=step, params=state.params, model=model, partitioner=partitioner, model_dir=model_dir_path))
        result.state, result.step = state, step
        return result
    except StartupInterrupted:
        logging.warning("Stopped during start-up after %s, before training step %d; nothing new to save. Rerun the "
                        "same command to resume.", watcher.signal_name or "a stop request", step)
        return TrainResult(state=None, step=step, preempted=True, last_metrics={}, eval_results={})
    finally:
        watcher.interrupt_on_signal(False)
        if checkpointer is not None:
            checkpointer.close()
        if writer is not None:
            writer.close()


def _make_evaluators(model: BaseModel, configs: Sequence[data_lib.DatasetConfig], partitioner: Partitioner,
                     model_dir: pathlib.Path) -> list[Any]:
    if not configs:
        return []
    from class_jax.trainer import evaluate  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
    return [evaluate.InferenceEvaluator(model, config, partitioner, log_dir=model_dir / "eval") for config in configs]


def _run_evaluators(evaluators: Sequence[Any], params: PyTree, step: int,
                    writer: metrics_lib.MetricsWriter) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for evaluator in evaluators:
        results.update(evaluator.evaluate(params, step))
    writer.write(step, metrics_lib.flatten_eval_metrics(results), prefix="eval/")
    return results
