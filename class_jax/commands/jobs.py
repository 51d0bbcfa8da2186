"""`class-jax train|eval|infer|export`: the gin-configured jobs of `class_jax.trainer`, run as T5X runs them.

Each job is one gin-configurable function that takes every argument from gin; the command only starts the runtime,
parses the gin files and overrides, calls the function and prints what it returned.
"""

import argparse
import json
import logging
from typing import Any, Callable, NamedTuple

from class_jax.commands import common


class Job(NamedTuple):
    """A gin-configured job: where its function lives and how its result is reported."""

    module: str
    function: str
    report: Callable[[Any], None]


def _report_train(result: Any) -> None:
    if result.preempted:
        logging.warning("Training stopped at step %d on request; rerun the same command to resume.", result.step)
    else:
        logging.info("Training finished at step %d.", result.step)


def _report_eval(results: Any) -> None:
    from class_jax.trainer import metrics  # pylint: disable=import-outside-toplevel  (pulls in TensorFlow)
    print(json.dumps(metrics.flatten_eval_metrics(results), indent=2, sort_keys=True))


def _report_infer(paths: Any) -> None:
    for path in paths:
        print(path)


JOBS: dict[str, Job] = {
    "train": Job("class_jax.trainer.train", "train", _report_train),
    "eval": Job("class_jax.trainer.evaluate", "evaluate", _report_eval),
    "infer": Job("class_jax.trainer.infer", "infer", _report_infer),
    "export": Job("class_jax.trainer.export", "export", print),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Gin, multi-process and logging flags (everything else comes from gin)."""
    common.add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Runs the job named by `args.command` as configured by the flags' gin files and overrides.

    Returns:
      0 on success (bad gin input raises UserError, which the CLI prints as one line).
    """
    job = JOBS[args.command]
    job.report(common.run_job(args, job.module, job.function))
    return 0
