"""Periodic hooks: code that runs inside the training loop every N steps with the current parameters.

CLASS's asynchronous passage update is one: every 1,000 steps it re-encodes the corpus with the current retriever
and switches training to the re-retrieved passages. A hook may therefore return a `DataSwitch`: from the step it
names, training reads a new data source (its batches counted from 0 at that step).

Resumption. Data switches are part of the run's deterministic history, so a run resumed at step s must train on
what the uninterrupted run read at step s. At start-up the loop calls every hook not due at s with
`ctx.resuming = True` (and `ctx.step = s`); a data-switching hook must then return the switch that was in force
at step s (typically by reloading what it wrote to `ctx.model_dir` when it last ran, whose step it records as
`start_step`), or None when its data has not switched yet. The loop then skips the batches already consumed
since `start_step`.
"""

import dataclasses
import pathlib
from typing import Any, Callable, Optional, Protocol, Sequence

from class_jax.models.base import BaseModel
from class_jax.trainer.data import DataSource
from class_jax.runtime.partitioning import Partitioner

PyTree = Any


@dataclasses.dataclass(frozen=True)
class HookContext:
    """What a hook sees.

    Attributes:
      step: the current step (number of optimizer steps taken; the next batch trained on is batch `step`).
      params: the current parameters (sharded global arrays; read, do not donate).
      model: the model.
      partitioner: mesh and rules, to run jitted code over the same devices.
      model_dir: the run's directory, where hooks keep what they must reload on resumption.
      resuming: True for the start-up call of a resumed (or warm-started at step > 0) run.
    """

    step: int
    params: PyTree
    model: BaseModel
    partitioner: Partitioner
    model_dir: pathlib.Path
    resuming: bool = False


@dataclasses.dataclass(frozen=True)
class DataSwitch:
    """Train on `source` from `start_step` on (its first batch is consumed at step `start_step`)."""

    source: DataSource
    start_step: int


class HookFn(Protocol):
    """A hook: called with the loop's context; may return a DataSwitch."""

    def __call__(self, ctx: HookContext) -> Optional[DataSwitch]:
        ...


@dataclasses.dataclass(frozen=True)
class PeriodicHook:
    """Runs `fn` at every step that is a multiple of `every_steps` (step 0 included when `run_at_start`).

    Attributes:
      fn: the hook.
      every_steps: period in steps.
      run_at_start: also run at step 0 of a fresh run (e.g. the first retrieval before training starts).
      name: for logs.
      run_at_end: also run once after the last step of a run that reaches total_steps (the loop ends before the
        hooks of that step would run), e.g. a dev evaluation; a data switch returned there is ignored.
    """

    fn: HookFn
    every_steps: int
    run_at_start: bool = True
    name: str = "hook"
    run_at_end: bool = False

    def __post_init__(self):
        if self.every_steps < 1:
            raise ValueError(f"hook {self.name}: every_steps={self.every_steps} must be >= 1")

    def due(self, step: int) -> bool:
        """Whether the hook runs before training on batch `step`."""
        if step == 0:
            return self.run_at_start
        return step % self.every_steps == 0


def run_hooks(hooks: Sequence[PeriodicHook], ctx: HookContext) -> Optional[DataSwitch]:
    """Runs the hooks at `ctx.step`; returns the last data switch any of them made, if any.

    Normally only hooks due at this step run. On resumption (`ctx.resuming`), hooks due at this step run normally
    (the uninterrupted run ran them here too) and every other hook runs with `resuming=True` to re-establish
    its state.
    """
    switch = None
    for hook in hooks:
        due = hook.due(ctx.step)
        if not (due or ctx.resuming):
            continue
        result = hook.fn(dataclasses.replace(ctx, resuming=ctx.resuming and not due))
        if result is not None:
            if result.start_step > ctx.step:
                raise ValueError(f"hook {hook.name} switched data at future step {result.start_step} "
                                 f"(now {ctx.step})")
            switch = result
    return switch


def run_final_hooks(hooks: Sequence[PeriodicHook], ctx: HookContext) -> None:
    """Runs the hooks marked `run_at_end` once, after the run's last step (`ctx.step` = total_steps)."""
    for hook in hooks:
        if hook.run_at_end:
            hook.fn(dataclasses.replace(ctx, resuming=False))


def as_hooks(hooks: Sequence[PeriodicHook | Callable[..., Any]] | None) -> list[PeriodicHook]:
    """Validates a gin-provided hook list, and runs each hook function's start-up `check()` when it has one.

    The checks run when the train job starts, before the data is built or the step compiled, so that a hook with a
    missing input file or an unknown setting fails in seconds instead of at its first call hours later.

    Raises:
      TypeError: an entry that is not a PeriodicHook.
      UserError: a hook's check found bad input.
    """
    out = []
    for hook in hooks or ():
        if not isinstance(hook, PeriodicHook):
            raise TypeError(f"hooks must be PeriodicHook instances, got {type(hook).__name__}")
        out.append(hook)
    for hook in out:
        check = getattr(hook.fn, "check", None)
        if callable(check):
            check()
    return out
